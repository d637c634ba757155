"""provision push and rollback through real pywinrm, NTLM and TLS, against the lab."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from provision.ini import decode_ini, encode_ini, read_ini
from provision.lab.host import decrypt_password, read_task
from provision.secrets import read_env_file

from labkit import Lab


def settings(lab: Lab, host: str, user: str) -> dict[str, str]:
    doc = read_ini(decode_ini(lab.ini(host, user) or b""))
    section = doc.sections["settings"]
    return {section.names[k]: v for k, v in section.values.items()}


def value(lab: Lab, host: str, user: str, section: str, key: str) -> str | None:
    return read_ini(decode_ini(lab.ini(host, user) or b"")).get(section, key)


def files(lab: Lab) -> dict[str, bytes]:
    """Every file under the lab's simulated C: drives."""
    root = lab.fleet.folder / "hosts"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def edit_profile(lab: Lab, name: str, old: str, new: str) -> None:
    path = lab.profiles / f"{name}.yaml"
    text = path.read_text("utf-8")
    assert old in text
    path.write_text(text.replace(old, new), "utf-8")


# The push itself ---------------------------------------------------------------------------


def test_first_push_merges_into_each_users_ini_and_keeps_their_keys(lab: Lab) -> None:
    result = lab.push()
    assert result.exit_code == 0, result.output
    assert "4 hosts: 4 changed" in result.output
    user = lab.user("lab-002", 1)
    got = settings(lab, "lab-002", user)
    assert got["autoAnswer"] == ""  # support profile
    assert got["updatesInterval"] == "never"
    assert got["mainX"] == "412" and got["volumeRing"] == "100"  # the user's own keys, kept
    raw = lab.ini("lab-002", user) or b""
    assert raw.startswith(b"\xff\xfe") and "\r\n".encode("utf-16-le") in raw
    assert value(lab, "lab-002", user, "Calls", "0") == "2101;Jane Doe;1;1732440000;42;"  # MicroSIP's own section
    sip = read_env_file(lab.fleet.env_file)["PROVISION_LAB_SIP_PASSWORD"]
    assert value(lab, "lab-002", user, "Account1", "password") == sip  # written as is; MicroSIP encrypts it


def test_second_push_changes_nothing_and_costs_five_operations(lab: Lab) -> None:
    assert lab.push().exit_code == 0
    for host in lab.fleet.hosts.values():  # MicroSIP starts (encrypting passwords) and exits again
        for user in host.users.values():
            if not host.user_microsips(user.name):
                host.start_microsip(user.name)
    before = files(lab)
    lab.reset_counts()
    result = lab.push()
    assert result.exit_code == 0, result.output
    assert "4 hosts: 4 unchanged" in result.output
    assert files(lab) == before  # nothing written, no backup made
    assert set(lab.ops().values()) == {5}  # Create, Command, Send, Receive, Delete
    encrypted = value(lab, "lab-001", lab.user("lab-001"), "Account1", "password") or ""
    assert decrypt_password(encrypted) is not None  # the encrypted password is not drift


def test_profile_change_touches_only_that_key(lab: Lab) -> None:
    assert lab.push().exit_code == 0
    host = lab.host("lab-003")  # a sales host
    user = lab.user("lab-003", 1)
    host.start_microsip(user)  # encrypts the password ...
    host.run_in_session(user, host.exe_for(user), "/exit")  # ... and saves its state on exit
    before = settings(lab, "lab-003", user)
    edit_profile(lab, "sales", "autoAnswer: button", "autoAnswer: all")
    report = lab.report("--diff")
    assert report["exit_code"] == 0, report["output"]
    (entry,) = [u for h in report["hosts"] if h["host"] == "lab-003" for u in h["users"] if u["user"] == user]
    assert entry["status"] == "changed"
    assert [(c["key"], c["old"], c["new"]) for c in entry["changes"]] == [("autoAnswer", "button", "all")]
    after = settings(lab, "lab-003", user)
    assert after == {**before, "autoAnswer": "all"}
    assert "[Settings] autoAnswer: 'button' -> 'all'" in report["output"]
    support = [h for h in report["hosts"] if h["host"] in ("lab-002", "lab-004")]
    assert {h["status"] for h in support} == {"unchanged"}


