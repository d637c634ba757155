"""The fleet runner on its own: batches, the stop rule, concurrency, workers, interruption, hooks.

The per-host function here is a plain Python function (no network): these tests are about
the runner, which the end-to-end tests then exercise through real WinRM against the lab.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from provision.fleet import (
    FINISHED,
    INTERRUPTED,
    STOPPED,
    Amount,
    HostOutcome,
    Progress,
    Staging,
    order_jobs,
    plan_batches,
    run_fleet,
    shard_of,
    with_canary_groups,
)
from provision.interrupt import current_abort
from provision.jobs import HostJob
from provision.model.inventory import Connection, Install


@dataclass
class Result:
    host: str
    status: str = "ok"
    kind: str = ""
    reason: str = ""
    seconds: float = 0.0
    pid: int = field(default_factory=os.getpid)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def jobs(count: int, groups: dict[int, tuple[str, ...]] | None = None) -> list[HostJob]:
    groups = groups or {}
    return [
        HostJob(f"ws-{i:03d}", Connection(), Install(), (), groups.get(i, ("sales" if i % 2 else "support",)))
        for i in range(count)
    ]


def broken(job: HostJob, reason: str, kind: str) -> Result:
    return Result(job.host, "failed", kind, reason)


def names(batch: Sequence[HostJob]) -> list[str]:
    return [job.host for job in batch]


# Amounts, order, batches, shards --------------------------------------------------------------


def test_amounts_are_numbers_or_percentages() -> None:
    assert Amount.parse("5") == Amount(5) and Amount.parse(" 10% ") == Amount(10, percent=True)
    assert Amount(10, percent=True).of(25) == 3  # rounds up
    assert Amount(1, percent=True).of(5) == 1 and Amount(0, percent=True).of(5, at_least_one=False) == 0
    for bad in ("", "x", "0", "-1", "101%", "5.5", "%"):
        with pytest.raises(ValueError, match=r"out of range|not a number"):
            Amount.parse(bad)


def test_batches_take_the_canary_first_then_the_sizes_with_the_last_repeating() -> None:
    fleet = jobs(20)
    batches = plan_batches(fleet, Staging(canary=Amount(2), batches=(Amount(1), Amount(25, percent=True))))
    assert [len(b) for b in batches] == [2, 1, 5, 5, 5, 2]
    assert names([j for b in batches for j in b]) == names(fleet)  # every host once, in order


def test_a_group_can_be_the_canary_and_canary_groups_go_first_when_batching() -> None:
    fleet = jobs(6, {4: ("pilot",), 5: ("pilot", "sales")})
    by_name = plan_batches(fleet, Staging(canary="pilot", batches=(Amount(2),)))
    assert names(by_name[0]) == ["ws-004", "ws-005"] and [len(b) for b in by_name] == [2, 2, 2]
    marked = with_canary_groups(Staging(batches=(Amount(3),)), fleet, frozenset({"pilot", "absent"}))
    assert marked.canary == "pilot" and names(plan_batches(fleet, marked)[0]) == ["ws-004", "ws-005"]
    unstaged = with_canary_groups(Staging(), fleet, frozenset({"pilot"}))
    assert [len(b) for b in plan_batches(fleet, unstaged)] == [6]  # no batching asked: one batch


def test_order_random_is_reproducible_from_its_seed_and_group_keeps_inventory_order_inside() -> None:
    fleet = jobs(30)
    shuffled = order_jobs(fleet, "random", seed=7)
    assert shuffled == order_jobs(fleet, "random", seed=7) != fleet
    assert sorted(names(shuffled)) == names(fleet)
    grouped = names(order_jobs(fleet, "group"))
    assert grouped == [j.host for j in fleet if j.groups[0] == "sales"] + [
        j.host for j in fleet if j.groups[0] == "support"
    ]


def test_shards_split_a_fleet_exactly_and_stably() -> None:
    hosts = [f"ws-{i:05d}" for i in range(2000)]
    parts = [[h for h in hosts if shard_of(h, 4) == k] for k in (1, 2, 3, 4)]
    assert sorted(h for part in parts for h in part) == hosts  # every host in exactly one part
    assert all(400 < len(p) < 600 for p in parts)
    assert shard_of("WS-00001", 4) == shard_of("ws-00001", 4)  # host names ignore case


# Running --------------------------------------------------------------------------------------


def test_results_come_back_in_order_and_at_most_forks_hosts_run_at_once() -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def work(job: HostJob) -> Result:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.01)
        with lock:
            running -= 1
        return Result(job.host)

    fleet = jobs(40)
    done: list[str] = []
    run = run_fleet([fleet], work, broken, forks=5, progress=Progress(on_done=lambda r: done.append(r.host)))
    assert names(fleet) == [r.host for r in run.results] and sorted(done) == names(fleet)
    assert most == 5 and run.status == FINISHED and run.not_started == []


def test_a_host_whose_work_raises_is_that_hosts_result() -> None:
    def work(job: HostJob) -> Result:
        if job.host == "ws-001":
            raise KeyError("oops")
        return Result(job.host)

    run = run_fleet([jobs(3)], work, broken, forks=2)
    assert [r.status for r in run.results] == ["ok", "failed", "ok"]
    assert run.results[1].kind == "bug" and "internal error (KeyError)" in run.results[1].reason


def failing(*bad: str, unreachable: Sequence[str] = ()) -> tuple[list[str], object]:
    started: list[str] = []

    def work(job: HostJob) -> Result:
        started.append(job.host)
        if job.host in unreachable:
            return Result(job.host, "failed", "unreachable", "cannot reach")
        return Result(job.host, "failed" if job.host in bad else "ok")

    return started, work


def test_max_fail_stops_before_the_next_batch_and_leaves_the_rest_untouched() -> None:
    started, work = failing("ws-002", "ws-003")
    staging = Staging(batches=(Amount(4),), max_fail=Amount(1))
    notes: list[str] = []
    run = run_fleet(
        plan_batches(jobs(12), staging), work, broken, forks=1, staging=staging, progress=Progress(on_note=notes.append)
    )
    assert run.status == STOPPED and "2 failure(s) in batch 1" in run.stop_reason
    assert started == ["ws-000", "ws-001", "ws-002", "ws-003"]
    assert run.not_started == [f"ws-{i:03d}" for i in range(4, 12)]
    assert any(note.startswith("stopped:") for note in notes)


def test_once_max_fail_is_passed_no_further_host_of_the_batch_starts() -> None:
    started, work = failing("ws-000", "ws-001")
    staging = Staging(max_fail=Amount(1))
    run = run_fleet([jobs(10)], work, broken, forks=1, staging=staging)
    assert run.status == STOPPED and started == ["ws-000", "ws-001"]


def test_a_failed_canary_stops_the_rollout_by_default_and_unreachable_hosts_are_not_failures() -> None:
    started, work = failing("ws-001")
    staging = Staging(canary=Amount(2), batches=(Amount(5),))
    run = run_fleet(plan_batches(jobs(10), staging), work, broken, forks=2, staging=staging)
    assert run.status == STOPPED and "canary" in run.stop_reason and sorted(started) == ["ws-000", "ws-001"]

    started, work = failing(unreachable=["ws-000", "ws-003"])
    run = run_fleet(plan_batches(jobs(10), staging), work, broken, forks=2, staging=staging)
    assert run.status == FINISHED and len(started) == 10  # laptops offline do not stop a rollout

    counted = Staging(canary=Amount(2), batches=(Amount(5),), count_unreachable=True)
    run = run_fleet(plan_batches(jobs(10), counted), work, broken, forks=2, staging=counted)
    assert run.status == STOPPED


def test_the_pause_between_batches_can_stop_the_run() -> None:
    asked: list[tuple[int, int, int]] = []

    def between(done: int, total: int, upcoming: Sequence[HostJob]) -> bool:
        asked.append((done, total, len(upcoming)))
        return done < 2

    staging = Staging(batches=(Amount(3),))
    run = run_fleet(
        plan_batches(jobs(10), staging),
        lambda job: Result(job.host),
        broken,
        forks=3,
        staging=staging,
        between=between,
    )
    assert asked == [(1, 4, 3), (2, 4, 3)]
    assert run.status == STOPPED and len(run.results) == 6 and len(run.not_started) == 4


class Hooks:
    def __init__(self, refuse: dict[str, str]) -> None:
        self.refuse = refuse
        self.lose: dict[str, str] = {}
        self.admitted: list[list[str]] = []
        self.finished_hosts: list[str] = []
        self.ticks = 0

    def admit(self, batch: Sequence[HostJob]) -> dict[str, str]:
        self.admitted.append(names(batch))
        return {h: r for h, r in self.refuse.items() if h in names(batch)}

    def finished(self, results: Sequence[HostOutcome]) -> None:
        self.finished_hosts += [r.host for r in results]

    def tick(self, in_flight: Sequence[str]) -> dict[str, str]:
        self.ticks += 1
        return {h: r for h, r in self.lose.items() if self.ticks >= 2}


def test_hooks_admit_each_batch_and_hear_of_every_finished_host() -> None:
    hooks = Hooks({"ws-004": "held by another run"})
    staging = Staging(batches=(Amount(3),))
    run = run_fleet(
        plan_batches(jobs(7), staging), lambda job: Result(job.host), broken, forks=2, staging=staging, hooks=hooks
    )
    assert hooks.admitted == [["ws-000", "ws-001", "ws-002"], ["ws-003", "ws-004", "ws-005"], ["ws-006"]]
    assert sorted(hooks.finished_hosts) == names(jobs(7)) and hooks.ticks >= 3
    (skipped,) = [r for r in run.results if r.host == "ws-004"]
    assert skipped.kind == "leased" and skipped.reason == "held by another run"
    assert run.status == FINISHED  # a host held elsewhere is not a failure


def test_a_host_whose_lease_is_lost_before_it_starts_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("provision.fleet.HOOK_EVERY", 0.0)
    hooks = Hooks({})
    hooks.lose = {"ws-005": "taken over", "ws-000": "taken over"}
    started: list[str] = []

    def work(job: HostJob) -> Result:
        started.append(job.host)
        time.sleep(0.05)
        return Result(job.host)

    run = run_fleet([jobs(6)], work, broken, forks=1, hooks=hooks)
    assert "ws-000" in started and "ws-005" not in started  # too late for ws-000: it had started
    (lost,) = [r for r in run.results if r.host == "ws-005"]
    assert lost.kind == "leased" and lost.reason == "taken over"
    assert sorted(hooks.finished_hosts) == names(jobs(6))


def test_a_worker_process_that_dies_fails_its_hosts_and_the_others_go_on() -> None:
    parent = os.getpid()

    def work(job: HostJob) -> Result:
        if job.host == "ws-003":
            assert os.getpid() != parent  # (never the test's own process)
            os._exit(9)  # as if killed (out of memory) in the middle of a host
        time.sleep(0.01)
        return Result(job.host)

    fleet = jobs(64)
    run = run_fleet([fleet], work, broken, forks=2, workers=2)
    assert [r.host for r in run.results] == names(fleet)
    (died,) = [r for r in run.results if not r.ok]
    assert died.host == "ws-003" and died.kind == "bug" and "exit code 9" in died.reason
    assert len({r.pid for r in run.results if r.ok}) == 2  # the hosts before it shared both workers


def test_workers_share_the_hosts_and_only_this_process_reports() -> None:
    def work(job: HostJob) -> Result:
        time.sleep(0.005)
        return Result(job.host)

    fleet = jobs(64)
    done: list[str] = []
    run = run_fleet([fleet], work, broken, forks=8, workers=2, progress=Progress(on_done=lambda r: done.append(r.host)))
    assert [r.host for r in run.results] == names(fleet) and sorted(done) == names(fleet)
    pids = {r.pid for r in run.results}
    assert len(pids) == 2 and os.getpid() not in pids


def test_few_hosts_run_in_this_process_whatever_the_workers() -> None:
    run = run_fleet([jobs(5)], lambda job: Result(job.host), broken, forks=4, workers=8)
    assert {r.pid for r in run.results} == {os.getpid()}


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_starts_no_new_host_and_finishes_those_in_flight(workers: int) -> None:
    started = threading.Event()  # set in this process, where the run begins

    def work(job: HostJob) -> Result:
        time.sleep(0.3)
        return Result(job.host)

    def interrupt_soon() -> None:
        started.wait(5)
        time.sleep(0.4)  # the first hosts are in flight (in the workers, with 2)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_soon).start()
    fleet = jobs(40)
    run = run_fleet(
        [fleet], work, broken, forks=4, workers=workers, progress=Progress(on_start=lambda _: started.set())
    )
    assert run.status == INTERRUPTED and "Ctrl-C" in run.stop_reason
    assert 4 <= len(run.results) <= 12 and all(r.ok for r in run.results)  # in flight: finished, not cut
    assert len(run.results) + len(run.not_started) == 40


def test_a_second_ctrl_c_stops_hosts_before_their_next_step() -> None:
    before = signal.getsignal(signal.SIGINT)  # (ignored when the tests run in a background job)
    seen_abort: list[bool] = []
    begun = threading.Event()

    def work(job: HostJob) -> Result:
        begun.set()
        abort = current_abort()
        assert abort is not None
        stopped = abort.wait(5)  # a host between two steps: it looks at the flag before the next
        seen_abort.append(stopped)
        return Result(job.host, "failed" if stopped else "ok", "aborted" if stopped else "")

    def interrupt_twice() -> None:
        begun.wait(5)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_twice).start()
    clock = time.monotonic()
    run = run_fleet([jobs(10)], work, broken, forks=2)
    assert time.monotonic() - clock < 4  # nobody waited for the 5 s
    assert run.status == INTERRUPTED and "twice" in run.stop_reason
    assert seen_abort and all(seen_abort)
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
