"""push and rollback when Windows behaves as Windows: processes that vanish, runs that die,
many users on one host, steps that throw, AppData elsewhere. Through real pywinrm, against the lab."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from provision.ini import encode_ini
from provision.jobs import HostJob, host_jobs
from provision.lab.host import SimulatedHost, read_task
from provision.lab.programs import TRUSTED_FOLDER
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


def guard_of(host: SimulatedHost, user: str) -> Any:
    return read_task(host.path(f"C:\\Windows\\System32\\Tasks\\provision\\microsip-guard-{user}").read_bytes())


def seconds_until(host: SimulatedHost, boundary: str) -> float:
    return (datetime.fromisoformat(boundary) - host.now()).total_seconds()


def job_of(lab: Lab, host: str) -> tuple[HostJob, Any]:
    """The push job of one lab host, and a connect function for it (push_host without the CLI)."""
    env = read_env_file(lab.fleet.env_file)
    project = Project(lab.profiles, ROOT / "templates", lab.root / "state.db", env, lab.root)
    prepared = prepare(project, lab.fleet.inventory, hosts=[host])
    (job,) = host_jobs(prepared, {})
    connect = winrm_connect(Credentials(env["PROVISION_WINRM_USER"], Secret(env["PROVISION_WINRM_PASSWORD"])))
    return job, connect(prepared.inventory)


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
    assert host.tasks() == [f"microsip-guard-{user}"]  # ... and has a task to start it by itself
    host.faults.stall_after_close = 0
    health = lab.run("health", "--limit", "lab-001", "--format", "json", "--timeout", "20")
    assert host.user_microsips(user)  # the next conversation started it first
    assert markers(lab, "lab-001") == [] and host.tasks() == []  # the guard went with the marker
    data = json.loads(health.output[health.output.index("{") : health.output.rindex("}") + 1])
    checks = {c["name"]: c for c in data["hosts"][0]["checks"]}
    assert "started again" in checks[f"{user}: recovered"]["detail"]
    host.advance(24 * 3600)
    assert host.stats["minimized_forwarded"] == 0 and host.stats["tasks_triggered"] == 0


def test_microsip_closed_by_a_run_that_died_starts_again_by_itself_without_another_run(lab: Lab) -> None:
    """The product rule: a MicroSIP the tool closed is always started again, even when the
    controller dies (here it gives up and deletes the shell, which kills the agent). Before
    /exit the agent registered a one-shot task that starts it when that run has surely ended."""
    host = lab.host("lab-001")
    user = lab.user("lab-001")
    host.faults.stall_after_close = 60
    result = lab.run("push", "--timeout", "2", "--limit", "lab-001")
    assert result.exit_code == 1 and "timed out" in result.output
    assert host.user_microsips(user) == [] and markers(lab, "lab-001")
    guard = guard_of(host, user)
    assert (guard.user, guard.logon_type, guard.arguments) == (user, "InteractiveToken", "/minimized")
    assert guard.command == host.exe_for(user) and guard.start_when_available
    assert (guard.priority, guard.execution_time_limit) == (4, "PT0S")
    assert not guard.disallow_start_if_on_batteries and not guard.stop_if_going_on_batteries
    wait = seconds_until(host, guard.start_boundary)
    assert 0 < wait < 30  # after the 2 s (and 2 s a user) that run had, with a margin
    host.advance(wait - 1)
    assert host.user_microsips(user) == []  # not before
    host.advance(2)
    (process,) = host.user_microsips(user)  # no provision run since
    assert process.session == host.users[user].session and process.priority == 4
    assert process.time_limit == "PT0S"  # trigger-started: held to the task's limit, which is none
    assert host.stats["minimized_forwarded"] == 0
    assert lab.run("health", "--limit", "lab-001", "--timeout", "20").exit_code in (0, 1)
    assert markers(lab, "lab-001") == [] and host.tasks() == []  # the next conversation tidies up


def test_a_marker_of_an_agent_past_its_time_is_taken_over(lab: Lab) -> None:
    """An agent whose controller is gone can live on with its shell (WinRM's IdleTimeout, hours):
    past the time its request was given, its marker is the next conversation's to handle."""
    host = lab.host("lab-002")
    user = lab.user("lab-002")
    assert host.user_microsips(user) == []
    pid, ticks = 424242, 638000000000000000
    host.agents[pid] = ticks  # a powershell.exe still running
    sid = host.users[user.casefold()].sid
    now = datetime.now(UTC)
    for folder in (CLOSED.rpartition("\\")[0], CLOSED):
        host.create_directory(folder, TRUSTED_FOLDER)  # as the agent makes them
    for until, expect in ((now + timedelta(hours=1), False), (now - timedelta(seconds=1), True)):
        marker = {
            "name": user,
            "exe": host.exe_for(user),
            "session": host.users[user.casefold()].session,
            "agent_pid": pid,
            "agent_started": ticks,
            "closed_at": (now - timedelta(minutes=5)).isoformat(),
            "until": until.isoformat(),
        }
        host.path(f"{CLOSED}\\{sid}.json").write_text(json.dumps(marker), "utf-8")
        assert lab.run("health", "--limit", "lab-002", "--timeout", "20").exit_code in (0, 1)
        assert bool(host.user_microsips(user)) is expect
        assert bool(markers(lab, "lab-002")) is not expect


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


def test_a_normal_push_registers_a_guard_before_exit_and_removes_it(lab: Lab) -> None:
    host = lab.host("lab-001")
    user = lab.user("lab-001")
    report = lab.report("--limit", "lab-001")
    assert report["exit_code"] == 0, report["output"]
    registered = [read_task(data) for data in host.task_history]
    assert [(t.arguments, bool(t.start_boundary)) for t in registered] == [
        ("/minimized", True),  # the guard first,
        ("/exit", False),  # then /exit,
        ("/minimized", False),  # then the start
    ]
    assert host.tasks() == [] and markers(lab, "lab-001") == []  # nothing left under \provision\
    host.advance(24 * 3600)
    assert host.stats["tasks_triggered"] == 0 and host.stats["minimized_forwarded"] == 0
    assert users_of(report, "lab-001")[user]["restarted"]


def test_a_user_whose_exit_cannot_be_sent_is_not_closed_at_all(lab: Lab) -> None:
    host = lab.host("lab-001")
    user, other = lab.user("lab-001"), lab.user("lab-001", 1)
    (before,) = host.user_microsips(user)
    host.faults.task_fails = "/exit"  # the task that would send /exit cannot be registered
    report = lab.report("--limit", "lab-001")
    assert report["exit_code"] == 1
    got = users_of(report, "lab-001")
    assert got[user]["status"] == "failed" and "0x80070534" in got[user]["reason"]
    assert "left running" in got[user]["reason"]
    assert host.user_microsips(user) == [before]  # untouched: neither waited for nor stopped
    assert host.stats["microsip_kills"] == 0
    assert got[other]["status"] == "changed"
    assert markers(lab, "lab-001") == [] and host.tasks() == []


def test_an_exit_task_that_cannot_be_started_is_removed_and_microsip_left_alone(lab: Lab) -> None:
    host = lab.host("lab-001")
    user = lab.user("lab-001")
    (before,) = host.user_microsips(user)
    refused = "The operator or administrator has refused the request. (Exception from HRESULT: 0x800710E0)"
    host.break_cmdlet("Start-ScheduledTask", refused, when=lambda b: str(b["TaskName"]).startswith("microsip-exit-"))
    report = lab.report("--limit", "lab-001")
    assert report["exit_code"] == 1
    got = users_of(report, "lab-001")[user]
    assert got["status"] == "failed" and "0x800710E0" in got["reason"]
    assert host.user_microsips(user) == [before] and host.stats["microsip_kills"] == 0
    assert host.tasks() == [] and markers(lab, "lab-001") == []


def test_a_step_that_throws_after_exit_still_starts_every_microsip_again(lab: Lab) -> None:
    host = lab.host("lab-001")
    user, other = lab.user("lab-001"), lab.user("lab-001", 1)
    host.start_microsip(other)

    def after_exit(bindings: dict[str, object]) -> bool:
        sent = any(read_task(data).arguments == "/exit" for data in host.task_history)
        return sent and bindings.get("ClassName") == "Win32_Process"

    host.break_cmdlet("Get-CimInstance", "Quota violation ", when=after_exit)  # WMI, in the close wait
    report = lab.report("--limit", "lab-001")
    assert report["exit_code"] == 1
    assert "Quota violation" in host_of(report, "lab-001")["reason"]
    assert host.user_microsips(user) and host.user_microsips(other)  # both closed, both back
    assert markers(lab, "lab-001") == [] and host.tasks() == []


def test_a_rollback_step_that_throws_after_exit_still_starts_microsip_again(lab: Lab) -> None:
    assert lab.push("--limit", "lab-001").exit_code == 0  # the backups to roll back to
    host = lab.host("lab-001")
    user = lab.user("lab-001")
    pushed = len(host.task_history)

    def after_exit(bindings: dict[str, object]) -> bool:
        sent = any(read_task(data).arguments == "/exit" for data in host.task_history[pushed:])
        return sent and bindings.get("ClassName") == "Win32_Process"

    host.break_cmdlet("Get-CimInstance", "Quota violation ", when=after_exit)
    result = lab.run("rollback", "--limit", "lab-001", "--timeout", "20")
    assert result.exit_code == 1 and "Quota violation" in result.output
    assert host.user_microsips(user)  # closed by the rollback, and back
    assert markers(lab, "lab-001") == [] and host.tasks() == []


def test_one_users_marker_that_cannot_be_removed_loses_no_result(lab: Lab) -> None:
    host = lab.host("lab-001")
    user, other = lab.user("lab-001"), lab.user("lab-001", 1)
    host.start_microsip(other)
    sid = host.users[user.casefold()].sid
    host.faults.locked_files = [f"{CLOSED}\\{sid}.json"]  # a scanner holds it open
    report = lab.report("--limit", "lab-001")
    assert report["exit_code"] == 0, report["output"]
    got = users_of(report, "lab-001")
    assert got[user]["status"] == got[other]["status"] == "changed"
    assert got[user]["restarted"] and got[other]["restarted"]
    assert markers(lab, "lab-001") == [f"{sid}.json"]  # left for the next conversation; the other's gone
    assert host.tasks() == []


def test_microsip_closed_for_an_ini_it_rewrote_unreadably_is_started_again(lab: Lab) -> None:
    """MicroSIP saves on exit; what is in the file then cannot be merged (here another program
    wrote it at that moment). No ini is written, but MicroSIP was closed: it is started again."""
    host = lab.host("lab-001")
    user = lab.user("lab-001")
    broken = encode_ini("[Settings]\nmainX=1\n[Settings]\nmainX=2\n")

    def scribble(who: str, ini: str) -> None:
        if who == user:
            host.write_ini(who, broken, ini)

    host.after_save.append(scribble)
    report = lab.report("--limit", "lab-001")
    assert report["exit_code"] == 1
    got = users_of(report, "lab-001")[user]
    assert got["status"] == "failed" and got["reason"].startswith("unreadable ini")
    assert got["restarted"] and host.user_microsips(user)
    assert lab.ini("lab-001", user) == broken
    assert markers(lab, "lab-001") == [] and host.tasks() == []


# 2. Time ---------------------------------------------------------------------------------------


def test_a_user_that_cannot_be_closed_and_started_again_in_time_is_busy_and_untouched(lab: Lab) -> None:
    """Closing (/exit, up to 10 s), stopping (2 s) and starting again (up to 10 s) must all fit
    in the time the host was given; else MicroSIP is left running."""
    host = lab.host("lab-001")
    host.wait_scale = 1.0  # the real waits
    user, other = lab.user("lab-001"), lab.user("lab-001", 1)
    (before,) = host.user_microsips(user)
    report = lab.report("--limit", "lab-001", "--timeout", "5")
    assert report["exit_code"] == 1
    got = users_of(report, "lab-001")
    assert got[user]["status"] == "busy" and "--timeout" in got[user]["reason"]
    assert host.user_microsips(user) == [before] and host.task_history == []
    assert got[other]["status"] == "changed"  # not running: nothing to close
    assert markers(lab, "lab-001") == []


def test_a_closed_microsip_is_always_started_again_before_the_controller_gives_up(lab: Lab) -> None:
    host = lab.host("lab-001")
    host.wait_scale = 0.2  # /exit is waited for 2 s, the stop 0.4 s, the start 2 s
    host.faults.microsip_wont_exit = True  # every wait is used up
    user = lab.user("lab-001")
    ini = host.read_ini(user)
    job, connect = job_of(lab, "lab-001")
    for timeout, expected in ((2.0, "busy"), (7.0, "changed")):
        host.write_ini(user, ini or b"")
        if not host.user_microsips(user):
            host.start_microsip(user)
        (before,) = host.user_microsips(user)
        result = push_host(job, connect, PushOptions(timeout=timeout, per_user_seconds=0), b"k" * 32)
        assert not result.kind, result.reason  # the host answered in time
        got = {u.user: u for u in result.users}[user]
        assert got.status == expected, got
        if expected == "busy":
            assert "--timeout" in got.reason and host.user_microsips(user) == [before]
        else:
            assert got.restarted and host.user_microsips(user)
        assert markers(lab, "lab-001") == [] and host.tasks() == []


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
    unmapped = "No mapping between account names and security IDs was done. (Exception from HRESULT: 0x80070534)"
    starts = "microsip-start-"  # the task that starts MicroSIP again cannot be registered
    host.break_cmdlet("Register-ScheduledTask", unmapped, when=lambda b: str(b["TaskName"]).startswith(starts))
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
    assert host.tasks() == [f"microsip-guard-{user}"]  # ... or by the guard, at its time
    host.advance(seconds_until(host, guard_of(host, user).start_boundary) + 1)
    assert host.user_microsips(user)


def test_a_user_whose_guard_cannot_be_registered_is_not_closed(lab: Lab) -> None:
    host = lab.host("lab-001")
    host.faults.task_fails = "/minimized"  # neither the guard nor the start could be registered
    user = lab.user("lab-001")
    (before,) = host.user_microsips(user)
    report = lab.report("--limit", "lab-001")
    assert report["exit_code"] == 1
    got = users_of(report, "lab-001")[user]
    assert got["status"] == "failed" and "0x80070534" in got["reason"] and "left running" in got["reason"]
    assert host.user_microsips(user) == [before] and host.stats["microsip_exits"] == 0
    assert markers(lab, "lab-001") == [] and host.tasks() == []


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