def test_running_microsip_is_closed_written_and_started_again(lab: Lab) -> None:
    host = lab.host("lab-001")
    user = lab.user("lab-001")
    (process,) = host.user_microsips(user)  # the lab runs the first user's MicroSIP on odd hosts
    other = lab.user("lab-001", 1)
    host.start_microsip(other)
    (other_process,) = host.user_microsips(other)
    lab.reset_counts()
    report = lab.report()
    assert report["exit_code"] == 0
    (new,) = host.user_microsips(user)
    assert new.pid != process.pid
    assert host.stats["microsip_exits"] == 2  # closed with /exit, not killed
    assert host.stats["microsip_kills"] == 0
    users = {u["user"]: u for u in report["hosts"][0]["users"]}
    assert users[user]["restarted"] and users[user]["status"] == "changed"
    # MicroSIP saved its state while closing; the push merged again on top of it.
    got = settings(lab, "lab-001", user)
    assert got["lastCallNumber"] == "2204" and got["autoAnswer"] == "button"
    assert lab.ops()["lab-001"] <= 9  # Create, Command, (Send, Receive) x 3, Delete
    assert host.user_microsips(other)[0].pid != other_process.pid
    # The restarted MicroSIP encrypted the new password at start.
    assert decrypt_password(value(lab, "lab-001", user, "Account1", "password") or "") is not None


def test_a_microsip_that_cannot_be_closed_makes_the_host_busy_and_unwritten(lab: Lab) -> None:
    host = lab.host("lab-001")
    host.faults.microsip_unkillable = True
    user = lab.user("lab-001")
    before = lab.ini("lab-001", user)
    report = lab.report()
    assert report["exit_code"] == 1
    statuses = {h["host"]: h["status"] for h in report["hosts"]}
    assert statuses == {"lab-001": "busy", "lab-002": "changed", "lab-003": "changed", "lab-004": "changed"}
    users = {u["user"]: u for u in report["hosts"][0]["users"]}
    assert users[user]["status"] == "busy" and "did not close" in users[user]["reason"]
    assert users[lab.user("lab-001", 1)]["status"] == "changed"  # the other user on the host is done
    assert lab.ini("lab-001", user) == before
    assert "lab-001  busy" in report["output"]


def test_a_user_who_never_logged_on_is_reported_not_guessed(lab: Lab) -> None:
    host = lab.host("lab-004")
    user = lab.user("lab-004", 1)
    host.users[user.casefold()].has_profile = False
    report = lab.report()
    assert report["exit_code"] == 0
    users = {u["user"]: u for u in report["hosts"][3]["users"]}
    assert users[user]["status"] == "no profile"
    assert "never logged on" in users[user]["reason"]


# Faults ------------------------------------------------------------------------------------


