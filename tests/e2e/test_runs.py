"""Runs against a 24-host lab, on both state stores: resume finishes exactly the rest, --only
--from-run takes exactly the hosts asked for, two pushes never work on one host at once, and
`provision runs` tells what happened."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from provision.cli.main import cli
from provision.state import open_store

from conftest import FLEET_HOSTS
from labkit import Lab
from labkit import host_name as name

HOSTS = FLEET_HOSTS


def arguments(lab: Lab, state: str, *args: str) -> list[str]:
    return ["--profiles", str(lab.profiles), "--state", state, "--env-file", str(lab.fleet.env_file), *args]


def cli_run(lab: Lab, state: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, arguments(lab, state, *args), catch_exceptions=False)
    return result.exit_code, result.output


def push(lab: Lab, state: str, *args: str) -> dict[str, Any]:
    path = lab.root / "report.json"
    path.unlink(missing_ok=True)
    code, output = cli_run(lab, state, "push", "-i", str(lab.fleet.inventory), "--timeout", "20",
                           "--report", str(path), *args)  # fmt: skip
    assert path.exists(), output
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    data["exit_code"], data["output"] = code, output
    return data


def runs_json(lab: Lab, state: str, *args: str) -> dict[str, Any]:
    code, output = cli_run(lab, state, "runs", *args, "--format", "json")
    assert code == 0, output
    data: dict[str, Any] = json.loads(output)
    return data


def touched(lab: Lab) -> set[str]:
    return {host for host, count in lab.fleet.requests().items() if count}


def test_resume_finishes_exactly_the_rest_and_from_run_takes_exactly_the_failed(fleet: Lab, location: str) -> None:
    fleet.host(name(8)).faults.disk_full = True
    first = push(fleet, location, "--batch", "6", "--max-fail", "0")
    assert first["exit_code"] == 1 and first["status"] == "stopped"
    run_id = first["run_id"]
    done = {h["host"] for h in first["hosts"]}
    assert done == {name(i) for i in range(1, 13)}  # batches 1 and 2; batch 2 had the failure

    fleet.host(name(8)).faults.disk_full = False
    fleet.reset_counts()
    resumed = push(fleet, location, "--resume", run_id[:12])  # a prefix is enough
    assert resumed["exit_code"] == 0, resumed["output"]
    assert {h["host"] for h in resumed["hosts"]} == {name(i) for i in range(13, HOSTS + 1)}
    assert touched(fleet) == {name(i) for i in range(13, HOSTS + 1)}  # nothing done twice

    fleet.reset_counts()
    again = push(fleet, location, "--only", "failed", "--from-run", run_id)
    assert [h["host"] for h in again["hosts"]] == [name(8)] and again["hosts"][0]["status"] == "changed"
    assert touched(fleet) == {name(8)}

    listed = runs_json(fleet, location, "--command", "push")["runs"]
    assert [r["id"] for r in listed] == [again["run_id"], resumed["run_id"], run_id]  # newest first
    assert [r["status"] for r in listed] == ["finished", "finished", "stopped"]
    assert all(r["started"] <= r["finished"] for r in listed)  # both to the millisecond
    assert listed[1]["resume_of"] == run_id and listed[0]["options"]["from_run"] == run_id
    assert runs_json(fleet, location, "--status", "stopped")["runs"][0]["id"] == run_id

    code, shown = cli_run(fleet, location, "runs", "show", run_id, "--by-group")
    assert code == 0, shown
    assert "push, stopped" in shown and f"{name(8)}: failed" in shown and "12 host(s) not started" in shown
    detail = json.loads(cli_run(fleet, location, "runs", "show", run_id, "--format", "json")[1])
    assert detail["hosts_done"] == 12 and len(detail["not_started"]) == 12
    assert sum(sum(c.values()) for c in detail["by_group"].values()) == HOSTS


def test_a_resume_refuses_changed_inputs_and_finished_runs(fleet: Lab, location: str) -> None:
    fleet.host(name(2)).faults.disk_full = True
    stopped = push(fleet, location, "--canary", "2", "--batch", "10")
    assert stopped["status"] == "stopped"
    sales = fleet.profiles / "sales.yaml"
    sales.write_text(sales.read_text("utf-8").replace("autoAnswer: button", "autoAnswer: all"), "utf-8")
    code, output = cli_run(fleet, location, "push", "-i", str(fleet.fleet.inventory), "--resume", stopped["run_id"])
    assert code == 2 and "changed since run" in output
    code, output = cli_run(fleet, location, "push", "-i", str(fleet.fleet.inventory), "--resume", stopped["run_id"],
                           "--limit", "sales")  # fmt: skip
    assert code == 2 and "drop --limit" in output
    finished = push(fleet, location, "--limit", "support")
    code, output = cli_run(fleet, location, "push", "-i", str(fleet.fleet.inventory), "--resume", finished["run_id"])
    assert code == 2 and "nothing to resume" in output


def start_push(lab: Lab, state: str, limit: str, report: Path, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "provision", *arguments(lab, state, "push", "-i", str(lab.fleet.inventory))]
    argv += ["--limit", limit, "--workers", "1", "--report", str(report), *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def interval(host: dict[str, Any]) -> tuple[float, float]:
    start = datetime.fromisoformat(host["started"]).timestamp()
    return start, start + host["seconds"]


@pytest.mark.parametrize("wait", [False, True])
def test_two_pushes_never_work_on_one_host_at_the_same_time(fleet: Lab, location: str, wait: bool) -> None:
    overlap = {name(i) for i in range(7, 13)}
    for host in overlap:  # slow to start: A still works on them when B begins
        fleet.host(host).faults.powershell_start_ms = 2500
    extra = ["--wait-for-lease", "60"] if wait else []
    a = start_push(fleet, location, "lab-00*,lab-01[012]", fleet.root / "a.json")
    with open_store(location) as store:  # B starts once A holds its hosts
        deadline = time.monotonic() + 60
        while not overlap <= set(store.leases()) and time.monotonic() < deadline:
            time.sleep(0.05)
    b = start_push(fleet, location, "lab-00[789],lab-01*", fleet.root / "b.json", *extra)
    for child in (a, b):
        child.communicate(timeout=120)
    reports = [json.loads((fleet.root / f"{n}.json").read_text("utf-8")) for n in ("a", "b")]
    shown = [json.loads(cli_run(fleet, location, "runs", "show", r["run_id"], "--format", "json")[1]) for r in reports]
    detail = [{h["host"]: h for h in run["hosts"]} for run in shown]
    creates = {n: h.stats["action_Create"] for n, h in fleet.fleet.hosts.items()}
    for host in overlap:
        statuses = [next(h["status"] for h in r["hosts"] if h["host"] == host) for r in reports]
        if wait:
            assert statuses[1] in ("changed", "unchanged") and creates[host] == 2
            first, second = interval(detail[0][host]), interval(detail[1][host])
            assert first[1] <= second[0] + 0.05  # B only began once A was done with it
        else:
            assert statuses[0] == "changed" and statuses[1] == "skipped"
            skipped = next(h for h in reports[1]["hosts"] if h["host"] == host)
            assert skipped["kind"] == "leased" and f"(run {reports[0]['run_id']})" in skipped["reason"]
            assert creates[host] == 1  # the second push never opened a shell there
    assert {h["status"] for r in reports for h in r["hosts"] if h["host"] not in overlap} == {"changed"}


def autoanswer(lab: Lab, host: str) -> str | None:
    from provision.ini import decode_ini, read_ini

    return read_ini(decode_ini(lab.ini(host, lab.user(host)) or b"")).get("Settings", "autoAnswer")


def edit(lab: Lab, profile: str, old: str, new: str) -> None:
    path = lab.profiles / f"{profile}.yaml"
    path.write_text(path.read_text("utf-8").replace(old, new), "utf-8")


def test_rollback_by_run_puts_back_what_that_run_replaced_for_its_users_only(fleet: Lab, location: str) -> None:
    assert push(fleet, location)["exit_code"] == 0
    edit(fleet, "sales", "autoAnswer: button", "autoAnswer: all")
    second = push(fleet, location)  # changes the sales hosts (odd numbers) only
    sales = {h["host"] for h in second["hosts"] if h["status"] == "changed"}
    assert sales == {name(i) for i in range(1, HOSTS + 1, 2)}
    edit(fleet, "sales", "autoAnswer: all", "autoAnswer: header")
    assert push(fleet, location)["exit_code"] == 0  # a later push: the newest backups are not the second's
    host = fleet.host(name(1))
    folder = host.path(host.ini_path(fleet.user(name(1))) or "").parent
    assert any(second["run_id"] in p.name for p in folder.iterdir())  # the backups carry the run's id
    others = {n: fleet.ini(n, fleet.user(n)) for n in fleet.fleet.hosts if n not in sales}
    fleet.reset_counts()

    code, output = cli_run(fleet, location, "rollback", "-i", str(fleet.fleet.inventory), "--run", second["run_id"])
    assert code == 0, output
    assert {autoanswer(fleet, n) for n in sales} == {"button"}  # as before the second push, not the third
    assert touched(fleet) == sales and all(fleet.ini(n, fleet.user(n)) == b for n, b in others.items())
    assert f"{len(sales)} hosts: {len(sales)} restored" in output


def test_rollback_by_run_says_when_the_backup_is_gone(fleet: Lab, location: str) -> None:
    assert push(fleet, location, "--limit", name(1))["exit_code"] == 0
    edit(fleet, "sales", "autoAnswer: button", "autoAnswer: all")
    second = push(fleet, location, "--limit", name(1))
    edit(fleet, "sales", "autoAnswer: all", "autoAnswer: header")
    assert push(fleet, location, "--limit", name(1), "--backups", "1")["exit_code"] == 0  # keeps one: the third's
    code, output = cli_run(fleet, location, "rollback", "-i", str(fleet.fleet.inventory), "--run", second["run_id"])
    assert code == 0 and "no backup" in output and "that backup is gone" in output
    assert autoanswer(fleet, name(1)) == "header"  # nothing was put back
    code, output = cli_run(fleet, location, "rollback", "-i", str(fleet.fleet.inventory), "--run", "20990101T0000")
    assert code == 2 and "--run: no run '20990101T0000'" in output


def test_a_state_that_cannot_be_written_mid_run_stops_new_hosts_and_reports_the_done_ones(
    fleet: Lab, location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk under the state fills up during a run (the store's own tests fill a real one): the
    hosts already done are reported, no further host starts, the error names what was not written."""
    import provision.rollout as rollout
    from provision.state import StateWriteError

    class FillingUp:
        def __init__(self, store: Any) -> None:
            self.store, self.calls = store, 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.store, name)

        def __enter__(self) -> FillingUp:
            return self

        def __exit__(self, *_: object) -> None:
            self.store.close()

        def record_hosts(self, run_id: str, hosts: Any) -> None:
            self.calls += 1
            if self.calls > 1:
                raise StateWriteError("could not write 4 host outcomes to the state: the disk is full", "4 hosts")
            self.store.record_hosts(run_id, hosts)

    opened = rollout.open_store
    monkeypatch.setattr(rollout, "open_store", lambda at, **kw: FillingUp(opened(at, **kw)))
    report = push(fleet, location, "--batch", "4", "--forks", "4", "--workers", "1")
    assert report["exit_code"] == 1
    assert "could not write 4 host outcomes to the state: the disk is full" in report["output"]
    assert "Traceback" not in report["output"]
    done = [h for h in report["hosts"] if h["status"] == "changed"]
    skipped = [h for h in report["hosts"] if h["status"] == "skipped"]
    assert len(done) >= 4 and skipped and "state could not be written" in skipped[0]["reason"]
    assert report["state_error"].startswith("could not write 4 host outcomes")


def test_a_report_that_cannot_be_written_still_shows_the_run(fleet: Lab, location: str) -> None:
    code, output = cli_run(fleet, location, "push", "-i", str(fleet.fleet.inventory), "--limit", "lab-00[12]",
                           "--report", "/dev/full")  # fmt: skip
    assert code == 1 and "Traceback" not in output
    assert "2 hosts: 2 changed" in output and "cannot write /dev/full: No space left on device" in output
