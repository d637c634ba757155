from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from provision.errors import ConfigError, SecretError
from provision.model.microsip import Version
from provision.secrets import MASK, Redactor, Secret, SecretResolver, fingerprint, read_env_file

from conftest import BASE, MakeProject


def test_a_secret_never_shows_itself() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in f"{secret} {secret!r} {secret:>20} {[secret]} {dict(a=secret)}"
    assert str(secret) == MASK
    assert secret.reveal() == "hunter2"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(secret)


def test_a_secret_logged_by_mistake_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("password is %s", Secret("hunter2"))
    assert "hunter2" not in caplog.text and MASK in caplog.text


def test_env_file_and_keyring_references_resolve(tmp_path: Path) -> None:
    (tmp_path / "pw.txt").write_text("from-file\n", encoding="utf-8")
    resolver = SecretResolver({"PW": "from-env"}, tmp_path)
    assert resolver.resolve("env:PW", "x").reveal() == "from-env"
    assert resolver.resolve("file:pw.txt", "x").reveal() == "from-file"
    assert resolver.resolve(f"file:{tmp_path / 'pw.txt'}", "x").reveal() == "from-file"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("env:MISSING", "environment variable MISSING is not set"),
        ("file:nope.txt", "No such file or directory"),
        ("env:EMPTY", "is empty"),
        ("env:NEWLINE", "contains a line break; it would break the ini file"),
    ],
)
def test_missing_or_unsafe_secrets_are_clear_errors_without_the_value(tmp_path: Path, ref: str, message: str) -> None:
    resolver = SecretResolver({"EMPTY": "", "NEWLINE": "pw\n[Settings]\nx=1"}, tmp_path)
    with pytest.raises(SecretError) as info:
        resolver.resolve(ref, "inventory.yaml:12")
    assert message in info.value.message and "inventory.yaml:12" in info.value.message
    assert "[Settings]" not in info.value.message


def test_keyring_without_the_extra_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_keyring(name: str, *args: object, **kw: object) -> object:
        if name.startswith("keyring"):
            raise ImportError(name)
        return real_import(name, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_keyring)
    with pytest.raises(SecretError, match=r"pip install 'provision\[keyring\]'"):
        SecretResolver({}, tmp_path).resolve("keyring:microsip/2101", "x")


def test_redactor_scrubs_every_known_secret() -> None:
    redact = Redactor([Secret("hunter2"), Secret("hunter22")])
    assert redact("a hunter22 b hunter2 c") == f"a {MASK} b {MASK} c"


def test_fingerprints_depend_on_key_scope_and_secret() -> None:
    key = b"k" * 32
    base = fingerprint(key, "ws/jdoe/account1", Secret("pw"))
    assert base == fingerprint(key, "ws/jdoe/account1", Secret("pw"))
    assert base != fingerprint(b"x" * 32, "ws/jdoe/account1", Secret("pw"))
    assert base != fingerprint(key, "ws/ann/account1", Secret("pw"))
    assert base != fingerprint(key, "ws/jdoe/account1", Secret("pw2"))
    assert "pw" not in base


def test_env_files(tmp_path: Path) -> None:
    path = tmp_path / "demo.env"
    path.write_text("# comment\nexport A=1\nB='two words'\nC=\"x=y\"\n\n", encoding="utf-8")
    assert read_env_file(path) == {"A": "1", "B": "two words", "C": "x=y"}
    path.write_text("GOOD=1\nthis line leaks-a-secret\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_env_file(path)
    assert "demo.env:2: expected NAME=VALUE" in str(info.value) and "leaks" not in str(info.value)


def test_every_missing_secret_is_reported_at_once(make_project: MakeProject, tmp_path: Path) -> None:
    from provision.project import prepare

    profile = """
        accounts:
          office: {server: pbx.example.com, domain: example.com}
          queue: {server: pbx.example.com, domain: example.com, username: queue, password: env:PW_SHARED}
    """
    project = make_project(profiles={"base": profile}, environ={})
    with pytest.raises(ConfigError) as info:
        prepare(project, tmp_path / "inventory.yaml")
    text = str(info.value)
    assert "environment variable PW_JDOE is not set" in text
    assert "environment variable PW_SHARED is not set" in text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (" lead", "starts or ends with a space"),
        ("trail ", "starts or ends with a space"),
        ("tab\t", "control character"),
        ("nbsp\u00a0", "starts or ends with a space"),
        ('"quoted"', "wrapped in quotes"),
        ("'quoted'", "wrapped in quotes"),
        ("x" * 1041, "longer than the 1040 characters MicroSIP 3.22 reads"),
        ("two\nlines", "line break"),
    ],
)
def test_a_secret_microsip_would_read_back_changed_is_refused_without_its_value(
    tmp_path: Path, value: str, message: str
) -> None:
    resolver = SecretResolver({"PW": value}, tmp_path)
    with pytest.raises(SecretError) as info:
        resolver.resolve_ini("env:PW", "inventory.yaml:12", Version("3.22"))
    assert message in info.value.message
    assert "env:PW" in info.value.message and "inventory.yaml:12" in info.value.message
    assert value.strip(" \t'\"") not in info.value.message


