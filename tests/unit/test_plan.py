"""Plans: what changes key by key, and why a password MicroSIP encrypted is not drift."""

from __future__ import annotations

from pathlib import Path

from provision.ini import Desired, decode_ini, encode_ini, merge_ini, read_ini
from provision.plan import TargetPlan, plan_target
from provision.project import Prepared, prepare
from provision.state import PushRecord, Store, open_store

from conftest import FIXTURES, MakeProject

AFTER_RUN = (FIXTURES / "microsip-after-run.ini").read_text(encoding="utf-8")

PROFILE = """
    settings:
      autoAnswer: ""
      enableLog: true
    audio:
      output: Speakers (Realtek(R) Audio)
    hooks:
      cmdCallRing: {program: C:\\Program Files\\CRM\\popup.exe, args: [--ring]}
    accounts:
      office:
        label: Sales
        server: pbx.example.com
        domain: pbx.example.com
        transport: tls
"""


def setup(
    make_project: MakeProject, tmp_path: Path, profile: str = PROFILE, pw: str = "s3cret-jdoe!"
) -> tuple[Prepared, Store]:
    project = make_project(profiles={"base": profile}, environ={"PW_JDOE": pw})
    return prepare(project, tmp_path / "inventory.yaml"), open_store(project.state_path)


def plan(prepared: Prepared, state: Store, current: bytes | None) -> TargetPlan:
    (rendered,) = prepared.rendered
    record = state.last_push("ws-01", "jdoe")
    return plan_target(rendered, prepared.secrets["ws-01/jdoe"], current, record, state.fingerprint_key)


def record(state: Store, result: TargetPlan) -> None:
    pushed = PushRecord("ws-01", "jdoe", "2026-11-29T08:00:00+00:00", result.managed_keys, result.managed_hash,
                        result.fingerprints, "changed")  # fmt: skip
    state.record_pushes([pushed])


def microsip_runs(content: bytes) -> bytes:
    """What MicroSIP does at start and exit: encrypt the password, write back its ~100 keys."""
    text = decode_ini(content)
    doc = read_ini(text)
    state = read_ini(AFTER_RUN)
    extra = tuple(
        (state.sections["settings"].names[k], v)
        for k, v in state.sections["settings"].values.items()
        if doc.get("settings", k) is None
    )
    desired = Desired((("Settings", extra), ("Calls", (("0", "2204;Paul;1;1763985000;125;"),))))
    text = merge_ini(text, desired, {})
    text = text.replace("password=s3cret-jdoe!", "password=8f3a9c21d04e7b6a5c3e2f1d0a9b8c7d")
    return encode_ini(text)


def test_first_push_to_a_user_without_an_ini(make_project: MakeProject, tmp_path: Path) -> None:
    prepared, state = setup(make_project, tmp_path)
    result = plan(prepared, state, None)
    assert result.changed and result.content is not None
    assert "password=s3cret-jdoe!" in decode_ini(result.content)
    assert "s3cret" not in repr(result) and all("s3cret" not in c.describe() for c in result.changes)


def test_after_microsip_encrypts_the_password_nothing_is_drift(make_project: MakeProject, tmp_path: Path) -> None:
    prepared, state = setup(make_project, tmp_path)
    first = plan(prepared, state, None)
    record(state, first)
    on_disk = microsip_runs(first.content or b"")
    again = plan(prepared, state, on_disk)
    assert again.changes == () and again.content is None
    assert again.managed_hash == first.managed_hash


def test_still_plaintext_password_matches_without_a_record(make_project: MakeProject, tmp_path: Path) -> None:
    prepared, state = setup(make_project, tmp_path)
    first = plan(prepared, state, None)
    assert plan(prepared, state, first.content).changes == ()


def test_encrypted_password_without_a_record_is_written_again(make_project: MakeProject, tmp_path: Path) -> None:
    prepared, state = setup(make_project, tmp_path)
    on_disk = microsip_runs(plan(prepared, state, None).content or b"")
    (change,) = plan(prepared, state, on_disk).changes
    assert (change.key, change.old, change.new) == ("password", "********", "********")
    assert "no record" in change.note


def test_a_changed_secret_is_pushed_again(make_project: MakeProject, tmp_path: Path) -> None:
    prepared, state = setup(make_project, tmp_path)
    first = plan(prepared, state, None)
    record(state, first)
    on_disk = microsip_runs(first.content or b"")
    prepared2, _ = setup(make_project, tmp_path, pw="n3w-secret")
    result = plan(prepared2, state, on_disk)
    (change,) = result.changes
    assert change.note == "secret changed" and "n3w-secret" not in change.describe()
    assert read_ini(decode_ini(result.content or b"")).get("account1", "password") == "n3w-secret"


def test_profile_change_touches_only_managed_keys(make_project: MakeProject, tmp_path: Path) -> None:
    prepared, state = setup(make_project, tmp_path)
    first = plan(prepared, state, None)
    record(state, first)
    on_disk = microsip_runs(first.content or b"")
    changed_profile = PROFILE.replace('autoAnswer: ""', "autoAnswer: header").replace("      enableLog: true\n", "")
    prepared2, _ = setup(make_project, tmp_path, profile=changed_profile)
    result = plan(prepared2, state, on_disk)
    assert {(c.key, c.old, c.new) for c in result.changes} == {
        ("autoAnswer", "", "header"),
        ("enableLog", "1", None),
    }
    before, after = read_ini(decode_ini(on_disk)), read_ini(decode_ini(result.content or b""))
    assert after.get("account1", "password") == "8f3a9c21d04e7b6a5c3e2f1d0a9b8c7d"
    assert after.get("settings", "mainx") == before.get("settings", "mainx") == "1520"
    assert after.sections["calls"].values == before.sections["calls"].values
    assert after.get("settings", "enablelog") is None


def test_quotes_microsip_adds_or_strips_are_not_drift(make_project: MakeProject, tmp_path: Path) -> None:
    prepared, state = setup(make_project, tmp_path)
    first = plan(prepared, state, None)
    text = decode_ini(first.content or b"").replace(
        'audioOutputDevice="Speakers (Realtek(R) Audio)"', "audioOutputDevice=Speakers (Realtek(R) Audio)"
    )
    assert "audioOutputDevice=Speakers" in text
    assert plan(prepared, state, encode_ini(text)).changes == ()


def test_a_utf8_bom_file_is_rewritten_even_if_keys_match(make_project: MakeProject, tmp_path: Path) -> None:
    prepared, state = setup(make_project, tmp_path)
    first = plan(prepared, state, None)
    utf8 = b"\xef\xbb\xbf" + decode_ini(first.content or b"").encode()
    (change,) = plan(prepared, state, utf8).changes
    assert change.key == "(encoding)" and "cannot read the first section" in change.note


def test_a_password_with_non_ascii_characters_is_compared_not_a_crash(
    make_project: MakeProject, tmp_path: Path
) -> None:
    # Found by tests/property: hmac.compare_digest refuses str with non-ASCII characters.
    prepared, state = setup(make_project, tmp_path, pw="pässwörd-ü")
    first = plan(prepared, state, None)
    assert plan(prepared, state, first.content).changes == ()
    other = (first.content or b"").decode("utf-16-le").replace("pässwörd-ü", "ändere").encode("utf-16-le")
    (change,) = plan(prepared, state, other).changes
    assert change.key == "password"


def test_secrets_with_non_ascii_characters_compare() -> None:
    from provision.secrets import Secret

    assert Secret("é") == Secret("é") and Secret("é") != Secret("e")
