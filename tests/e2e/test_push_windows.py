"""push and rollback when Windows behaves as Windows: processes that vanish, runs that die,
many users on one host, steps that throw, AppData elsewhere. Through real pywinrm, against the lab."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from provision.jobs import host_jobs
from provision.project import Project, prepare
from provision.push import PushOptions, push_host
from provision.rollout import Credentials, winrm_connect
from provision.secrets import Secret, read_env_file

from conftest import EXAMPLES, ROOT
from labkit import Lab, running_lab

CLOSED = "C:\\ProgramData\\provision\\closed"


def users_of(report: dict[str, Any], host: str) -> dict[str, dict[str, Any]]:
    (entry,) = [h for h in report["hosts"] if h["host"] == host]
    return {u["user"]: u for u in entry["users"]}


def host_of(report: dict[str, Any], host: str) -> dict[str, Any]:
    (entry,) = [h for h in report["hosts"] if h["host"] == host]
    return entry


def markers(lab: Lab, host: str) -> list[str]:
    folder = lab.host(host).path(CLOSED)
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# 1. Never leave a user's MicroSIP closed ----------------------------------------------------


def test_a_microsip_the_user_quits_while_its_owner_is_asked_is_no_error(lab: Lab) -> None:
    """GetOwner on a process that has just exited throws 'Not found '."""
    host = lab.host("lab-001")
    host.faults.getowner_race = True
    user = lab.user("lab-001")
    report = lab.report("--limit", "lab-001")
    assert report["exit_code"] == 0, report["output"]
    assert users_of(report, "lab-001")[user]["status"] == "changed"


def test_a_process_gone_mid_poll_does_not_leave_microsip_closed(lab: Lab) -> None:
    """/exit's own microsip.exe is seen by the wait loop and gone by the time it is asked for its owner."""
    host = lab.host("lab-001")
    host.faults.gone_mid_poll = True
    user = lab.user("lab-001")
    report = lab.report("--limit", "lab-001")
    assert report["exit_code"] == 0, report["output"]
    got = users_of(report, "lab-001")[user]
    assert got["status"] == "changed" and got["restarted"]
    assert host.user_microsips(user)


def test_microsip_closed_by_a_run_that_died_is_started_by_the_next_conversation(lab: Lab) -> None:
    """The controller is gone between close and restart (here: it gave up and deleted the shell)."""
    host = lab.host("lab-001")
    user = lab.user("lab-001")
    host.faults.stall_after_close = 60
    result = lab.run("push", "--timeout", "2", "--limit", "lab-001")
    assert result.exit_code == 1 and "timed out" in result.output
    assert host.user_microsips(user) == []  # closed, and that run will never start it again
    assert markers(lab, "lab-001")  # ... but the host remembers
    host.faults.stall_after_close = 0
    health = lab.run("health", "--limit", "lab-001", "--format", "json", "--timeout", "20")
    assert host.user_microsips(user)  # the next conversation started it first
    assert markers(lab, "lab-001") == []
    data = json.loads(health.output[health.output.index("{") : health.output.rindex("}") + 1])
    checks = {c["name"]: c for c in data["hosts"][0]["checks"]}
    assert "started again" in checks[f"{user}: recovered"]["detail"]


def test_a_microsip_that_does_not_come_back_is_reported_and_remembered(lab: Lab) -> None:
    host = lab.host("lab-001")
    user = lab.user("lab-001")
    host.faults.microsip_wont_start = True
    report = lab.report("--limit", "lab-001")
    assert report["exit_code"] == 1
    got = users_of(report, "lab-001")[user]
    assert not got["restarted"] and "did not start again" in got["reason"]
    assert markers(lab, "lab-001")
    host.faults.microsip_wont_start = False
    again = lab.report("--limit", "lab-001")
    assert again["exit_code"] == 0, again["output"]
    assert host.user_microsips(user) and markers(lab, "lab-001") == []


