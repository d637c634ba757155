"""The fleet runner: every command's hosts, in batches, `forks` at a time, on every core.

A command gives one function per host (`work`) and what a host becomes when that function
raises (`broken`); the runner owns the rest:

- order and batches: a canary batch first, then batches of N or P% (the last size repeats,
  as Ansible's `serial`), with a stop rule per batch and overall (`--max-fail`);
- concurrency: threads in this process, or worker processes (forked) that each run their
  share of threads, results flowing back to this process, which alone reports and records;
- interruption (provision.interrupt): a first Ctrl-C (or SIGTERM) starts no new host and
  lets those in flight finish; a second one lets no host begin a new step;
- progress, timing, and the hooks a run is recorded and leased through.

Whatever goes wrong on one host stays that host's result: it never stops the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_connections
from typing import Any, Generic, Literal, Protocol, TypeVar

from provision.errors import ProvisionError
from provision.interrupt import Interrupt, aborting_on, handling_interrupts
from provision.jobs import HostJob

log = logging.getLogger(__name__)

# How a host ended, as far as the runner is concerned.
DONE, FAILED_CLASS, UNREACHABLE_CLASS, SKIPPED_CLASS, ABORTED_CLASS = (
    "done",
    "failed",
    "unreachable",
    "skipped",
    "aborted",
)
UNREACHABLE_KINDS = frozenset({"unreachable", "refused"})
SKIPPED_KIND = "leased"  # another run holds the host
ABORTED_KIND = "aborted"  # stopped by a second Ctrl-C before its next step
# The status of a host not worked on, by its kind (push, health and smoke word it alike).
HOST_KIND_STATUS = {
    **dict.fromkeys(UNREACHABLE_KINDS, UNREACHABLE_CLASS),
    SKIPPED_KIND: SKIPPED_CLASS,
    ABORTED_KIND: ABORTED_CLASS,
}

# How a run ended.
FINISHED, STOPPED, INTERRUPTED = "finished", "stopped", "interrupted"


class HostOutcome(Protocol):
    """What every per-host result offers: the report, progress and the stop rule use only this."""

    host: str
    seconds: float

    @property
    def status(self) -> str: ...

    @property
    def reason(self) -> str: ...

    @property
    def ok(self) -> bool: ...


Out = TypeVar("Out", bound=HostOutcome)


def outcome_class(result: HostOutcome) -> str:
    """done, failed, unreachable, skipped or aborted: what counts toward --max-fail and resume."""
    return classify(getattr(result, "kind", ""), result.ok)


def classify(kind: str, ok: bool) -> str:
    if kind == SKIPPED_KIND:
        return SKIPPED_CLASS
    if kind == ABORTED_KIND:
        return ABORTED_CLASS
    if kind in UNREACHABLE_KINDS:
        return UNREACHABLE_CLASS
    return DONE if ok else FAILED_CLASS


# Staging --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Amount:
    """A number of hosts, or a percentage of them: `5` or `10%`."""

    value: int
    percent: bool = False

    @classmethod
    def parse(cls, text: str, *, minimum: int = 1) -> Amount:
        """`minimum`: the smallest count allowed (0 for --max-fail; a batch needs at least 1)."""
        raw = text.strip()
        percent = raw.endswith("%")
        number = raw.removesuffix("%").strip()
        if not number.isdigit():
            raise ValueError(f"{text!r} is not a number of hosts or a percentage (5, 10%)")
        value = int(number)
        if value < (0 if percent else minimum) or (percent and value > 100):
            raise ValueError(f"{text!r} is out of range")
        return cls(value, percent)

    def of(self, total: int, *, at_least_one: bool = True) -> int:
        """How many hosts this amounts to out of `total` (a percentage rounds up)."""
        if not self.percent:
            return self.value
        count = math.ceil(total * self.value / 100)
        return max(1, count) if at_least_one else count

    def __str__(self) -> str:
        return f"{self.value}%" if self.percent else str(self.value)


Order = Literal["inventory", "random", "group"]


@dataclass(frozen=True)
class Staging:
    """How the hosts are taken: canary, batch sizes, stop rule, pauses, order."""

    canary: Amount | str | None = None  # N, P% of the hosts, or group names (comma-separated)
    batches: tuple[Amount, ...] = ()  # sizes in order; the last repeats
    max_fail: Amount | None = None  # more failures than this in a batch or overall: stop
    count_unreachable: bool = False  # unreachable hosts count as failures toward max_fail
    order: Order = "inventory"
    seed: int = 0  # for random order: recorded with the run so a resume keeps it
    pause_seconds: float = 0.0  # wait between batches (Ctrl-C during the wait stops the run)

    @property
    def staged(self) -> bool:
        return self.canary is not None or bool(self.batches) or self.max_fail is not None


def order_jobs(jobs: Sequence[HostJob], order: Order, seed: int = 0) -> list[HostJob]:
    if order == "random":
        shuffled = list(jobs)
        random.Random(seed).shuffle(shuffled)  # noqa: S311 - an order, not a secret
        return shuffled
    if order == "group":
        first_group = {job.host: (job.groups[0] if job.groups else "") for job in jobs}
        return sorted(jobs, key=lambda job: first_group[job.host])  # stable: inventory order within a group
    return list(jobs)


def with_canary_groups(staging: Staging, jobs: Sequence[HostJob], canary_groups: frozenset[str]) -> Staging:
    """Without --canary, the hosts of groups marked `canary: true` are the canary of a batched rollout."""
    if staging.canary is not None or not staging.batches:
        return staging
    present = sorted({g for job in jobs for g in job.groups} & canary_groups)
    return replace(staging, canary=",".join(present)) if present else staging


def plan_batches(jobs: Sequence[HostJob], staging: Staging) -> list[list[HostJob]]:
    """Split the (ordered) jobs into batches: the canary first, then the batch sizes.

    The canary is N or P% of the first hosts, or the hosts of the named groups."""
    remaining = list(jobs)
    batches: list[list[HostJob]] = []
    canary = staging.canary
    if isinstance(canary, str):
        groups = {g.strip() for g in canary.split(",")}
        first = [job for job in remaining if groups & set(job.groups)]
        if first:
            batches.append(first)
            taken = {job.host for job in first}
            remaining = [job for job in remaining if job.host not in taken]
    elif isinstance(canary, Amount):
        count = min(len(remaining), canary.of(len(jobs)))
        if count:
            batches.append(remaining[:count])
            remaining = remaining[count:]
    sizes = list(staging.batches) or [Amount(100, percent=True)]
    index = 0
    while remaining:
        size = sizes[min(index, len(sizes) - 1)].of(len(jobs))
        batches.append(remaining[:size])
        remaining = remaining[size:]
        index += 1
    return batches


def shard_of(host: str, shards: int) -> int:
    """The shard (1..N) a host belongs to: a stable hash of its name, the same on every controller."""
    digest = hashlib.sha256(host.casefold().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards + 1


# Running --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Who hears about the run. All calls come from the thread that called run_fleet."""

    on_start: Callable[[int], None] = lambda _: None  # the number of hosts, once
    on_done: Callable[[HostOutcome], None] = lambda _: None  # every finished host
    on_note: Callable[[str], None] = lambda _: None  # batches, stops, interruptions


