"""Runs: every push, rollback, health and smoke is recorded as it goes, and the commands that
write to workstations lease each host, so two runs never work on one host at the same time.

A run has an id, its options, who ran it and from where, the digest of the profiles,
templates and inventory it applied, and every host's and user's outcome. The fleet runner
calls a Recording (its RunHooks) from its own thread: before each batch (leases), as hosts
finish (outcomes recorded in bunches, leases released), and every few seconds (leases
renewed). A state that cannot be written stops new hosts from starting but never loses the
report of the hosts already done.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

from provision.errors import ConfigError, Problem
from provision.fleet import FINISHED, HostOutcome, classify
from provision.jobs import HostJob
from provision.state import (
    HostOutcome as HostRecord,
)
from provision.state import (
    LeaseHolder,
    PushRecord,
    RunInfo,
    RunStart,
    StateWriteError,
    Store,
    UserOutcome,
)

log = logging.getLogger(__name__)

Out = TypeVar("Out", bound=HostOutcome)

LEASE_MARGIN = 60.0  # seconds a lease outlives the longest a host may take
LOST = "not started: another run took over its lease while this run waited"


def who_and_where() -> tuple[str, str]:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        who = "unknown"
    return who, socket.gethostname()


def inputs_digest(files: Iterable[Path]) -> str:
    """A digest of the inputs a run applied: profile, template and inventory files' bytes."""
    digest = hashlib.sha256()
    for path in sorted({p.resolve() for p in files if p.is_file()}):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@dataclass
