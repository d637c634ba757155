"""The fleet runner: every command's hosts, `forks` at a time, each host on its own.

A command gives one function per host (`work`) and what a host becomes when that function
raises (`broken`); the runner owns the threads, the order of results, progress and timing.
Whatever goes wrong on one host stays that host's result: it never stops the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar

from provision.errors import ProvisionError
from provision.jobs import HostJob


class HostOutcome(Protocol):
    """What every per-host result offers: the report and the progress line use only this."""

    host: str
    seconds: float

    @property
    def status(self) -> str: ...

    @property
    def reason(self) -> str: ...


Out = TypeVar("Out", bound=HostOutcome)


@dataclass(frozen=True)
class Progress:
    """Who hears about the run: the total once, then every finished host."""

    on_start: Callable[[int], None] = lambda _: None
    on_done: Callable[[HostOutcome], None] = lambda _: None


@dataclass
class FleetRun(Generic[Out]):
    results: list[Out]  # in the jobs' order
    started: str  # ISO time, UTC
    seconds: float


def run_fleet(
    jobs: Sequence[HostJob],
    work: Callable[[HostJob], Out],
    broken: Callable[[HostJob, str, str], Out],
    *,
    forks: int,
    progress: Progress = Progress(),
) -> FleetRun[Out]:
    """Run `work` for every job, at most `forks` at a time; results in the jobs' order.

    `broken(job, reason, kind)` makes the result of a host whose `work` raised."""
    started, clock = now_iso(), time.monotonic()
    progress.on_start(len(jobs))
    results: dict[str, Out] = {}
    pending = list(reversed(jobs))  # popped from the end: the jobs' order
    in_flight: set[Future[Out]] = set()
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(jobs) or 1)), thread_name_prefix="host") as pool:
        while pending or in_flight:
            while pending and len(in_flight) < forks:
                in_flight.add(pool.submit(_isolated, work, broken, pending.pop()))
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                results[result.host] = result
                progress.on_done(result)
    return FleetRun([results[job.host] for job in jobs], started, time.monotonic() - clock)


def _isolated(work: Callable[[HostJob], Out], broken: Callable[[HostJob, str, str], Out], job: HostJob) -> Out:
    started = time.monotonic()
    try:
        result = work(job)
    except ProvisionError as exc:
        result = broken(job, exc.message, "error")
    except Exception as exc:  # noqa: BLE001 - a bug on one host must not stop the fleet
        result = broken(job, f"internal error ({type(exc).__name__}); please report it", "bug")
    result.seconds = time.monotonic() - started
    return result


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