# 4. Many users on one host ---------------------------------------------------------------------


def shared_host(tmp_path: Path, users: int = 15) -> Iterator[Lab]:
    """One shared host (RDS) with `users` users, every one with MicroSIP running."""
    with running_lab(tmp_path, EXAMPLES, hosts=1, users=users) as lab:
        host = lab.host("lab-001")
        for name in list(host.users):
            if not host.user_microsips(name):
                host.start_microsip(name)
        yield lab


def test_many_users_are_closed_together_and_waited_for_once(tmp_path: Path) -> None:
    with contextmanager(shared_host)(tmp_path) as lab:
        host = lab.host("lab-001")
        host.faults.exit_delay_ms = 300  # each MicroSIP takes 0.3 s to save and exit
        report = lab.report("--timeout", "3")
        assert report["exit_code"] == 0, report["output"]
        got = users_of(report, "lab-001")
        assert len(got) == 15 and {u["status"] for u in got.values()} == {"changed"}
        assert all(u["restarted"] for u in got.values())
        assert all(host.user_microsips(name) for name in host.users)
        assert host.stats["microsip_kills"] == 0


def test_users_past_the_hosts_time_budget_are_busy_with_microsip_still_running(tmp_path: Path) -> None:
    with contextmanager(shared_host)(tmp_path) as lab:
        host = lab.host("lab-001")
        host.faults.task_delay_ms = 300  # every scheduled task takes 0.3 s to register
        env = read_env_file(lab.fleet.env_file)
        project = Project(lab.profiles, ROOT / "templates", lab.root / "state.db", env, lab.root)
        prepared = prepare(project, lab.fleet.inventory)
        (job,) = host_jobs(prepared, {})
        connect = winrm_connect(Credentials(env["PROVISION_WINRM_USER"], Secret(env["PROVISION_WINRM_PASSWORD"])))
        options = PushOptions(timeout=2, per_user_seconds=0.2)  # 5 s for 15 users to change
        result = push_host(job, connect(prepared.inventory), options, b"k" * 32)
        assert not result.kind, result.reason  # the host answered in time
        statuses = {u.user: u for u in result.users}
        busy = [u for u in statuses.values() if u.status == "busy"]
        assert busy and all("time" in u.reason for u in busy)
        assert {u.status for u in statuses.values()} <= {"changed", "busy"}
        for name, user in statuses.items():
            assert host.user_microsips(name), f"{name} ({user.status}) left without MicroSIP"
            assert user.status == "busy" or user.restarted


# 5. One user's failure is that user's ------------------------------------------------------------


def test_rollback_of_a_user_without_a_microsip_folder_is_that_users_no_backup(lab: Lab) -> None:
    assert lab.push("--limit", "lab-002").exit_code == 0
    host = lab.host("lab-002")
    first, second = lab.user("lab-002"), lab.user("lab-002", 1)
    host.remove_item(f"C:\\Users\\{second}\\AppData\\Roaming\\MicroSIP")  # e.g. cleaned up since
    result = lab.run("rollback", "--limit", "lab-002", "--report", str(lab.root / "rollback.json"))
    assert result.exit_code == 0, result.output
    report = json.loads((lab.root / "rollback.json").read_text("utf-8"))
    got = users_of(report, "lab-002")
    assert got[first]["status"] == "restored" and got[second]["status"] == "no backup"


def test_an_ini_locked_by_another_program_fails_that_user_only(lab: Lab) -> None:
    host = lab.host("lab-002")
    locked = lab.user("lab-002", 1)
    host.faults.locked_files = [f"C:\\Users\\{locked}\\AppData\\Roaming\\MicroSIP\\microsip.ini"]
    report = lab.report("--limit", "lab-002")
    assert report["exit_code"] == 1
    entry = host_of(report, "lab-002")
    assert not entry["kind"], entry["reason"]  # not the whole host
    got = users_of(report, "lab-002")
    assert got[locked]["status"] == "failed" and "being used by another process" in got[locked]["reason"]
    assert got[lab.user("lab-002")]["status"] == "changed"


