"""The command line as an admin meets it: exit codes, one-screen errors, nothing half-written."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from provision.cli.main import cli
from provision.errors import ExitStatus
from provision.ini import decode_ini
from provision.secrets import read_env_file

from conftest import BASE, EXAMPLES, INVENTORY, ROOT, write

DEMO_ENV = EXAMPLES / "inventory" / "demo.env"


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config directory with one profile, one host and one user, as the working directory."""
    write(tmp_path / "profiles" / "base.yaml", BASE)
    write(tmp_path / "inventory.yaml", INVENTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PW_JDOE", "s3cret-jdoe!")
    return tmp_path


@pytest.fixture
def examples_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped examples as a config directory."""
    shutil.copytree(EXAMPLES, tmp_path / "profiles")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_render_writes_one_ini_per_user_with_masked_passwords(project: Path) -> None:
    result = run("render", "-i", "inventory.yaml", "--out", "out")
    assert result.exit_code == 0, result.output
    assert "Rendered 1 ini file for 1 host into out" in result.output
    text = decode_ini((project / "out" / "ws-01" / "jdoe" / "microsip.ini").read_bytes())
    assert "password=********" in text and "s3cret" not in text


def test_include_secrets_writes_private_files_and_prints_no_secret(project: Path) -> None:
    result = run("render", "-i", "inventory.yaml", "--out", "out", "--include-secrets")
    path = project / "out" / "ws-01" / "jdoe" / "microsip.ini"
    assert "password=s3cret-jdoe!" in decode_ini(path.read_bytes())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "s3cret" not in result.output


def test_a_bad_profile_exits_2_with_file_line_field_and_writes_nothing(project: Path) -> None:
    write(project / "profiles" / "base.yaml", BASE.replace("transport: tls", "transport: carrier-pigeon"))
    result = run("render", "-i", "inventory.yaml", "--out", "out")
    assert result.exit_code == ExitStatus.USAGE
    assert "profiles/base.yaml:7: accounts.office.transport: must be 'udp', 'tcp', 'tls' or 'udp+tcp'" in result.output
    assert "Traceback" not in result.output
    assert not (project / "out").exists()


def test_every_problem_is_listed_at_once(project: Path) -> None:
    write(
        project / "profiles" / "base.yaml",
        """
        settings:
          autoAnswer: 1
          updateInterval: never
        accounts:
          office: {server: s, domain: d, password: hunter2}
    """,
    )
    result = run("validate", "-i", "inventory.yaml")
    assert result.exit_code == ExitStatus.USAGE
    lines = result.output.splitlines()
    assert lines[0] == "Error: 3 problems found"
    assert any("base.yaml:2: settings.autoAnswer" in line for line in lines)
    assert any("base.yaml:3: settings.updateInterval: unknown key" in line for line in lines)
    assert any("base.yaml:5: accounts.office.password: must be a secret reference" in line for line in lines)
    assert "hunter2" not in result.output
    assert len(lines) < 25


def test_a_missing_secret_fails_before_anything_is_written(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PW_JDOE")
    result = run("render", "-i", "inventory.yaml", "--out", "out")
    assert result.exit_code == ExitStatus.USAGE
    assert "environment variable PW_JDOE is not set" in result.output and "inventory.yaml:6" in result.output
    assert not (project / "out").exists()


def test_a_failing_render_leaves_an_earlier_output_untouched(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("render", "-i", "inventory.yaml", "--out", "out").exit_code == 0
    before = (project / "out" / "ws-01" / "jdoe" / "microsip.ini").read_bytes()
    monkeypatch.delenv("PW_JDOE")
    assert run("render", "-i", "inventory.yaml", "--out", "out").exit_code == ExitStatus.USAGE
    assert (project / "out" / "ws-01" / "jdoe" / "microsip.ini").read_bytes() == before
    assert [p.name for p in (project / "out").iterdir()] == ["ws-01"]


def test_env_file_supplies_secrets(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PW_JDOE")
    (project / "secrets.env").write_text("PW_JDOE=from-the-file\n")
    result = run("--env-file", "secrets.env", "render", "-i", "inventory.yaml", "--out", "out", "--include-secrets")
    assert result.exit_code == 0
    assert "password=from-the-file" in decode_ini((project / "out/ws-01/jdoe/microsip.ini").read_bytes())


def test_diff_shows_per_key_changes_and_exit_codes(project: Path) -> None:
    assert run("render", "-i", "inventory.yaml", "--out", "current", "--include-secrets").exit_code == 0
    result = run("diff", "-i", "inventory.yaml", "--against", "current", "--exit-code")
    assert result.exit_code == 0, result.output
    assert "0 of 1 targets would change, 1 unchanged" in result.output
    base = (project / "profiles" / "base.yaml").read_text().replace("transport: tls", "transport: tcp")
    (project / "profiles" / "base.yaml").write_text(base)
    result = run("diff", "-i", "inventory.yaml", "--against", "current")
    assert result.exit_code == 0
    assert "ws-01/jdoe: 1 change(s)" in result.output
    assert "[Account1] transport: 'tls' -> 'tcp'" in result.output
    assert run("diff", "-i", "inventory.yaml", "--against", "current", "--exit-code").exit_code == ExitStatus.CHANGES


def test_diff_reports_a_broken_current_ini_as_that_target_failing(project: Path) -> None:
    write(
        project / "inventory.yaml",
        INVENTORY
        + """
          ws-02:
            users:
              - {name: ann, extension: "2102", password: env:PW_JDOE}
    """.replace("\n    ", "\n"),
    )
    (project / "current" / "ws-02" / "ann").mkdir(parents=True)
    (project / "current" / "ws-02" / "ann" / "microsip.ini").write_text("[Settings]\na=1\n[Settings]\nb=2\n")
    result = run("diff", "-i", "inventory.yaml", "--against", "current")
    assert result.exit_code == ExitStatus.FAILED, result.output
    assert "ws-02/ann: failed: the existing ini has section [Settings] twice" in result.output
    assert "ws-01/jdoe: new file" in result.output
    assert "1 of 2 targets would change, 0 unchanged, 1 failed" in result.output


def test_profiles_show_resolved_tells_where_each_value_came_from(examples_dir: Path) -> None:
    result = run("profiles", "show", "sales", "--resolved")
    assert result.exit_code == 0, result.output
    assert "# layers: base -> sales" in result.output
    lines = {
        line.split("#")[0].strip(): line.split("#")[-1].strip() for line in result.output.splitlines() if "#" in line
    }
    assert lines["autoAnswer: button"] == "profiles/sales.yaml:6"
    assert lines["denyIncoming: button"] == "profiles/base.yaml:10"
    assert lines["voicemailNumber: '*97'"] == "profiles/base.yaml:29"


def test_profiles_show_for_a_user_includes_inventory_layers(examples_dir: Path) -> None:
    result = run("profiles", "show", "--for", "ws-support-03/lnguyen", "-i", "profiles/inventory/example.yaml")
    assert result.exit_code == 0, result.output
    assert "Support queue" not in result.output  # removed by the user's override
    result = run("profiles", "show", "--for", "ws-sales-04", "-i", "profiles/inventory/example.yaml")
    (ring,) = [line for line in result.output.splitlines() if "ring: Speakers" in line]
    inventory = (examples_dir / "profiles/inventory/example.yaml").read_text().splitlines()
    lineno = next(n for n, text in enumerate(inventory, 1) if "ring: Speakers" in text)
    assert ring.endswith(f"# profiles/inventory/example.yaml:{lineno}")


def test_profiles_list_and_unknown_profile(examples_dir: Path) -> None:
    result = run("profiles", "list")
    assert [line.split()[0] for line in result.output.splitlines()[1:]] == [
        "base",
        "sales",
        "site-lyon",
        "smoke",
        "support",
    ]
    result = run("profiles", "show", "nope")
    assert result.exit_code == ExitStatus.USAGE and "no profile 'nope'" in result.output


def test_no_demo_secret_appears_in_any_output(examples_dir: Path) -> None:
    secrets = list(read_env_file(DEMO_ENV).values())
    env = ["--env-file", "profiles/inventory/demo.env"]
    inv = ["-i", "profiles/inventory/example.yaml"]
    outputs = [
        run(*env, "validate", *inv),
        run(*env, "render", *inv, "--out", "current", "--include-secrets"),
        run(*env, "render", *inv, "--out", "masked"),
        run(*env, "diff", *inv, "--against", "masked"),
        run(*env, "diff", *inv, "--against", "current"),
        run("profiles", "show", "support", "--resolved"),
        run(*env, "profiles", "show", "--for", "ws-lyon-01/mpetit", *inv),
    ]
    for result in outputs:
        assert result.exit_code == 0, result.output
        for secret in secrets:
            assert secret not in result.output
    assert "password: '********' -> '********'" in outputs[3].output


def test_validate_counts_what_it_checked(examples_dir: Path) -> None:
    result = run("--env-file", "profiles/inventory/demo.env", "validate", "-i", "profiles/inventory/example.yaml")
    assert result.output.strip().splitlines()[-1] == "OK: 5 profiles, 10 hosts, 14 targets, 15 secrets"


def test_warnings_are_shown_but_do_not_fail(project: Path) -> None:
    write(project / "profiles" / "base.yaml", BASE + "    hooks:\n      cmdCallEnd: C:\\scripts\\log.bat\n")
    result = run("render", "-i", "inventory.yaml", "--out", "out")
    assert result.exit_code == 0, result.output
    assert "Warning: " in result.output and "a .bat/.cmd hook" in result.output


def test_an_unexpected_error_is_a_bug_with_a_traceback(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr("provision.cli.offline.validate_all", boom)
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == ExitStatus.INTERNAL
    assert "RuntimeError: kaboom" in result.output and "This is a bug in provision" in result.output


def test_usage_errors_exit_2(project: Path) -> None:
    assert run("render", "--out", "x").exit_code == 2
    assert run("render", "-i", "missing.yaml", "--out", "x").exit_code == 2
    assert run("render", "-i", "inventory.yaml", "--out", "x", "--limit", "nope").exit_code == 2


def test_works_outside_a_checkout_with_the_built_in_templates(examples_dir: Path) -> None:
    from provision.render import packaged_templates

    assert (packaged_templates() / "microsip.ini.j2").is_file()
    shutil.rmtree(examples_dir / "templates")
    result = run(
        "--env-file", "profiles/inventory/demo.env", "render", "-i", "profiles/inventory/example.yaml", "--out", "out"
    )
    assert result.exit_code == 0, result.output
    assert len(list((examples_dir / "out").glob("*/*/microsip.ini"))) == 14


def test_validate_in_a_folder_without_profiles_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("validate")
    assert result.exit_code == ExitStatus.USAGE, result.output
    assert "profiles: no profile files (profiles/*.yaml)" in result.output
    (tmp_path / "profiles").mkdir()
    result = run("validate")
    assert result.exit_code == ExitStatus.USAGE, result.output
    assert "no profile files" in result.output


def test_validate_refuses_an_inventory_naming_profiles_that_do_not_exist(project: Path) -> None:
    write(
        project / "inventory.yaml",
        INVENTORY
        + """
        groups:
          unused: {profiles: [base, nope]}
    """.replace("\n    ", "\n"),
    )
    result = run("validate", "-i", "inventory.yaml")
    assert result.exit_code == ExitStatus.USAGE, result.output
    assert "inventory.yaml:9: groups.unused.profiles[1]: no profile 'nope'" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[]\r\nkey=1\r\n", "ws-02/ann: failed: unreadable ini: line 1: an empty section name ([])"),
        (
            b"\xff\xfe[\x00S\x00]\x00\r\x00\n\x00\x00\xd8",
            "ws-02/ann: failed: unreadable ini: line 2: bytes that are not",
        ),
        ("[Settings]\r\nname=Zoë\r\n".encode("utf-16-le"), "ws-02/ann: failed: unreadable ini: line 1: NUL characters"),
        (None, "ws-02/ann: failed: current/ws-02/ann/microsip.ini: the ini is 20,971,520 bytes; an ini over"),
    ],
)
def test_diff_reports_an_unreadable_or_huge_current_ini_as_that_target_failing(
    project: Path, content: bytes | None, message: str
) -> None:
    write(
        project / "inventory.yaml",
        INVENTORY
        + """
          ws-02:
            users:
              - {name: ann, extension: "2102", password: env:PW_JDOE}
    """.replace("\n    ", "\n"),
    )
    path = project / "current" / "ws-02" / "ann" / "microsip.ini"
    path.parent.mkdir(parents=True)
    if content is None:
        with path.open("wb") as handle:
            handle.truncate(20 * 1024 * 1024)  # sparse: 20 MB that were never written
    else:
        path.write_bytes(content)
    before = path.stat()
    result = run("diff", "-i", "inventory.yaml", "--against", "current")
    assert result.exit_code == ExitStatus.FAILED, result.output
    assert message in result.output
    assert "ws-01/jdoe: new file" in result.output and "Traceback" not in result.output
    assert path.stat().st_mtime_ns == before.st_mtime_ns


# render --encoding, diff against what render wrote, --format json, schemas, Ansible inventories ----


def test_render_utf8_is_for_review_and_the_default_stays_utf16(project: Path) -> None:
    write(project / "inventory.yaml", INVENTORY.replace("Jane Doe", "Zoë Müller"))
    assert run("render", "-i", "inventory.yaml", "--out", "real").exit_code == 0
    real = (project / "real" / "ws-01" / "jdoe" / "microsip.ini").read_bytes()
    assert real.startswith(b"\xff\xfe") and "\r\n".encode("utf-16-le") in real
    result = run("render", "-i", "inventory.yaml", "--out", "review", "--encoding", "utf-8")
    assert result.exit_code == 0, result.output
    assert "into review as UTF-8 for review (not for workstations)" in result.output
    review = (project / "review" / "ws-01" / "jdoe" / "microsip.ini").read_bytes()
    assert not review.startswith(b"\xef\xbb\xbf") and b"\r" not in review
    assert review.decode("utf-8") == decode_ini(real)
    assert "displayName=Zoë Müller\n" in review.decode("utf-8")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8"])
def test_diff_takes_a_folder_render_wrote_in_either_encoding(project: Path, encoding: str) -> None:
    write(project / "inventory.yaml", INVENTORY.replace("Jane Doe", "Zoë Müller"))
    args = ["-i", "inventory.yaml"]
    assert run("render", *args, "--out", "current", "--include-secrets", "--encoding", encoding).exit_code == 0
    result = run("diff", *args, "--against", "current", "--exit-code")
    assert result.exit_code == 0, result.output
    assert "0 of 1 targets would change, 1 unchanged" in result.output
    write(project / "inventory.yaml", INVENTORY.replace("Jane Doe", "Zoë Meier"))
    result = run("diff", *args, "--against", "current")
    assert "[Account1] displayName: 'Zoë Müller' -> 'Zoë Meier'" in result.output


def json_of(result: Result) -> dict[str, object]:
    import json

    data = json.loads(result.stdout)
    assert {"provision", "command", "ok", "summary", "hosts", "warnings", "problems"} <= set(data)
    assert isinstance(data["summary"], dict) and "text" in data["summary"]
    return data


def test_render_diff_and_validate_as_json(project: Path) -> None:
    write(project / "profiles" / "base.yaml", BASE + "    hooks:\n      cmdCallEnd: C:\\scripts\\log.bat\n")
    rendered = json_of(
        run("render", "-i", "inventory.yaml", "--out", "current", "--include-secrets", "--format", "json")
    )
    assert rendered["command"] == "render" and rendered["ok"] is True
    assert rendered["summary"] == {
        "hosts": 1,
        "targets": 1,
        "by_status": {"rendered": 1},
        "text": rendered["summary"]["text"],
    }
    assert rendered["hosts"] == [
        {
            "host": "ws-01",
            "groups": [],
            "status": "rendered",
            "users": [{"user": "jdoe", "status": "rendered", "accounts": 1, "file": "current/ws-01/jdoe/microsip.ini"}],
        }
    ]
    assert (rendered["encoding"], rendered["secrets"]) == ("utf-16", True)
    assert any("a .bat/.cmd hook" in w for w in rendered["warnings"])
    write(project / "profiles" / "base.yaml", BASE.replace("transport: tls", "transport: tcp"))
    result = run("diff", "-i", "inventory.yaml", "--against", "current", "--format", "json", "--exit-code")
    assert result.exit_code == ExitStatus.CHANGES
    diffed = json_of(result)
    assert (diffed["ok"], diffed["changed"]) == (True, True)
    assert diffed["summary"]["by_status"] == {"would change": 1}
    (user,) = diffed["hosts"][0]["users"]
    assert user["status"] == "would change" and user["new_file"] is False
    assert {"section": "Account1", "key": "transport", "old": "tls", "new": "tcp", "note": ""} in user["changes"]
    checked = json_of(run("validate", "-i", "inventory.yaml", "--format", "json"))
    assert checked["summary"] == {
        "profiles": 1,
        "hosts": 1,
        "targets": 1,
        "secrets": 1,
        "text": "1 profiles, 1 hosts, 1 targets, 1 secrets",
    }
    assert checked["hosts"][0]["users"] == [{"user": "jdoe", "status": "ok", "profiles": ["base"], "accounts": 1}]
    for result in (rendered, diffed, checked):
        assert "s3cret" not in str(result)


def test_refused_input_is_json_too_with_exit_2_and_the_text_on_stderr(project: Path) -> None:
    write(project / "profiles" / "base.yaml", BASE.replace("transport: tls", "transport: carrier-pigeon"))
    for args in (["validate"], ["render", "--out", "out"], ["diff", "--against", "."]):
        result = run(*args, "-i", "inventory.yaml", "--format", "json")
        assert result.exit_code == ExitStatus.USAGE
        data = json_of(result)
        assert data["ok"] is False and data["command"] == args[0]
        assert data["summary"] == {"text": "1 problem found"}
        assert data["problems"] == [
            {
                "file": "profiles/base.yaml",
                "line": 7,
                "field": "accounts.office.transport",
                "message": "must be 'udp', 'tcp', 'tls' or 'udp+tcp' (got 'carrier-pigeon')",
            }
        ]
        assert "Error: 1 problem found" in result.stderr
    assert not (project / "out").exists()


def test_diff_json_with_a_failed_target_is_not_ok(project: Path) -> None:
    (project / "current" / "ws-01" / "jdoe").mkdir(parents=True)
    (project / "current" / "ws-01" / "jdoe" / "microsip.ini").write_text("[Settings]\na=1\n[Settings]\n")
    result = run("diff", "-i", "inventory.yaml", "--against", "current", "--format", "json")
    assert result.exit_code == ExitStatus.FAILED
    data = json_of(result)
    assert data["ok"] is False and data["summary"]["failed"] == 1
    (user,) = data["hosts"][0]["users"]
    assert user["status"] == "failed" and "section [Settings] twice" in user["reason"]


def test_schema_commands_write_the_schemas(project: Path) -> None:
    import json

    profile = run("schema", "profile")
    assert profile.exit_code == 0 and json.loads(profile.stdout)["title"] == "provision profile"
    assert run("profiles", "schema").stdout == profile.stdout
    assert run("schema", "inventory", "-o", "schemas/inventory.schema.json").exit_code == 0
    written = json.loads((project / "schemas" / "inventory.schema.json").read_text("utf-8"))
    assert written["title"] == "provision inventory" and written["$schema"].endswith("2020-12/schema")
    assert run("schema", "nope").exit_code == ExitStatus.USAGE


ANSIBLE_INI = """
    [windows:children]
    sales
    [windows:vars]
    ansible_connection=winrm
    ansible_user=CORP\\\\svc
    provision_profiles=base
    [sales]
    ws-0[1:2] provision_users="[{'name': 'jdoe', 'extension': '2101', 'password': 'env:PW_JDOE'}]"
    [linux]
    db-01
"""


def test_an_ansible_inventory_renders_and_lists_with_its_warnings(project: Path) -> None:
    write(project / "hosts", ANSIBLE_INI)
    result = run("render", "-i", "hosts", "--out", "out", "--limit", "windows:&sales:!ws-02")
    assert result.exit_code == 0, result.output
    assert "Rendered 1 ini file for 1 host into out" in result.output
    assert "Warning: hosts:5: ansible_user: the WinRM account is one per run" in result.stderr
    assert "1 host(s) left out, reached by Ansible with another connection than winrm or psrp: db-01" in result.stderr
    listed = json_of(run("list-hosts", "-i", "hosts", "--limit", "sales[-1]", "--format", "json"))
    assert listed["format"] == "ansible-ini"
    assert listed["hosts"] == [{"host": "ws-02", "groups": ["windows", "sales"], "connection": {}, "users": ["jdoe"]}]
    table = run("list-hosts", "-i", "hosts")
    assert table.stdout.splitlines()[1:] == [
        "ws-01  windows,sales  ws-01    1",
        "ws-02  windows,sales  ws-02    1",
        "2 of 2 hosts",
    ]