class RunHooks(Protocol):
    """How a run is recorded and leased; called from the thread that called run_fleet."""

    def admit(self, jobs: Sequence[HostJob]) -> dict[str, str]:
        """Before a batch starts: hosts that may not start now, with the reason (held by another run)."""
        ...

    def finished(self, results: Sequence[HostOutcome]) -> None:
        """Hosts that finished (recorded, their leases released); called in bunches."""
        ...

    def tick(self, in_flight: Sequence[str]) -> dict[str, str]:
        """Every few seconds while hosts are in flight (leases renewed): hosts of this batch that
        may no longer start, with the reason (their lease was lost)."""
        ...


@dataclass
class FleetRun(Generic[Out]):
    results: list[Out]  # hosts that ran (or were skipped), in the jobs' order
    started: str  # ISO time, UTC
    seconds: float
    status: str = FINISHED  # finished, stopped (the stop rule) or interrupted (Ctrl-C)
    stop_reason: str = ""
    not_started: list[str] = field(default_factory=list)  # hosts never started, in order
    batches: int = 1


Between = Callable[[int, int, Sequence[HostJob]], bool]  # (batches done, batches in all, next batch) -> go on?


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


MIN_HOSTS_PER_WORKER = 16  # a worker process is worth its start only with this many hosts to do


