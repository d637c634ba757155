"""Staged rollouts against a lab of 24 workstations with dead and failing ones: canary, batches,
the stop rule, worker processes, and Ctrl-C, through the real command line and real WinRM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from provision.state import open_store

from conftest import FLEET_HOSTS
from labkit import Lab
from labkit import host_name as name

HOSTS = FLEET_HOSTS


def push(lab: Lab, *args: str, state: str | None = None) -> dict[str, Any]:
    """push with a report; the report, the exit code and what was printed."""
    path = lab.root / "report.json"
    path.unlink(missing_ok=True)
    where = ["--state", state] if state else []
    result = lab.run(*where, "push", "--timeout", "20", "--report", str(path), *args)
    data: dict[str, Any] = json.loads(path.read_text("utf-8")) if path.exists() else {}
    data["exit_code"], data["output"] = result.exit_code, result.output
    return data


def touched(lab: Lab) -> set[str]:
    """Hosts that were sent at least one request."""
    return {host for host, count in lab.fleet.requests().items() if count}


def test_canary_first_then_batches(fleet: Lab) -> None:
    report = push(fleet, "--canary", "2", "--batch", "25%,50%", "--order", "inventory")
    assert report["exit_code"] == 0, report["output"]
    assert "batch 1 of 4: 2 host(s)" in report["output"]
    assert "batch 2 of 4: 6 host(s)" in report["output"] and "batch 4 of 4: 4 host(s)" in report["output"]
    assert {h["status"] for h in report["hosts"]} == {"changed"} and len(report["hosts"]) == HOSTS


def test_a_group_marked_canary_goes_first_when_batching(fleet: Lab) -> None:
    inventory = fleet.fleet.inventory
    text = inventory.read_text("utf-8")
    inventory.write_text(text.replace("  support:\n", "  support:\n    canary: true\n", 1), "utf-8")
    fleet.host(name(4)).faults.disk_full = True  # a support host: the canary fails
    report = push(fleet, "--batch", "5")
    assert "batch 1 of 4: 12 host(s)" in report["output"]  # the 12 support hosts, then 5, 5, 2
    assert report["status"] == "stopped" and "canary" in report["stop_reason"]
    assert touched(fleet) == {name(i) for i in range(2, HOSTS + 1, 2)}


def test_a_failing_canary_stops_the_rollout_and_leaves_the_rest_untouched(fleet: Lab) -> None:
    fleet.host(name(2)).faults.disk_full = True
    before = {n: fleet.ini(n, fleet.user(n)) for n in fleet.fleet.hosts}
    report = push(fleet, "--canary", "2", "--batch", "10")
    assert report["exit_code"] == 1
    assert touched(fleet) == {name(1), name(2)}
    assert report["status"] == "stopped" and "canary" in report["stop_reason"]
    assert report["not_started"] == [name(i) for i in range(3, HOSTS + 1)]
    for host in (name(i) for i in range(3, HOSTS + 1)):
        assert fleet.ini(host, fleet.user(host)) == before[host]
    assert "stopped: 1 failure(s) in the canary batch" in report["output"]


def test_max_fail_stops_before_the_next_batch_and_unreachable_hosts_do_not_count(fleet: Lab, location: str) -> None:
    fleet.fleet.refuse(name(3))  # batch 1: a laptop that is off
    fleet.fleet.refuse(name(5))
    fleet.host(name(8)).faults.disk_full = True  # batch 2: two real failures
    fleet.host(name(9)).faults.disk_full = True
    report = push(fleet, "--batch", "6", "--max-fail", "1", state=location)
    assert report["exit_code"] == 1
    statuses = {h["host"]: h["status"] for h in report["hosts"]}
    assert set(statuses) <= {name(i) for i in range(1, 13)}  # batches 3 and 4 never started
    assert statuses[name(8)] == statuses[name(9)] == "failed"
    assert "2 failure(s) in batch 2" in report["stop_reason"]
    assert touched(fleet) <= {name(i) for i in range(1, 13)}
    assert set(report["not_started"]) >= {name(i) for i in range(13, HOSTS + 1)}
    with open_store(location) as store:
        run = store.get_run(report["run_id"])
        assert run is not None and run.status == "stopped"
        recorded = {o.host: o for o in store.run_hosts(run.id)}
    assert set(recorded) == set(statuses) and recorded[name(3)].status == "unreachable"


def test_workers_push_the_fleet_and_one_process_reports(fleet: Lab) -> None:
    report = push(fleet, "--workers", "2", "--forks", "8")
    assert report["exit_code"] == 0, report["output"]
    assert {h["status"] for h in report["hosts"]} == {"changed"} and len(report["hosts"]) == HOSTS
    again = push(fleet, "--workers", "2", "--forks", "8")
    assert {h["status"] for h in again["hosts"]} == {"unchanged"}  # the state was recorded once, here


# Ctrl-C, from outside: the command runs in its own process, the lab in this one -------------


def running_microsips(lab: Lab) -> dict[str, bool]:
    return {n: bool(h.user_microsips(lab.user(n))) for n, h in lab.fleet.hosts.items()}


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_finishes_or_stops_hosts_in_flight_records_and_leaves_no_microsip_closed(
    fleet: Lab, presses: int, location: str
) -> None:
    for host in fleet.fleet.hosts.values():
        host.faults.latency_ms = 150  # each host takes about a second: some are in flight when Ctrl-C comes
    before = running_microsips(fleet)
    report_path = fleet.root / "report.json"
    command = [
        sys.executable,
        "-m",
        "provision",
        "--profiles",
        str(fleet.profiles),
        "--state",
        location,
        "--env-file",
        str(fleet.fleet.env_file),
        "push",
        "-i",
        str(fleet.fleet.inventory),
        "--forks",
        "4",
        "--workers",
        "1",
        "--report",
        str(report_path),
    ]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    deadline = time.monotonic() + 60
    for line in child.stderr:  # a line per finished host (no terminal)
        if line.startswith("[2/") or time.monotonic() > deadline:
            break
    for _ in range(presses):
        os.kill(child.pid, signal.SIGINT)
        time.sleep(0.3)  # two presses, as a person makes them (signals too close together are merged)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, out + err
    report = json.loads(report_path.read_text("utf-8"))
    assert report["status"] == "interrupted"
    assert ("twice" in report["stop_reason"]) == (presses == 2)
    done = {h["host"] for h in report["hosts"]}
    assert 2 <= len(done) < HOSTS and len(done) + len(report["not_started"]) == HOSTS
    assert "interrupted" in out.splitlines()[-1]
    with open_store(location) as store:  # the run and every host it finished are recorded
        run = store.get_run(report["run_id"])
        assert run is not None and run.status == "interrupted"
        assert {o.host for o in store.run_hosts(run.id)} == done
        assert store.leases() == {}  # nothing left leased
    # Every MicroSIP that ran before runs after: a host in flight was finished, or stopped only
    # at a point where nothing was closed.
    after = running_microsips(fleet)
    assert {n for n, running in before.items() if running} <= {n for n, running in after.items() if running}