class Recording(Generic[Out]):
    """One run being recorded (and, for commands that write, its hosts leased)."""

    store: Store
    run_id: str
    holder: LeaseHolder
    to_record: Callable[[Out], HostRecord]
    lease_seconds: float | None = None  # None: this command does not lease hosts
    wait_for_lease: float = 0.0  # seconds to wait for a host another run holds
    pushes: Callable[[Out], list[PushRecord]] | None = None  # what was pushed, recorded as hosts finish
    forget: Callable[[Out], list[tuple[str, str]]] | None = None  # (host, user) records to drop
    error: StateWriteError | None = None  # the first write that failed
    leased: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)  # leases another run took over (this one stalled)
    renewed: float = field(default_factory=time.monotonic)  # when every lease was last renewed

    # RunHooks ---------------------------------------------------------------------------------

    def admit(self, jobs: Sequence[HostJob]) -> dict[str, str]:
        if self.error is not None:
            return {job.host: f"not started: the state could not be written ({self.error.what})" for job in jobs}
        if self.lease_seconds is None:
            return {}
        hosts = batch = [job.host for job in jobs]
        deadline = time.monotonic() + self.wait_for_lease
        refused: dict[str, str] = {}
        while True:
            try:
                granted, held = self.store.acquire(hosts, self.holder, self.lease_seconds)
            except StateWriteError as exc:
                self._failed(exc)
                return {host: f"not started: cannot lease it ({exc.what} could not be written)" for host in hosts}
            self.leased.update(granted)
            refused = {
                host: f"held by {info.who} on {info.controller} (run {info.run_id}) until {info.until}"
                for host, info in held.items()
            }
            if not refused or time.monotonic() >= deadline:
                return {**refused, **{host: LOST for host in batch if host in self.lost}}
            hosts = sorted(refused)
            time.sleep(min(2.0, self.lease_seconds / 4, max(0.0, deadline - time.monotonic())))
            self._renew()  # the hosts granted so far wait too

    def finished(self, results: Sequence[HostOutcome]) -> None:
        if self.error is None:
            done: list[Out] = list(results)  # type: ignore[arg-type]  # the runner gives back our own results
            try:
                self.store.record_hosts(self.run_id, [self.to_record(r) for r in done])
                if self.pushes is not None:
                    self.store.record_pushes([p for r in done for p in self.pushes(r)])
                if self.forget is not None:
                    self.store.forget([pair for r in done for pair in self.forget(r)])
            except StateWriteError as exc:
                self._failed(exc)
        leased = [r.host for r in results if r.host in self.leased]
        if leased and self.error is None:
            try:
                self.store.release(self.run_id, leased)
            except StateWriteError as exc:
                self._failed(exc)
        self.leased.difference_update(leased)

    def tick(self, in_flight: Sequence[str]) -> dict[str, str]:
        self._renew()
        return {host: LOST for host in self.lost}

    def _renew(self) -> None:
        """Every lease this run holds, hosts waiting for a free fork included, is renewed once a
        quarter of its time has gone; a lease found taken over is lost (its host does not start)."""
        if self.lease_seconds is None or not self.leased or self.error is not None:
            return
        if time.monotonic() - self.renewed < self.lease_seconds / 4:
            return
        try:
            held = set(self.store.renew(self.run_id, sorted(self.leased), self.lease_seconds))
        except StateWriteError as exc:
            self._failed(exc)
            return
        self.renewed = time.monotonic()
        lost = self.leased - held
        if lost:
            names = ", ".join(sorted(lost)[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
            log.error("another run took over the lease on %s: this run stalled past it", names)
            self.lost |= lost
            self.leased -= lost

    def _failed(self, exc: StateWriteError) -> None:
        if self.error is None:
            self.error = exc
            log.error("state: %s", exc.message)


@dataclass(frozen=True)
class Record(Generic[Out]):
    """What a command records of its run: its options, how a host's result is kept, the inputs'
    digest, the run it resumes, its leases (commands that write), and what the state learns
    from each host (push records to keep, or to forget)."""

    command: str
    options: dict[str, Any]
    to_record: Callable[[Out], HostRecord]
    digest: str | None = None
    resume_of: str | None = None
    lease_seconds: float | None = None  # None: the command does not lease hosts
    pushes: Callable[[Out], list[PushRecord]] | None = None
    forget: Callable[[Out], list[tuple[str, str]]] | None = None


def start_recording(
    store: Store,
    run_id: str,
    record: Record[Out],
    jobs: Sequence[HostJob],
    *,
    shard: str | None = None,
    wait_for_lease: float = 0.0,
) -> Recording[Out]:
    """Record the start of a run (a StateWriteError here stops it before any host)."""
    who, controller = who_and_where()
    command = record.command
    store.start_run(
        RunStart(
            id=run_id,
            command=command,
            options=record.options,
            who=who,
            controller=controller,
            started=datetime.now(UTC).isoformat(timespec="milliseconds"),
            digest=record.digest,
            resume_of=record.resume_of,
            hosts_total=len(jobs),
            shard=shard,
            groups={job.host: list(job.groups) for job in jobs},
        )
    )
    log.info("run %s: %s of %d host(s) by %s on %s", run_id, command, len(jobs), who, controller)
    holder = LeaseHolder(run_id, who, controller)
    return Recording(
        store, run_id, holder, record.to_record, record.lease_seconds, wait_for_lease, record.pushes, record.forget
    )


def finish_recording(recording: Recording[Any], status: str, summary: dict[str, Any]) -> None:
    """Say how the run ended (`summary`: counts for `runs`), and give back any lease still held."""
    if recording.error is not None:
        return
    try:
        if recording.lease_seconds is not None:
            recording.store.release(recording.run_id)
        run_status = "failed" if status == FINISHED and summary.get("failed") else status
        recording.store.finish_run(
            recording.run_id, run_status, datetime.now(UTC).isoformat(timespec="milliseconds"), summary
        )
    except StateWriteError as exc:
        recording._failed(exc)


def outcome_record(result: HostOutcome, users: Iterable[UserOutcome] = ()) -> HostRecord:
    """A host's result as the state keeps it (each command says what its users' outcomes are)."""
    return HostRecord(
        host=result.host,
        status=result.status,
        kind=getattr(result, "kind", ""),
        reason=result.reason,
        seconds=round(result.seconds, 3),
        attempts=getattr(result, "attempts", 1),
        started=started_iso(result.seconds),
        users=tuple(users),
    )


def started_iso(seconds: float) -> str:
    """When a host that took `seconds` and just finished started."""
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


# Choosing hosts from earlier runs ---------------------------------------------------------------

ONLY = ("failed", "unreachable", "changed")


def earlier_run(store: Store, run_id: str, *, command: str | None = None, option: str = "") -> RunInfo:
    """The run `run_id` names (of `command`, if given); `option` is the option that named it."""
    option = option or ("--from-run" if command is None else "--resume")
    run = store.get_run(run_id)
    if run is None:
        raise ConfigError([Problem(option, None, "", f"no run {run_id!r}")])
    if command is not None and run.command != command:
        raise ConfigError([Problem(option, None, "", f"run {run.id} is a {run.command}, not a {command}")])
    return run


def hosts_from_run(store: Store, run: RunInfo, only: str) -> list[str]:
    """The hosts of an earlier run that ended `only` (failed, unreachable or changed)."""
    outcomes = store.run_hosts(run.id)
    chosen = []
    for outcome in outcomes:
        kind = _class_of(outcome)
        if only == kind or (only == "changed" and outcome.status in ("changed", "restored")):
            chosen.append(outcome.host)
    return chosen


PROBLEM_STATUSES = frozenset({"failed", "busy", "drifted"})


def _class_of(outcome: HostRecord) -> str:
    return classify(outcome.kind, outcome.status not in PROBLEM_STATUSES)


def hosts_done(store: Store, run: RunInfo) -> set[str]:
    """Hosts a run got through (whatever their result): not those skipped, aborted or never started."""
    return {o.host for o in store.run_hosts(run.id) if _class_of(o) not in ("skipped", "aborted")}


# Reading runs back -------------------------------------------------------------------------------

_RELATIVE = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, *, option: str) -> datetime:
    """A date or time for --since/--until: 2026-11-29, 2026-11-29T08:00, or 12h / 7d / 2w ago."""
    raw = text.strip()
    if raw[:-1].isdigit() and raw[-1:] in _RELATIVE:
        return datetime.now(UTC) - timedelta(seconds=int(raw[:-1]) * _RELATIVE[raw[-1]])
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError(
            [Problem(option, None, "", f"{raw[:60]!r} is not a date (2026-11-29), a time or an age (12h, 7d)")]
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RunDetail:
    run: RunInfo
    hosts: list[HostRecord]

    def by_group(self) -> dict[str, dict[str, int]]:
        """Per inventory group: how many of its hosts ended in each status (and never started)."""
        groups: dict[str, dict[str, int]] = {}
        seen: set[str] = set()
        for outcome in self.hosts:
            seen.add(outcome.host)
            for group in self.run.groups.get(outcome.host) or ["(no group)"]:
                counts = groups.setdefault(group, {})
                counts[outcome.status] = counts.get(outcome.status, 0) + 1
        for host, names in self.run.groups.items():
            if host not in seen:
                for group in names or ["(no group)"]:
                    counts = groups.setdefault(group, {})
                    counts["not started"] = counts.get("not started", 0) + 1
        return dict(sorted(groups.items()))

    @property
    def not_started(self) -> list[str]:
        seen = {o.host for o in self.hosts}
        return [host for host in self.run.groups if host not in seen]


def run_detail(store: Store, run_id: str) -> RunDetail:
    run = store.get_run(run_id)
    if run is None:
        raise ConfigError([Problem("runs show", None, "", f"no run {run_id[:60]!r} in {store.location}")])
    return RunDetail(run, store.run_hosts(run.id))


def run_data(run: RunInfo) -> dict[str, Any]:
    return {
        "id": run.id,
        "command": run.command,
        "status": run.status,
        "started": run.started,
        "finished": run.finished,
        "who": run.who,
        "controller": run.controller,
        "hosts_total": run.hosts_total,
        "hosts_done": run.hosts_done,
        "counts": run.counts,
        "summary": run.summary,
        "digest": run.digest,
        "resume_of": run.resume_of,
        "shard": run.shard,
        "groups": list(run.group_names),
        "options": run.options,
    }


def detail_data(detail: RunDetail) -> dict[str, Any]:
    return {
        **run_data(detail.run),
        "by_group": detail.by_group(),
        "not_started": detail.not_started,
        "hosts": [
            {
                "host": o.host,
                "groups": detail.run.groups.get(o.host, []),
                "status": o.status,
                "kind": o.kind,
                "reason": o.reason,
                "seconds": o.seconds,
                "attempts": o.attempts,
                "started": o.started,
                "users": [
                    {
                        "user": u.user,
                        "status": u.status,
                        "reason": u.reason,
                        "backup": u.backup,
                        "restarted": u.restarted,
                        "changed_keys": u.changed_keys,
                    }
                    for u in o.users
                ],
            }
            for o in detail.hosts
        ],
    }