def test_a_restart_that_throws_fails_that_user_only(lab: Lab) -> None:
    host = lab.host("lab-001")
    host.faults.task_fails = "/minimized"  # the task that starts MicroSIP again cannot be registered
    user, other = lab.user("lab-001"), lab.user("lab-001", 1)
    report = lab.report("--limit", "lab-001")
    assert report["exit_code"] == 1
    entry = host_of(report, "lab-001")
    assert not entry["kind"], entry["reason"]
    got = users_of(report, "lab-001")
    assert got[user]["status"] == "failed" and "0x80070534" in got[user]["reason"]
    assert not got[user]["restarted"]
    assert got[other]["status"] == "changed"
    assert markers(lab, "lab-001")  # remembered, to be started by the next conversation


# 6. Where the ini is ---------------------------------------------------------------------------


def test_the_ini_goes_where_the_users_own_appdata_is(lab: Lab) -> None:
    """User Shell Folders\\AppData, expanded with the user's profile folder (not the admin's)."""
    host = lab.host("lab-003")
    user = lab.user("lab-003", 1)
    default = host.path(f"C:\\Users\\{user}\\AppData\\Roaming\\MicroSIP\\microsip.ini")
    before = default.read_bytes()
    host.users[user].appdata = "%USERPROFILE%\\Roaming Data"
    host.write_ini(user, before)  # what MicroSIP has there (it follows the redirection)
    report = lab.report("--limit", "lab-003")
    assert report["exit_code"] == 0, report["output"]
    assert users_of(report, "lab-003")[user]["status"] == "changed"
    assert host.ini_path(user) == f"C:\\Users\\{user}\\Roaming Data\\MicroSIP\\microsip.ini"
    assert "autoAnswer=button" in (host.read_ini(user) or b"").decode("utf-16")
    assert default.read_bytes() == before  # the default place is not MicroSIP's: left alone


def test_appdata_redirected_to_a_share_is_reported_and_not_written(lab: Lab) -> None:
    host = lab.host("lab-003")
    user = lab.user("lab-003", 1)
    host.users[user].appdata = f"\\\\fs01\\redirect$\\{user}\\AppData\\Roaming"
    before = {p: p.read_bytes() for p in host.root.rglob("*") if p.is_file()}
    report = lab.report("--limit", "lab-003")
    assert report["exit_code"] == 1
    got = users_of(report, "lab-003")[user]
    assert got["status"] == "failed" and "\\\\fs01\\redirect$" in got["reason"] and "not written" in got["reason"]
    after = {p: p.read_bytes() for p in host.root.rglob("*") if p.is_file() and user in str(p)}
    assert after == {p: b for p, b in before.items() if user in str(p)}


def test_a_user_whose_hive_is_not_loaded_gets_the_default_place_and_a_warning(lab: Lab) -> None:
    host = lab.host("lab-003")
    user = lab.user("lab-003", 1)
    host.users[user].hive_loaded = False  # logged off: their registry is not loaded
    report = lab.report("--limit", "lab-003")
    assert report["exit_code"] == 0, report["output"]
    got = users_of(report, "lab-003")[user]
    assert got["status"] == "changed"
    assert any("hive is not loaded" in note for note in got["notes"])


def test_a_missing_profile_folder_is_never_created(lab: Lab) -> None:
    host = lab.host("lab-003")
    user = lab.user("lab-003", 1)
    host.remove_item(f"C:\\Users\\{user}")  # ProfileList still names it
    report = lab.report("--limit", "lab-003")
    assert report["exit_code"] == 1
    got = users_of(report, "lab-003")[user]
    assert got["status"] == "failed" and "does not exist" in got["reason"]
    assert not host.path(f"C:\\Users\\{user}").exists()
