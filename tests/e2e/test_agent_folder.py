"""C:\\ProgramData\\provision: the agent keeps there what it must trust (markers naming an exe it
will start; smoke's copy of MicroSIP, which it runs as the WinRM administrator). Any user may
create folders in ProgramData and owns what they create, so the agent makes its folders for
Administrators and SYSTEM only, and refuses one that anybody else owns or may write to.
Through real pywinrm, against the lab."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from provision.lab.host import ADMINISTRATORS, USERS
from provision.remote.agent import Agent

from labkit import DirectTransport, Lab

ROOT = "C:\\ProgramData\\provision"


def users_of(report: dict[str, Any], host: str) -> dict[str, dict[str, Any]]:
    (entry,) = [h for h in report["hosts"] if h["host"] == host]
    return {u["user"]: u for u in entry["users"]}


def smoke_checks(lab: Lab, host: str) -> dict[str, dict[str, Any]]:
    result = lab.run("smoke", "--format", "json", "--timeout", "20", "--host", host)
    data = json.loads(result.output[result.output.index("{") : result.output.rindex("}") + 1])
    (entry,) = data["hosts"]
    return {c["name"]: c for c in entry["checks"]}


def facts(lab: Lab, host: str) -> dict[str, Any]:
    """The agent's preflight facts (what doctor's inspect request returns)."""
    agent = Agent(DirectTransport(lab.host(host)), deadline=time.monotonic() + 20)
    reply = agent.request({"op": "inspect", "install": {"mode": "installed", "exe": None}, "users": []})
    found: dict[str, Any] = reply["facts"]
    return found


def test_the_agents_folders_are_for_administrators_and_system_only(lab: Lab) -> None:
    host = lab.host("lab-001")
    user = lab.user("lab-001")
    assert lab.push("--limit", "lab-001").exit_code == 0  # closes MicroSIP: a marker is written
    for folder in (ROOT, ROOT + "\\closed"):
        security = host.get_access_control(folder)
        assert security.owner == ADMINISTRATORS and security.protected
        with pytest.raises(PermissionError):
            host.user_writes_file(user, folder + "\\version.dll", b"MZ")
    assert facts(lab, "lab-001")["provision_folder"] == "ok"
    assert facts(lab, "lab-002")["provision_folder"] == "absent"  # nothing closed there yet


@pytest.mark.parametrize("made_by", ["a user", "an earlier version"])
def test_a_folder_someone_else_could_change_is_refused_and_microsip_left_running(lab: Lab, made_by: str) -> None:
    host = lab.host("lab-001")
    user, other = lab.user("lab-001"), lab.user("lab-001", 1)
    if made_by == "a user":
        host.user_creates_folder(other, ROOT)  # e.g. to plant a marker, or a DLL for smoke
        why = f"its owner is LAB-001\\{other}"
    else:
        host.create_directory(ROOT + "\\closed")  # as an earlier version did: rules inherited from ProgramData
        why = "BUILTIN\\Users may change what is in it"
    (before,) = host.user_microsips(user)
    report = lab.report("--limit", "lab-001")
    assert report["exit_code"] == 1
    got = users_of(report, "lab-001")
    assert got[user]["status"] == "failed"
    reason = got[user]["reason"]
    assert ROOT in reason and why in reason and "Remove-Item" in reason, reason
    assert host.user_microsips(user) == [before]  # not closed without a marker it can trust
    assert got[other]["status"] == "changed"  # not running: nothing to close, nothing kept there
    assert host.task_history == [] and host.tasks() == []
    assert why in facts(lab, "lab-001")["provision_folder"]


def test_smoke_refuses_a_folder_it_cannot_trust_before_copying_anything(lab: Lab) -> None:
    host = lab.host("lab-002")
    host.user_creates_folder(lab.user("lab-002"), ROOT)
    got = smoke_checks(lab, "lab-002")
    assert got["prepare"]["status"] == "fail"
    assert ROOT in got["prepare"]["detail"] and "owner" in got["prepare"]["detail"]
    assert got["start"]["status"] == "skip" and host.stats["test_starts"] == 0
    assert list(host.path(ROOT).iterdir()) == []  # nothing copied there, nothing of theirs removed


def test_no_user_can_put_a_file_beside_smokes_copy_of_microsip(lab: Lab) -> None:
    host = lab.host("lab-003")
    user = lab.user("lab-003")
    tried: list[str] = []

    def plant(bindings: dict[str, object]) -> bool:
        """While the copy is made (Copy-Item), a user tries to put a DLL beside it."""
        destination = str(bindings.get("Destination", ""))
        try:
            host.user_writes_file(user, destination.rpartition("\\")[0] + "\\version.dll", b"MZ")
            tried.append("planted")
        except PermissionError:
            tried.append("denied")
        return False

    host.break_cmdlet("Copy-Item", "", when=plant)
    got = smoke_checks(lab, "lab-003")
    assert tried == ["denied"]
    assert got["start"]["status"] == "pass" and got["cleanup"]["status"] == "pass"
    security = host.get_access_control(ROOT)
    assert security.owner == ADMINISTRATORS and not any(a.sid == USERS for a in security.aces)


def test_doctor_names_a_folder_it_cannot_trust_and_the_fix(lab: Lab, tmp_path: Any) -> None:
    lab.host("lab-002").user_creates_folder(lab.user("lab-002"), ROOT)
    path = tmp_path / "doctor.json"
    result = lab.run("doctor", "--host", "lab-002", "--timeout", "20", "--report", str(path))
    assert result.exit_code == 1, result.output
    (host,) = json.loads(path.read_text("utf-8"))["hosts"]
    step = {s["name"]: s for s in host["steps"]}["provision folder"]
    assert step["status"] == "fail" and ROOT in step["detail"] and "owner" in step["detail"]
    assert "Remove-Item" in step["fix"]