@pytest.mark.parametrize("value", ['in"side', "a'b'c", "x" * 1040, "é-ü-ß", "semi;colon=equals"])
def test_a_secret_that_arrives_unchanged_is_accepted(tmp_path: Path, value: str) -> None:
    assert SecretResolver({"PW": value}, tmp_path).resolve_ini("env:PW", "x", Version("3.22")).reveal() == value


def test_the_password_limit_follows_the_profiles_microsip_version(make_project: MakeProject, tmp_path: Path) -> None:
    from provision.project import prepare

    old = "microsip_version: '3.21.3'\n" + textwrap.dedent(BASE)
    project = make_project(profiles={"base": old}, environ={"PW_JDOE": "p" * 256})
    with pytest.raises(ConfigError, match=r"longer than the 255 characters MicroSIP 3\.21\.3 reads"):
        prepare(project, tmp_path / "inventory.yaml")
    project = make_project(profiles={"base": BASE}, environ={"PW_JDOE": "p" * 256})
    assert prepare(project, tmp_path / "inventory.yaml").rendered


def test_env_files_are_read_as_python_dotenv_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "demo.env"
    path.write_text(
        'A="multi\nline"\nB="escaped \\" quote"\nC=\'single $X\'\nD=plain # comment\nE=${A}\n', encoding="utf-8"
    )
    assert read_env_file(path) == {
        "A": "multi\nline",
        "B": 'escaped " quote',
        "C": "single $X",
        "D": "plain",
        "E": "${A}",  # never expanded: a secret arrives as written
    }


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('GOOD=1\nBAD="unterminated secret-value\n', 2),
        ('A="two\nlines"\nsecret-value-without-equals\n', 3),
        ("GOOD=1\nNOVALUE\n", 2),
        ("GOOD=1\n\nmy-secret-value=1\n", 3),
        ("1SECRET=x\n", 1),
    ],
)
def test_a_malformed_env_line_is_named_by_number_never_quoted(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "demo.env"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_env_file(path)
    (problem,) = info.value.problems
    assert problem.line == line and problem.file.endswith("demo.env")
    assert "secret" not in problem.message.lower() and "NOVALUE" not in problem.message


def test_an_env_file_others_can_read_gets_a_warning(tmp_path: Path) -> None:
    from provision.secrets import env_file_warnings

    path = tmp_path / "demo.env"
    path.write_text("A=1\n", encoding="utf-8")
    path.chmod(0o600)
    assert env_file_warnings(path) == []
    for mode in (0o640, 0o604, 0o660):
        path.chmod(mode)
        (warning,) = env_file_warnings(path)
        assert warning.file.endswith("demo.env") and f"{mode:04o}" in warning.message and "chmod 600" in warning.message


def test_a_file_secret_is_read_bounded_and_only_from_a_regular_file(tmp_path: Path) -> None:
    import os

    (tmp_path / "big.txt").write_bytes(b"x" * 100_000)
    resolver = SecretResolver({}, tmp_path)
    with pytest.raises(SecretError, match="larger than"):
        resolver.resolve("file:big.txt", "x")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(SecretError, match="not a regular file"):
        resolver.resolve("file:fifo", "x")
    with pytest.raises(SecretError, match="not a regular file"):
        resolver.resolve("file:/dev/zero", "x")


def test_a_long_secret_reference_is_quoted_short(tmp_path: Path) -> None:
    with pytest.raises(SecretError) as info:
        SecretResolver({}, tmp_path).resolve("file:" + "p" * 1000, "inventory.yaml:3")
    assert "p" * 61 not in info.value.message and "inventory.yaml:3" in info.value.message