FAULTS = {
    "refused": ("refused", "connection refused"),
    "reset": ("failed", "reset"),
    "401": ("failed", "credentials rejected"),
    "hang": ("failed", "timed out"),
    "disk full": ("failed", "not enough space"),
    "soap busy": ("failed", "WinRM fault"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_on_one_host_fails_that_host_only(lab: Lab, fault: str) -> None:
    name = "lab-002"
    host = lab.host(name)
    if fault == "refused":
        lab.fleet.refuse(name)
    elif fault == "reset":
        host.faults.reset_on = "Command"
    elif fault == "401":
        host.faults.reject_auth = True
    elif fault == "hang":
        host.faults.hang = True
    elif fault == "disk full":
        host.faults.disk_full = True
    elif fault == "soap busy":
        host.faults.soap_fault = {"Command": "busy"}  # every time: retries run out
    before = {u: lab.ini(name, u) for u in host.users}
    timeout = ["--timeout", "4"] if fault == "hang" else []
    path = lab.root / "report.json"
    result = lab.run("push", *timeout, "--report", str(path))
    report = json.loads(path.read_text("utf-8"))
    assert result.exit_code == 1, result.output
    hosts = {h["host"]: h for h in report["hosts"]}
    failed = hosts.pop(name)
    assert failed["status"] == ("unreachable" if fault == "refused" else "failed")
    text = failed["reason"] + " ".join(u["reason"] for u in failed["users"])
    assert FAULTS[fault][1] in text, text
    if fault != "disk full":
        assert failed["kind"] == {"refused": "refused", "401": "auth", "hang": "timeout"}.get(fault, failed["kind"])
    assert {h["status"] for h in hosts.values()} == {"changed"}
    # Nothing half-written: the failed host's inis are what they were, with no temporary file left.
    assert {u: lab.ini(name, u) for u in host.users} == before
    assert not [p for p in (lab.fleet.folder / "hosts" / name).rglob("*") if p.name.endswith("provision-tmp")]


@pytest.mark.parametrize("kind", ["busy", "quota", "shell-not-found"])
def test_a_transient_fault_is_retried_on_a_new_shell(lab: Lab, kind: str) -> None:
    host = lab.host("lab-003")
    host.faults.soap_fault = {"Send": kind}
    host.faults.fault_times = 1
    report = lab.report()
    assert report["exit_code"] == 0, report["output"]
    (entry,) = [h for h in report["hosts"] if h["host"] == "lab-003"]
    assert entry["status"] == "changed" and entry["attempts"] == 2
    assert host.stats["action_Create"] == 2


def test_microsip_that_ignores_exit_is_stopped_and_the_ini_written(lab: Lab) -> None:
    host = lab.host("lab-001")
    host.faults.microsip_wont_exit = True
    report = lab.report()
    assert report["exit_code"] == 0
    assert host.stats["microsip_kills"] == 1
    assert settings(lab, "lab-001", lab.user("lab-001"))["autoAnswer"] == "button"


def test_latency_only_slows_the_push(lab: Lab) -> None:
    for host in lab.fleet.hosts.values():
        host.faults.latency_ms = 40
    report = lab.report()
    assert report["exit_code"] == 0
    assert min(h["seconds"] for h in report["hosts"]) >= 0.04 * 6


# Check, rollback, security -----------------------------------------------------------------


def test_check_changes_nothing_and_says_what_would(lab: Lab) -> None:
    before = files(lab)
    result = lab.push("--check", "--exit-code")
    assert result.exit_code == 3, result.output
    assert "4 hosts: 4 would change" in result.output
    assert files(lab) == before
    assert lab.host("lab-001").stats["microsip_exits"] == 0
    assert not (lab.root / "state.db").exists() or "unchanged" not in result.output


def test_rollback_restores_the_previous_ini(lab: Lab) -> None:
    assert lab.push().exit_code == 0
    user = lab.user("lab-003")
    first = lab.ini("lab-003", user)
    edit_profile(lab, "sales", "autoAnswer: button", "autoAnswer: all")
    assert lab.push("--limit", "lab-003").exit_code == 0
    assert settings(lab, "lab-003", user)["autoAnswer"] == "all"
    result = lab.run("rollback", "--limit", "lab-003")
    assert result.exit_code == 0, result.output
    assert "1 host: 1 restored" in result.output
    assert lab.ini("lab-003", user) == first
    # The record is gone, so the next push writes the password again rather than trusting the file.
    report = lab.report("--limit", "lab-003")
    notes = [c["note"] for h in report["hosts"] for u in h["users"] for c in u["changes"] if c["key"] == "password"]
    assert notes and all("no record" in n for n in notes)


def test_rollback_without_a_backup_says_so(lab: Lab) -> None:
    result = lab.run("rollback", "--host", "lab-002")
    assert result.exit_code == 0, result.output
    assert "no backup" in result.output


def test_secrets_never_appear_in_output_or_report(lab: Lab) -> None:
    env = read_env_file(lab.fleet.env_file)
    secrets = [env["PROVISION_WINRM_PASSWORD"], env["PROVISION_LAB_SIP_PASSWORD"], env["SIP_PW_SUPPORT_QUEUE"]]
    lab.host("lab-004").faults.disk_full = True
    first = lab.report("--diff")
    edit_profile(lab, "base", 'voicemailNumber: "*97"', 'voicemailNumber: "*98"')
    second = lab.report("--diff")
    rollback = lab.run("rollback")
    texts = [json.dumps(first), json.dumps(second), rollback.output]
    assert "********" in first["output"]
    for secret in secrets:
        assert all(secret not in text for text in texts)


def test_tls_certificates_are_checked(lab: Lab) -> None:
    inventory = lab.fleet.inventory
    inventory.write_text(inventory.read_text("utf-8").replace("ca_bundle: tls/ca.pem", ""), "utf-8")
    report = lab.report()
    assert report["exit_code"] == 1
    assert {h["kind"] for h in report["hosts"]} == {"tls"}
    assert "certificate not trusted" in report["hosts"][0]["reason"]
    result = lab.push("--no-verify-tls")
    assert result.exit_code == 0, result.output
    assert "TLS certificates are not checked" in result.output


def test_a_wrong_password_fails_every_host_as_auth(lab: Lab, tmp_path: Path) -> None:
    env = lab.fleet.env_file.read_text("utf-8")
    wrong = tmp_path / "wrong.env"
    password = read_env_file(lab.fleet.env_file)["PROVISION_WINRM_PASSWORD"]
    wrong.write_text(env.replace(password, "not-" + password), "utf-8")
    result = lab.run("push", "--timeout", "20", env_file=wrong)
    assert result.exit_code == 1
    assert "4 hosts: 4 failed" in result.output
    assert "credentials rejected" in result.output
    assert password not in result.output
    assert sum(lab.ops().values()) == 0  # nothing got past authentication


@pytest.mark.parametrize("command", ["push", "rollback", "health"])
def test_the_winrm_password_is_masked_wherever_it_would_show(lab: Lab, tmp_path: Path, command: str) -> None:
    """A (wrong) WinRM password that is also a word of the reasons shown: masked there."""
    wrong = tmp_path / "wrong.env"
    wrong.write_text(lab.fleet.env_file.read_text("utf-8") + "PROVISION_WINRM_PASSWORD=rejected\n", "utf-8")
    report = tmp_path / "report.json"
    result = lab.run(command, "--timeout", "20", "--report", str(report), env_file=wrong)
    assert result.exit_code == 1, result.output
    for text in (result.output, report.read_text("utf-8")):
        assert "rejected" not in text and "credentials ******** by" in text


def test_a_missing_ca_bundle_is_an_inventory_error(lab: Lab) -> None:
    inventory = lab.fleet.inventory
    inventory.write_text(inventory.read_text("utf-8").replace("tls/ca.pem", "tls/nope.pem"), "utf-8")
    result = lab.push()
    assert result.exit_code == 2
    assert "inventory.yaml:" in result.output and "CA bundle tls/nope.pem not found" in result.output
    assert sum(lab.ops().values()) == 0


@pytest.mark.parametrize(("scheme", "auth"), [("http", "ntlm"), ("https", "basic")])
def test_other_transports_push_the_same(lab: Lab, scheme: str, auth: str) -> None:
    inventory = lab.fleet.inventory
    text = (
        inventory.read_text("utf-8")
        .replace("scheme: https", f"scheme: {scheme}")
        .replace("auth: ntlm", f"auth: {auth}")
    )
    inventory.write_text(text, "utf-8")
    result = lab.push()
    assert result.exit_code == 0, result.output
    assert "4 hosts: 4 changed" in result.output


def test_basic_auth_over_http_is_refused_before_anything_is_sent(lab: Lab) -> None:
    inventory = lab.fleet.inventory
    text = inventory.read_text("utf-8").replace("scheme: https", "scheme: http").replace("auth: ntlm", "auth: basic")
    inventory.write_text(text, "utf-8")
    result = lab.push()
    assert result.exit_code == 2
    assert "basic" in result.output.lower() and "inventory.yaml:" in result.output
    assert sum(lab.ops().values()) == 0


def test_portable_microsip_gets_the_ini_next_to_its_exe(lab: Lab) -> None:
    host = lab.host("lab-004")
    host.mode = "portable"
    inventory = lab.fleet.inventory
    text = inventory.read_text("utf-8")
    portable = "  lab-004:\n    microsip: {mode: portable, exe: '%USERPROFILE%\\MicroSIP\\microsip.exe'}\n"
    inventory.write_text(text.replace("  lab-004:\n", portable), "utf-8")
    user = lab.user("lab-004")
    installed = host.path(f"C:\\Users\\{user}\\AppData\\Roaming\\MicroSIP\\microsip.ini")
    before = installed.read_bytes()
    assert lab.push().exit_code == 0
    written = host.path(f"C:\\Users\\{user}\\MicroSIP\\microsip.ini")
    assert written.is_file()
    assert settings(lab, "lab-004", user)["autoAnswer"] == ""  # read from the portable path
    assert installed.read_bytes() == before


def test_no_secret_reaches_powershells_module_log(lab: Lab) -> None:
    """Module Logging (event 4103) records every cmdlet's parameters: the ini (and its password,
    plain or in base64) must never be one of them."""
    host = lab.host("lab-001")
    assert lab.push().exit_code == 0
    sip = read_env_file(lab.fleet.env_file)["PROVISION_LAB_SIP_PASSWORD"]
    log = "\n".join(host.module_log)
    assert "Test-Path" in log  # cmdlets are logged, paths and names are fine
    assert sip not in log
    decoded = [
        base64.b64decode(token + "=" * (-len(token) % 4)).decode("utf-16-le", "replace")
        for token in re.findall(r"[A-Za-z0-9+/]{40,}={0,2}", log)
    ]
    assert [text for text in decoded if sip in text] == []


# Task Scheduler ----------------------------------------------------------------------------


def test_microsip_is_closed_and_restarted_by_tasks_that_suit_a_laptop_on_battery(lab: Lab) -> None:
    """Task Scheduler's defaults: priority 7 (below normal), no start on battery, stopped when
    the laptop unplugs, a 72-hour limit, started in System32. Each must be set explicitly."""
    host = lab.host("lab-001")
    host.on_battery = True
    user = lab.user("lab-001")
    assert host.user_microsips(user)
    report = lab.report()
    assert report["exit_code"] == 0, report["output"]
    assert host.stats["microsip_exits"] == 1 and host.stats["microsip_kills"] == 0  # /exit ran: saved, not killed
    (process,) = host.user_microsips(user)
    assert process.priority is not None and 4 <= process.priority <= 6  # the normal priority band
    assert process.working_directory == "C:\\Program Files\\MicroSIP"
    for data in host.task_history:
        task = read_task(data)
        assert data.startswith(b"\xff\xfe<\x00?\x00")  # UTF-16LE with BOM, as Task Scheduler writes it
        assert not task.disallow_start_if_on_batteries and not task.stop_if_going_on_batteries
        assert task.execution_time_limit == "PT0S" and task.priority == process.priority
        assert task.logon_type == "InteractiveToken" and task.user == user
    assert {read_task(d).arguments for d in host.task_history} == {"/exit", "/minimized"}
    assert host.tasks() == []  # every task removed once its process started
    host.unplug()
    assert host.user_microsips(user) == [process]  # still running on battery


# Which MicroSIP --------------------------------------------------------------------------------


def declare_install(lab: Lab, host: str, line: str) -> None:
    inventory = lab.fleet.inventory
    text = inventory.read_text("utf-8")
    inventory.write_text(text.replace(f"  {host}:\n", f"  {host}:\n    microsip: {line}\n"), "utf-8")


def test_a_portable_microsip_under_another_name_is_closed_before_its_ini_is_written(lab: Lab) -> None:
    host = lab.host("lab-004")
    host.mode, host.portable_exe = "portable", "%USERPROFILE%\\Phone\\softphone.exe"
    declare_install(lab, "lab-004", "{mode: portable, exe: '%USERPROFILE%\\Phone\\softphone.exe'}")
    user = lab.user("lab-004")
    host.write_ini(user, (lab.ini("lab-004", user) or b""))
    host.start_microsip(user)  # softphone.exe reads softphone.ini beside it
    (running,) = host.user_microsips(user)
    assert running.exe.endswith("softphone.exe")
    report = lab.report("--limit", "lab-004")
    assert report["exit_code"] == 0, report["output"]
    assert host.stats["microsip_exits"] == 1  # it was closed (and saved) before the write
    (restarted,) = host.user_microsips(user)
    assert restarted.pid != running.pid and restarted.exe == running.exe
    host.run_in_session(user, restarted.exe, "/exit")  # the user quits later: MicroSIP saves again
    assert settings(lab, "lab-004", user)["autoAnswer"] == ""  # the support profile's value survives


def test_only_the_declared_microsip_is_closed_not_another_copy_of_the_user(lab: Lab) -> None:
    host = lab.host("lab-002")
    user = lab.user("lab-002")
    own = host.start_microsip(user)  # the installed one
    other = host.start_microsip(user, f"C:\\Users\\{user}\\Downloads\\MicroSIP\\microsip.exe")  # their own copy
    report = lab.report("--limit", "lab-002")
    assert report["exit_code"] == 0, report["output"]
    pids = {p.pid for p in host.user_microsips(user)}
    assert other.pid in pids and own.pid not in pids  # the copy untouched; the installed one restarted
    assert host.stats["microsip_kills"] == 0


# An ini that cannot be read ------------------------------------------------------------------


def test_an_unreadable_ini_is_that_users_result_and_replaced_only_when_asked(lab: Lab) -> None:
    host = lab.host("lab-002")
    user, other = lab.user("lab-002", 1), lab.user("lab-002")
    broken = encode_ini("[Settings]\nmainX=1\n[Settings]\nmainX=2\n")  # the same section twice
    host.write_ini(user, broken)
    report = lab.report("--limit", "lab-002")
    assert report["exit_code"] == 1
    users = {u["user"]: u for u in report["hosts"][0]["users"]}
    assert users[user]["status"] == "failed" and users[user]["reason"].startswith("unreadable ini: ")
    assert "line 3" in users[user]["reason"]
    assert users[other]["status"] == "changed"
    assert lab.ini("lab-002", user) == broken  # untouched
    report = lab.report("--limit", "lab-002", "--replace-unreadable")
    assert report["exit_code"] == 0, report["output"]
    users = {u["user"]: u for u in report["hosts"][0]["users"]}
    assert users[user]["status"] == "changed" and any("replaced" in n for n in users[user]["notes"])
    assert host.path(users[user]["backup"]).read_bytes() == broken  # backed up first
    assert settings(lab, "lab-002", user)["autoAnswer"] == ""