def run_fleet(
    batches: Sequence[Sequence[HostJob]],
    work: Callable[[HostJob], Out],
    broken: Callable[[HostJob, str, str], Out],
    *,
    forks: int,
    workers: int = 1,
    staging: Staging = Staging(),
    progress: Progress = Progress(),
    hooks: RunHooks | None = None,
    between: Between | None = None,
) -> FleetRun[Out]:
    """Run `work` for every job, batch after batch (`[jobs]` is one batch), at most `forks`
    hosts at a time in all.

    `broken(job, reason, kind)` makes the result of a host whose `work` raised, or that
    could not start (kind 'leased'). With `workers` > 1 (and enough hosts) the hosts are
    shared among forked worker processes; results come back here, in this thread."""
    batches = [list(batch) for batch in batches if batch]
    all_jobs = [job for batch in batches for job in batch]
    started, clock = now_iso(), time.monotonic()
    progress.on_start(len(all_jobs))
    run: FleetRun[Out] = FleetRun([], started, 0.0, batches=len(batches))
    results: dict[str, Out] = {}
    workers = max(1, min(workers, len(all_jobs) // MIN_HOSTS_PER_WORKER, forks))
    rule = _StopRule(staging, len(all_jobs))
    with (
        handling_interrupts(progress.on_note) as interrupt,
        _executor(all_jobs, work, broken, forks, workers, interrupt.abort) as executor,
    ):
        for number, batch in enumerate(batches, start=1):
            if interrupt.stopping:
                break
            if len(batches) > 1:
                progress.on_note(f"batch {number} of {len(batches)}: {len(batch)} host(s)")
            log.info("batch %d of %d: %s", number, len(batches), ", ".join(job.host for job in batch))
            rule.new_batch(number, len(batch))
            for result in _run_batch(batch, executor, broken, interrupt, progress, hooks, rule):
                results[result.host] = result
            if interrupt.stopping:
                break
            if rule.reason:
                run.status, run.stop_reason = STOPPED, rule.reason
                progress.on_note(f"stopped: {rule.reason}")
                log.warning("stopped: %s", rule.reason)
                break
            if number < len(batches):
                if staging.pause_seconds:
                    progress.on_note(f"waiting {staging.pause_seconds:g} s before batch {number + 1}")
                    _sleep_unless(interrupt, staging.pause_seconds)
                if interrupt.stopping:
                    break
                if between is not None and not between(number, len(batches), batches[number]):
                    run.status, run.stop_reason = STOPPED, f"stopped at the pause after batch {number}"
                    break
        if interrupt.stopping:
            run.status, run.stop_reason = INTERRUPTED, interrupt.reason
    run.results = [results[job.host] for job in all_jobs if job.host in results]
    run.not_started = [job.host for job in all_jobs if job.host not in results]
    run.seconds = time.monotonic() - clock
    return run


class _StopRule:
    """--max-fail per batch and overall, checked after every host, so that once it is passed
    no further host starts. Without --max-fail a staged rollout stops on any failure in the
    canary batch, or when every host of a batch failed."""

    def __init__(self, staging: Staging, total: int) -> None:
        self.staging, self.total = staging, total
        self.overall = 0
        self.in_batch = 0
        self.batch_size = 0
        self.number = 0
        self.reason = ""

    def new_batch(self, number: int, size: int) -> None:
        self.number, self.batch_size, self.in_batch = number, size, 0

    def count(self, result: HostOutcome) -> None:
        kind = outcome_class(result)
        if kind == FAILED_CLASS or (kind == UNREACHABLE_CLASS and self.staging.count_unreachable):
            self.in_batch += 1
            self.overall += 1
        if not self.reason:
            self.reason = self._check(final=False)

    def finish_batch(self, ran: int) -> None:
        if not self.reason:
            self.reason = self._check(final=True, ran=ran)

    def _check(self, *, final: bool, ran: int = 0) -> str:
        staging = self.staging
        limit = staging.max_fail
        if limit is None:
            if not staging.staged:
                return ""
            if self.number == 1 and staging.canary is not None and self.in_batch:
                return f"{self.in_batch} failure(s) in the canary batch"
            if final and ran and self.in_batch == ran:
                return f"every host of batch {self.number} failed"
            return ""
        if self.in_batch > limit.of(self.batch_size, at_least_one=False):
            return (
                f"{self.in_batch} failure(s) in batch {self.number} of {self.batch_size} host(s), "
                f"more than --max-fail {limit}"
            )
        if self.overall > limit.of(self.total, at_least_one=False):
            return f"{self.overall} failure(s) in all, more than --max-fail {limit} of {self.total} host(s)"
        return ""


TICK = 0.2  # seconds between looks at signals and hooks while waiting


def _sleep_unless(interrupt: Interrupt, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not interrupt.stopping and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(TICK, left))


HOOK_EVERY = 5.0  # seconds between hook ticks (lease renewal, recording)


def _run_batch(
    batch: Sequence[HostJob],
    executor: _Executor[Out],
    broken: Callable[[HostJob, str, str], Out],
    interrupt: Interrupt,
    progress: Progress,
    hooks: RunHooks | None,
    rule: _StopRule,
) -> list[Out]:
    """The hosts of one batch; no new host starts once interrupted or once the stop rule says so."""
    done: list[Out] = []
    unrecorded: list[Out] = []  # finished, not yet handed to hooks.finished

    def finished(result: Out) -> None:
        done.append(result)
        unrecorded.append(result)
        progress.on_done(result)

    refused = hooks.admit(batch) if hooks is not None else {}
    for job in batch:
        if job.host in refused:
            finished(broken(job, refused[job.host], SKIPPED_KIND))
    pending = [job for job in reversed(batch) if job.host not in refused]
    in_flight: set[str] = set()
    last_hook = time.monotonic()
    while pending or in_flight:
        while pending and not interrupt.stopping and not rule.reason and executor.free() > 0:
            job = pending.pop()
            executor.submit(job)
            in_flight.add(job.host)
        if not in_flight:
            break  # interrupted: nothing more starts
        for result in executor.poll(TICK):
            in_flight.discard(result.host)
            rule.count(result)
            log.info(
                "%s: %s%s (%.1f s)",
                result.host,
                result.status,
                f": {result.reason}" if result.reason else "",
                result.seconds,
            )
            finished(result)
        if hooks is not None and (time.monotonic() - last_hook >= HOOK_EVERY or not in_flight):
            if unrecorded:
                hooks.finished(list(unrecorded))
                unrecorded.clear()
            lost = hooks.tick(sorted(in_flight))
            for job in [job for job in pending if job.host in lost]:
                pending.remove(job)
                finished(broken(job, lost[job.host], SKIPPED_KIND))
            last_hook = time.monotonic()
    if hooks is not None and unrecorded:
        hooks.finished(unrecorded)
    rule.finish_batch(sum(1 for r in done if outcome_class(r) != SKIPPED_CLASS))
    return done


# Executors ------------------------------------------------------------------------------------


class _Executor(Protocol[Out]):
    def free(self) -> int: ...

    def submit(self, job: HostJob) -> None: ...

    def poll(self, timeout: float) -> list[Out]: ...


@contextlib.contextmanager
def _executor(
    jobs: Sequence[HostJob],
    work: Callable[[HostJob], Out],
    broken: Callable[[HostJob, str, str], Out],
    forks: int,
    workers: int,
    abort: threading.Event,
) -> Iterator[_Executor[Out]]:
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        with _Threads(work, broken, forks, abort) as threads:
            yield threads
        return
    processes = _Processes(jobs, work, broken, forks, workers, abort)
    try:
        yield processes
    finally:
        processes.close()


class _Threads(Generic[Out]):
    """Hosts on threads of this process."""

    def __init__(
        self, work: Callable[[HostJob], Out], broken: Callable[[HostJob, str, str], Out], forks: int, abort: Any
    ) -> None:
        self._work, self._broken, self._forks, self._abort = work, broken, max(1, forks), abort
        self._pool = ThreadPoolExecutor(max_workers=self._forks, thread_name_prefix="host")
        self._futures: set[Future[Out]] = set()

    def __enter__(self) -> _Threads[Out]:
        return self

    def __exit__(self, *_: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def free(self) -> int:
        return self._forks - len(self._futures)

    def submit(self, job: HostJob) -> None:
        self._futures.add(self._pool.submit(_isolated, self._work, self._broken, job, self._abort))

    def poll(self, timeout: float) -> list[Out]:
        if not self._futures:
            return []
        done, self._futures = wait(self._futures, timeout=timeout, return_when=FIRST_COMPLETED)
        return [future.result() for future in done]


def _isolated(
    work: Callable[[HostJob], Out], broken: Callable[[HostJob, str, str], Out], job: HostJob, abort: threading.Event
) -> Out:
    started = time.monotonic()
    try:
        with aborting_on(abort):
            result = work(job)
    except ProvisionError as exc:
        result = broken(job, exc.message, "error")
    except Exception as exc:  # noqa: BLE001 - a bug on one host must not stop the fleet
        result = broken(job, f"internal error ({type(exc).__name__}); please report it", "bug")
    result.seconds = time.monotonic() - started
    return result


class _Processes(Generic[Out]):
    """Hosts shared among forked worker processes, each with its own threads.

    Forked, so each worker has the jobs (secrets included) without them being sent anywhere;
    a worker is told which job to do by its index and sends back the result. Only this
    process reports and records."""

    def __init__(
        self,
        jobs: Sequence[HostJob],
        work: Callable[[HostJob], Out],
        broken: Callable[[HostJob, str, str], Out],
        forks: int,
        workers: int,
        abort: threading.Event,
    ) -> None:
        self._jobs, self._broken = jobs, broken
        self._index = {job.host: i for i, job in enumerate(jobs)}
        self._abort = abort
        self._aborted_sent = False
        per_worker = [forks // workers + (1 if i < forks % workers else 0) for i in range(workers)]
        context = multiprocessing.get_context("fork")
        self._workers: list[tuple[Connection, Any, int]] = []
        self._on: dict[int, set[int]] = {}  # worker -> indices of the jobs it is doing
        self._dead: set[int] = set()
        for capacity in per_worker:
            ours, theirs = context.Pipe(duplex=True)
            process = context.Process(
                target=_worker_main, args=(theirs, jobs, work, broken, capacity), daemon=True, name="provision-worker"
            )
            process.start()
            theirs.close()
            self._on[len(self._workers)] = set()
            self._workers.append((ours, process, capacity))

    def _live(self) -> list[int]:
        return [i for i in range(len(self._workers)) if i not in self._dead]

    def free(self) -> int:
        return sum(self._workers[i][2] - len(self._on[i]) for i in self._live())

    def submit(self, job: HostJob) -> None:
        i = max(self._live(), key=lambda w: self._workers[w][2] - len(self._on[w]))
        index = self._index[job.host]
        self._workers[i][0].send(("job", index))
        self._on[i].add(index)

    def poll(self, timeout: float) -> list[Out]:
        if self._abort.is_set() and not self._aborted_sent:
            for i in self._live():
                with contextlib.suppress(OSError):
                    self._workers[i][0].send(("abort", None))
            self._aborted_sent = True
        ready = wait_connections([self._workers[i][0] for i in self._live()], timeout=timeout)
        results: list[Out] = []
        for i in self._live():
            connection = self._workers[i][0]
            if connection not in ready:
                continue
            try:
                kind, payload = connection.recv()
            except (EOFError, OSError):
                results += self._died(i)
                continue
            if kind == "result":
                self._on[i].discard(self._index[payload.host])
                results.append(payload)
        if not self._live():
            raise ProvisionError("every worker process ended unexpectedly; please report it")
        return results

    def _died(self, i: int) -> list[Out]:
        """A worker that ended mid-run (killed, out of memory): its hosts fail, the others go on."""
        connection, process, _ = self._workers[i]
        self._dead.add(i)
        connection.close()
        process.join(timeout=5)
        reason = f"the worker process doing it ended unexpectedly (exit code {process.exitcode}); please report it"
        log.error("worker process %s ended unexpectedly (exit code %s)", process.pid, process.exitcode)
        lost = [self._broken(self._jobs[index], reason, "bug") for index in sorted(self._on[i])]
        self._on[i].clear()
        return lost

    def close(self) -> None:
        for i in self._live():
            connection, process, _ = self._workers[i]
            with contextlib.suppress(OSError):
                connection.send(("close", None))
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
            connection.close()


def _worker_main(
    connection: Connection,
    jobs: Sequence[HostJob],
    work: Callable[[HostJob], Out],
    broken: Callable[[HostJob, str, str], Out],
    capacity: int,
) -> None:
    """A worker process: jobs by index in, results out, until told to close."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    abort = threading.Event()
    code = 0
    try:
        with _Threads(work, broken, capacity, abort) as threads:
            closing = False
            while True:
                while connection.poll(0 if threads.free() < capacity else TICK):
                    kind, payload = connection.recv()
                    if kind == "job":
                        threads.submit(jobs[payload])
                    elif kind == "abort":
                        abort.set()
                    elif kind == "close":
                        closing = True
                        break
                for result in threads.poll(TICK):
                    connection.send(("result", result))
                if closing and threads.free() == capacity:
                    break
    except (EOFError, OSError, KeyboardInterrupt):
        code = 1
    finally:
        connection.close()
        os._exit(code)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
