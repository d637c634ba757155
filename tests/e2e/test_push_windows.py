"""push and rollback when Windows behaves as Windows: processes that vanish, runs that die,
many users on one host, steps that throw, AppData elsewhere. Through real pywinrm, against the lab."""

from __future__ import annotations

import json
from typing import Any

from labkit import Lab

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
