"""The faults a lab's host starts with (set up once, from a faults file, as `lab up --faults`
does through apply_faults): each does on the host what its Python counterpart does in the tests."""

from __future__ import annotations

import json
from typing import Any

from provision.lab.daemon import apply_faults

from labkit import Lab


def report_users(lab: Lab, *args: str) -> dict[str, dict[str, Any]]:
    data = lab.report(*args)
    return {u["user"]: u for h in data["hosts"] for u in h["users"]}


def test_a_provision_folder_made_by_a_user_is_refused(lab: Lab) -> None:
    apply_faults(lab.fleet, {"lab-001": {"provision_folder": "user"}})
    user = lab.user("lab-001")
    got = report_users(lab, "--limit", "lab-001")[user]  # the first user's MicroSIP runs in the lab
    assert got["status"] == "failed" and "C:\\ProgramData\\provision is not safe to use" in got["reason"]
    assert lab.host("lab-001").user_microsips(user)  # left running


def test_a_cmdlet_that_fails_fails_where_the_agent_calls_it(lab: Lab) -> None:
    apply_faults(lab.fleet, {"lab-001": {"cmdlet_fails": {"Start-ScheduledTask": "Access is denied."}}})
    user = lab.user("lab-001")  # whose MicroSIP runs
    got = report_users(lab, "--limit", "lab-001")[user]
    assert got["status"] == "failed" and "its /exit could not be sent: Access is denied." in got["reason"]
    assert lab.host("lab-001").user_microsips(user) and lab.host("lab-001").tasks() == []


def test_an_ini_garbled_as_microsip_saves_it(lab: Lab) -> None:
    apply_faults(lab.fleet, {"lab-001": {"unreadable_after_exit": True}})
    user = lab.user("lab-001")
    got = report_users(lab, "--limit", "lab-001")[user]
    assert got["status"] == "failed" and got["reason"].startswith("unreadable ini") and got["restarted"]


def test_a_build_that_takes_the_ini_switch(lab: Lab) -> None:
    apply_faults(lab.fleet, {"lab-004": {"ini_switch": True}})
    inventory = lab.fleet.inventory
    text = inventory.read_text("utf-8").replace("  lab-004:\n", "  lab-004:\n    microsip: {ini_switch: true}\n")
    inventory.write_text(text, "utf-8")
    result = lab.run("smoke", "--host", "lab-004", "--format", "json", "--timeout", "20")
    data = json.loads(result.output[result.output.index("{") : result.output.rindex("}") + 1])
    assert result.exit_code == 0 and data["hosts"][0]["method"] == "switch"
