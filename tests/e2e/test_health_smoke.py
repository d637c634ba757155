"""provision health and provision smoke against the lab, through real pywinrm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import xmlschema

from provision.secrets import read_env_file

from conftest import FIXTURES
from labkit import Lab

SCHEMA = xmlschema.XMLSchema(FIXTURES / "junit.xsd")


def run_json(lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
    result = lab.run(*args, "--format", "json", "--timeout", "20")
    start = result.output.index("{")  # progress lines go to stderr, which the runner mixes in
    end = result.output.rindex("}") + 1
    return result.exit_code, json.loads(result.output[start:end])


def checks(data: dict[str, Any], host: str) -> dict[str, dict[str, Any]]:
    (entry,) = [h for h in data["hosts"] if h["host"] == host]
    return {c["name"]: c for c in entry["checks"]}


def status(data: dict[str, Any]) -> dict[str, str]:
    return {h["host"]: h["status"] for h in data["hosts"]}


# health ------------------------------------------------------------------------------------


def test_health_after_a_push_is_ok_and_reads_only(lab: Lab) -> None:
    assert lab.push().exit_code == 0
    before = {p: p.read_bytes() for p in (lab.fleet.folder / "hosts").rglob("*") if p.is_file()}
    lab.reset_counts()
    code, data = run_json(lab, "health")
    assert code == 0, data
    assert set(status(data).values()) <= {"ok", "warning"}
    assert {p: p.read_bytes() for p in (lab.fleet.folder / "hosts").rglob("*") if p.is_file()} == before
    assert set(lab.ops().values()) == {5}  # one conversation per host
    got = checks(data, "lab-001")
    assert got["winrm"]["status"] == "pass" and "answered in" in got["winrm"]["detail"]
    assert got["microsip"]["detail"] == "version 3.22.3"
    assert got["build age"]["status"] == "pass"
    user = lab.user("lab-001")
    assert got[f"{user}: drift"]["detail"] == "managed keys as pushed"
    assert got[f"{user}: running"]["status"] == "pass"  # restarted by the push
    assert got["hook C:\\Program Files\\Contoso CRM\\crm-popup.exe"]["status"] == "pass"
    support = checks(data, "lab-002")
    assert support[f"{lab.user('lab-002')}: audio ring"]["status"] == "pass"


def test_health_finds_drift_and_names_the_keys(lab: Lab) -> None:
    assert lab.push().exit_code == 0
    host = lab.host("lab-003")
    user = lab.user("lab-003", 1)
    content = (host.read_ini(user) or b"").decode("utf-16")
    host.write_ini(user, content.replace("autoAnswer=button", "autoAnswer=all").encode("utf-16"))
    code, data = run_json(lab, "health")
    assert code == 4  # drift: its own exit status
    assert status(data)["lab-003"] == "drifted"
    assert "1 drifted" in data["summary"]["text"] and data["summary"]["by_status"]["drifted"] == 1
    drift = checks(data, "lab-003")[f"{user}: drift"]
    assert drift["status"] == "fail" and drift["detail"].endswith("[Settings] autoAnswer")
    assert "changed on the workstation" in drift["detail"]


def test_health_tells_a_profile_changed_since_the_push_from_a_workstation_that_changed(lab: Lab) -> None:
    assert lab.push().exit_code == 0
    sales = lab.profiles / "sales.yaml"
    sales.write_text(sales.read_text("utf-8").replace("autoAnswer: button", "autoAnswer: all"), "utf-8")
    code, data = run_json(lab, "health")
    assert code == 3  # pending: pushing would change the sales hosts; nothing drifted
    found = status(data)
    assert found["lab-001"] == found["lab-003"] == "pending"  # the sales hosts
    assert found["lab-002"] in ("ok", "warning") and found["lab-004"] in ("ok", "warning")  # support: as pushed
    pending = checks(data, "lab-003")[f"{lab.user('lab-003')}: pending"]
    assert pending["status"] == "pending" and "to push: [Settings] autoAnswer" in pending["detail"]
    (entry,) = [h for h in data["hosts"] if h["host"] == "lab-003"]
    assert "to push: [Settings] autoAnswer" in entry["reason"]  # what the table shows: the pending keys
    assert checks(data, "lab-003")[f"{lab.user('lab-003')}: drift"]["status"] == "pass"
    # Both at once: the workstation changed a key the profile did not; drift is what counts.
    host, user = lab.host("lab-001"), lab.user("lab-001", 1)
    content = (host.read_ini(user) or b"").decode("utf-16")
    host.write_ini(user, content.replace("denyIncoming=button", "denyIncoming=all").encode("utf-16"))
    code, data = run_json(lab, "health")
    assert code == 4 and status(data)["lab-001"] == "drifted" and status(data)["lab-003"] == "pending"
    assert lab.push().exit_code == 0
    code, data = run_json(lab, "health")
    assert code == 0 and set(status(data).values()) <= {"ok", "warning"}


def test_health_errors_and_warnings(lab: Lab) -> None:
    assert lab.push().exit_code == 0
    lab.host("lab-001").path("C:\\Program Files\\Contoso CRM\\crm-popup.exe").unlink()
    lab.host("lab-002").build_time -= 3 * 365 * 86_400  # past 2.5 years: 3.22 will not start
    lab.host("lab-004").audio_devices.remove("Speakers (Realtek(R) Audio)")
    lab.host("lab-003").path("C:\\Program Files\\MicroSIP\\microsip.exe").unlink()
    user = lab.user("lab-004")
    lab.host("lab-004").faults.registration_fails = True
    lab.host("lab-004").start_microsip(user)  # support logs: its log now says the REGISTER failed
    code, data = run_json(lab, "health")
    assert code == 1
    assert checks(data, "lab-001")["hook C:\\Program Files\\Contoso CRM\\crm-popup.exe"]["status"] == "fail"
    age = checks(data, "lab-002")["build age"]
    assert age["status"] == "fail" and "refuses to start" in age["detail"]
    assert checks(data, "lab-003")["microsip"]["detail"].startswith("not installed")
    lab_004 = checks(data, "lab-004")
    assert lab_004[f"{user}: audio ring"]["status"] == "warn"
    assert lab_004[f"{user}: registration"]["status"] == "fail"
    assert "401" in lab_004[f"{user}: registration"]["detail"]


def test_health_runs_where_audio_devices_cannot_be_listed(lab: Lab) -> None:
    """Win32_PnPEntity queried by PNPClass fails on some Windows: that check says so, the rest runs."""
    assert lab.push().exit_code == 0
    host = lab.host("lab-002")  # support: its profile names a ring device
    host.break_cmdlet("Get-CimInstance", "Invalid query ", when=lambda b: b.get("ClassName") == "Win32_PnPEntity")
    code, data = run_json(lab, "health", "--limit", "lab-002")
    assert code == 0, data
    got = checks(data, "lab-002")
    assert got["audio devices"]["status"] == "warn" and "Invalid query" in got["audio devices"]["detail"]
    user = lab.user("lab-002")
    assert got[f"{user}: audio ring"]["status"] == "skip"
    assert got[f"{user}: drift"]["status"] == "pass" and got["microsip"]["status"] == "pass"


def test_health_warns_on_old_builds_and_unreachable_hosts_are_named_so(lab: Lab) -> None:
    lab.host("lab-001").build_time -= 400 * 86_400  # 600 days: past 1.5 years
    lab.fleet.refuse("lab-002")
    code, data = run_json(lab, "health")
    assert code == 1
    assert checks(data, "lab-001")["build age"]["status"] == "warn"
    assert checks(data, "lab-002")["winrm"]["detail"].startswith("refused:")
    assert status(data)["lab-002"] == "unreachable"  # as push says it
    assert checks(data, "lab-003")[f"{lab.user('lab-003')}: drift"]["status"] == "warn"  # never pushed


def test_health_table_junit_and_no_secrets(lab: Lab, tmp_path: Path) -> None:
    assert lab.push().exit_code == 0
    lab.host("lab-001").path("C:\\Program Files\\Contoso CRM\\crm-popup.exe").unlink()
    lab.fleet.refuse("lab-004")
    junit = tmp_path / "health.xml"
    result = lab.run("health", "--junit", str(junit), "--timeout", "20")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith("4 hosts: 2 with warnings, 1 unreachable, 1 failed (")
    SCHEMA.validate(str(junit))
    xml = junit.read_text("utf-8")
    assert xml.count("<testcase ") == 4 and xml.count("<failure ") == 1 and xml.count("<error ") == 1
    env = read_env_file(lab.fleet.env_file)
    for secret in (env["PROVISION_WINRM_PASSWORD"], env["PROVISION_LAB_SIP_PASSWORD"]):
        assert secret not in xml and secret not in result.output


# smoke -------------------------------------------------------------------------------------


def test_smoke_passes_every_step_and_leaves_the_users_microsip_alone(lab: Lab) -> None:
    host = lab.host("lab-001")
    user = lab.user("lab-001")
    (own,) = host.user_microsips(user)
    before = {p: p.read_bytes() for p in (lab.fleet.folder / "hosts").rglob("*") if p.is_file()}
    code, data = run_json(lab, "smoke")
    assert code == 0, data
    assert set(status(data).values()) == {"ok"}
    got = checks(data, "lab-001")
    assert list(got) == ["locate", "prepare", "start", "dial", "answer", "hangupall", "exit", "cleanup"]
    assert "version 3.22.3" in got["locate"]["detail"]
    assert got["start"]["detail"].endswith("registered")
    assert got["dial"]["detail"] == "INVITE sent" and got["hangupall"]["detail"] == "hang-up sent"
    assert data["hosts"][0]["method"] == "copy"
    # Nothing of the user's own MicroSIP touched; nothing left behind.
    assert host.user_microsips(user) == [own]
    assert {p: p.read_bytes() for p in (lab.fleet.folder / "hosts").rglob("*") if p.is_file()} == before
    assert not [p for p in host.processes.values() if not p.user]
    assert host.stats["test_starts"] == 1


def test_smoke_with_a_build_that_takes_the_ini_switch(lab: Lab) -> None:
    lab.host("lab-002").ini_switch = True
    lab.host("lab-003").ini_switch = False  # declared but not really there: it fails, and says so
    inventory = lab.fleet.inventory
    text = inventory.read_text("utf-8")
    for name in ("lab-002", "lab-003"):
        text = text.replace(f"  {name}:\n", f"  {name}:\n    microsip: {{ini_switch: true}}\n")
    inventory.write_text(text, "utf-8")
    code, data = run_json(lab, "smoke", "--host", "lab-002", "--host", "lab-003")
    assert code == 1
    hosts = {h["host"]: h for h in data["hosts"]}
    assert hosts["lab-002"]["method"] == "switch" and hosts["lab-002"]["status"] == "ok"
    start = checks(data, "lab-003")["start"]
    assert start["status"] == "fail" and "not ready" in start["detail"]
    assert checks(data, "lab-003")["dial"]["status"] == "skip"
    assert checks(data, "lab-003")["cleanup"]["status"] == "pass"
    assert not [p for p in lab.host("lab-003").processes.values() if not p.user]


@pytest.mark.parametrize(
    ("fault", "step", "words"),
    [
        ("modal", "start", "no registration in its log"),
        ("registration", "start", "registration failed"),
        ("crash", "answer", "exited after answer"),
        ("crash on dial", "dial", "exited after dial"),
        ("disk full", "prepare", "not enough space"),
        ("wont exit", "exit", "still running"),
        ("no exe", "locate", "microsip.exe not found"),
    ],
)
def test_smoke_step_failures_are_reported_and_cleaned_up(lab: Lab, fault: str, step: str, words: str) -> None:
    host = lab.host("lab-002")
    if fault == "modal":
        host.faults.microsip_modal = True
    elif fault == "registration":
        host.faults.registration_fails = True
    elif fault == "crash":
        host.faults.microsip_crash_on = "/answer"
    elif fault == "crash on dial":
        host.faults.microsip_crash_on = "*43"
    elif fault == "disk full":
        host.faults.disk_full = True
    elif fault == "wont exit":
        host.faults.microsip_wont_exit = True
    elif fault == "no exe":
        host.path("C:\\Program Files\\MicroSIP\\microsip.exe").unlink()
    code, data = run_json(lab, "smoke")
    assert code == 1
    assert status(data) == {"lab-001": "ok", "lab-002": "failed", "lab-003": "ok", "lab-004": "ok"}
    got = checks(data, "lab-002")
    assert got[step]["status"] == "fail" and words in got[step]["detail"], got[step]
    assert got["cleanup"]["status"] == "pass"
    assert not [p for p in host.processes.values() if not p.user]
    assert not host.path("C:\\ProgramData\\provision").exists() or not any(
        host.path("C:\\ProgramData\\provision").iterdir()
    )


def test_smoke_that_times_out_is_cleaned_up_on_a_new_shell(lab: Lab) -> None:
    host = lab.host("lab-004")
    host.faults.smoke_hang = True
    result = lab.run("smoke", "--format", "json", "--timeout", "4", "--host", "lab-004")
    data = json.loads(result.output[result.output.index("{") : result.output.rindex("}") + 1])
    assert result.exit_code == 1
    got = checks(data, "lab-004")
    assert got["winrm"]["detail"].startswith("timeout")
    assert got["cleanup"]["status"] == "pass" and "after the timeout" in got["cleanup"]["detail"]
    assert host.stats["test_starts"] == 1
    assert not [p for p in host.processes.values() if not p.user]  # ended with its shell
    assert not any(host.path("C:\\ProgramData\\provision").iterdir())


def test_smoke_profile_must_log_and_have_its_own_port(lab: Lab) -> None:
    smoke = lab.profiles / "smoke.yaml"
    smoke.write_text(smoke.read_text("utf-8").replace("  enableLog: true\n", ""), "utf-8")
    result = lab.run("smoke")
    assert result.exit_code == 2
    # The error points at the layer that set it last: base.yaml's enableLog: false.
    assert "base.yaml:17: settings.enableLog: a smoke profile must set enableLog: true" in result.output
    assert sum(lab.ops().values()) == 0


def test_smoke_junit_is_valid(lab: Lab, tmp_path: Path) -> None:
    lab.host("lab-003").faults.microsip_modal = True
    junit = tmp_path / "smoke.xml"
    result = lab.run("smoke", "--junit", str(junit), "--timeout", "20")
    assert result.exit_code == 1
    assert "copy" in result.output  # the method column
    SCHEMA.validate(str(junit))
    xml = junit.read_text("utf-8")
    assert xml.count("<testcase ") == 4 and xml.count("<failure ") == 1
    assert "SIP_PW" not in xml and read_env_file(lab.fleet.env_file)["SIP_PW_SMOKE"] not in xml


def test_health_reads_only_the_end_of_a_long_microsip_log(lab: Lab) -> None:
    """A level-5 log grows for weeks: a line from long ago says nothing about now, and the whole
    file must not be read into the shell (MaxMemoryPerShellMB)."""
    assert lab.push().exit_code == 0
    host = lab.host("lab-002")  # support: logging on
    user = lab.user("lab-002")
    log = host.path(f"C:\\Users\\{user}\\AppData\\Local\\MicroSIP\\microsip_log.txt")
    log.parent.mkdir(parents=True, exist_ok=True)
    noise = "".join(
        f"12:00:{n % 60:02d}.000 pjsua_core.c  RX 512 bytes OPTIONS from UDP 10.0.0.1:5060\r\n" for n in range(60_000)
    )
    log.write_text("12:00:00.000 pjsua_acc.c  SIP registration failed, status=401 (Unauthorized)\r\n" + noise, "utf-8")
    host.stats["log_bytes_read"] = 0
    _, data = run_json(lab, "health", "--limit", "lab-002")
    got = checks(data, "lab-002")[f"{user}: registration"]
    assert got["status"] == "warn" and "no registration line" in got["detail"], got
    assert host.stats["log_bytes_read"] <= 256 * 1024
    with log.open("a", encoding="utf-8", newline="") as handle:
        handle.write("12:01:00.000 pjsua_acc.c  registration success, status=200 (OK)\r\n")
    _, data = run_json(lab, "health", "--limit", "lab-002")
    assert checks(data, "lab-002")[f"{user}: registration"]["status"] == "pass"
