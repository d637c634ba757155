"""push and rollback over a fleet: prepare offline, talk to hosts in parallel, record the outcome.

profiles + inventory -> rendered inis (all checked first) -> one HostJob per host ->
push.py per host through the fleet runner -> state recorded here, in the caller's thread -> report.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import ConfigError, Problem, ProvisionError, display_path
from provision.fleet import (
    FINISHED,
    INTERRUPTED,
    STOPPED,
    Between,
    FleetRun,
    HostOutcome,
    Out,
    Progress,
    RunHooks,
    Staging,
    order_jobs,
    plan_batches,
    run_fleet,
    shard_of,
)
from provision.jobs import HostJob, UserJob, group_by_host, host_groups, host_jobs
from provision.project import Project, prepare, select_targets
from provision.push import (
    CHANGED,
    RESTORED,
    UNCHANGED,
    HostResult,
    PushOptions,
    broken_host,
    push_host,
    rollback_host,
    summary,
)
from provision.secrets import Redactor, Secret
from provision.session import Connect
from provision.state import State
from provision.targets import LoadedInventory
from provision.transport.base import Transport


@dataclass(frozen=True)
class Credentials:
    username: str
    password: Secret = field(repr=False)


@dataclass
class RunResult:
    command: str
    check: bool
    hosts: list[HostResult]
    started: str
    seconds: float
    warnings: list[Problem]
    redactor: Redactor = field(repr=False)
    status: str = FINISHED  # finished, stopped (by the stop rule or at a pause) or interrupted
    stop_reason: str = ""
    not_started: list[str] = field(default_factory=list)
    run_id: str | None = None

    @property
    def ok(self) -> bool:
        return all(h.ok for h in self.hosts)

    @property
    def stopped(self) -> bool:
        return self.status == STOPPED

    @property
    def interrupted(self) -> bool:
        return self.status == INTERRUPTED

    @property
    def pending(self) -> bool:
        return any(u.changes for h in self.hosts for u in h.users)


ConnectFactory = Callable[[LoadedInventory], Connect]


@dataclass(frozen=True)
class RunSettings:
    """Which hosts, in what order and batches, how many at a time, and who hears about progress."""

    forks: int = 16  # hosts in flight at once, in all
    workers: int = 1  # processes sharing the hosts (the command line defaults to the cores)
    limit: str | None = None
    hosts: tuple[str, ...] = ()
    shard: tuple[int, int] | None = None  # (K, N): only the hosts of part K of N
    staging: Staging = field(default_factory=Staging)
    on_start: Callable[[int], None] = lambda _: None
    on_done: Callable[[HostOutcome], None] = lambda _: None
    on_note: Callable[[str], None] = lambda _: None
    on_redactor: Callable[[Redactor], None] = lambda _: None  # told the run's secrets, before any host
    between: Between | None = None  # asked between batches whether to go on (--pause)

    def run(
        self,
        jobs: Sequence[HostJob],
        work: Callable[[HostJob], Out],
        broken: Callable[[HostJob, str, str], Out],
        *,
        canary_groups: frozenset[str] = frozenset(),
        hooks: RunHooks | None = None,
    ) -> FleetRun[Out]:
        if self.shard is not None:
            part, parts = self.shard
            jobs = [job for job in jobs if shard_of(job.host, parts) == part]
        ordered = order_jobs(jobs, self.staging.order, self.staging.seed)
        return run_fleet(
            plan_batches(ordered, self.staging, canary_groups),
            work,
            broken,
            forks=self.forks,
            workers=self.workers,
            staging=self.staging,
            progress=Progress(self.on_start, self.on_done, self.on_note),
            hooks=hooks,
            between=self.between,
        )


EVERY_HOST = RunSettings()  # the default: all hosts, 16 at a time, one process, no progress shown


def winrm_connect(credentials: Credentials, *, verify_tls: bool = True, timeout: float = 120.0) -> ConnectFactory:
    """Connect functions that open a pywinrm transport for a host's connection settings."""

    def factory(inventory: LoadedInventory) -> Connect:
        from provision.transport.winrm import WinRMSettings, WinRMTransport

        base = inventory.path.resolve().parent
        _check_ca_bundles(inventory)

        def connect(job: HostJob) -> Transport:
            c = job.connection
            scheme = c.scheme or "https"
            ca_bundle = str(base / c.ca_bundle) if c.ca_bundle else None
            settings = WinRMSettings(
                address=c.address or job.host,
                scheme=scheme,
                port=c.port or (5986 if scheme == "https" else 5985),
                auth=c.auth or "ntlm",
                username=credentials.username,
                password=credentials.password,
                verify_tls=verify_tls,
                ca_bundle=ca_bundle,
                operation_timeout=max(1, min(20, int(timeout / 4))),
            )
            return WinRMTransport(settings)

        return connect

    return factory


def _check_ca_bundles(loaded: LoadedInventory) -> None:
    """A CA bundle that is not there is the inventory's mistake, said once, before any host."""
    model = loaded.model
    places: list[tuple[tuple[str | int, ...], str | None]] = [
        (("defaults", "connection", "ca_bundle"), model.defaults.connection.ca_bundle)
    ]
    places += [(("groups", n, "connection", "ca_bundle"), g.connection.ca_bundle) for n, g in model.groups.items()]
    places += [(("hosts", n, "connection", "ca_bundle"), h.connection.ca_bundle) for n, h in model.hosts.items()]
    base = loaded.path.resolve().parent
    problems = [
        loaded.located.problem(path, f"CA bundle {value} not found (relative to the inventory file)")
        for path, value in places
        if value and not (base / value).is_file()
    ]
    if problems:
        raise ConfigError(problems)


def push(
    project: Project,
    inventory: Path,
    connect_factory: ConnectFactory,
    options: PushOptions,
    settings: RunSettings = EVERY_HOST,
) -> RunResult:
    prepared = prepare(project, inventory, settings.limit, settings.hosts)
    settings.on_redactor(prepared.redactor)
    state = State.open(project.state_path)
    try:
        jobs = host_jobs(prepared, state)
        connect = connect_factory(prepared.inventory)
        key = state.fingerprint_key
        run = settings.run(jobs, lambda job: push_host(job, connect, options, key), broken_host)
        if not options.check:
            _record(state, jobs, run.results)
    finally:
        state.close()
    redactor = prepared.redactor
    return RunResult(
        "push",
        options.check,
        run.results,
        run.started,
        run.seconds,
        prepared.warnings,
        redactor,
        run.status,
        run.stop_reason,
        run.not_started,
    )


def _record(state: State, jobs: list[HostJob], results: list[HostResult]) -> None:
    """What was pushed, per user; an unchanged user is recorded when the record is missing or stale."""
    records = {(job.host, u.user): u.record for job in jobs for u in job.users}
    for host in results:
        for user in host.users:
            plan = user.plan
            if plan is None or user.status not in (CHANGED, UNCHANGED):
                continue
            record = records.get((user.host, user.user))
            if user.status == UNCHANGED and record is not None and record.managed_hash == plan.managed_hash:
                continue
            state.record_push(
                user.host, user.user, plan.managed_keys, plan.managed_hash, plan.fingerprints, user.status
            )


def rollback(
    project: Project,
    inventory: Path,
    connect_factory: ConnectFactory,
    options: PushOptions,
    settings: RunSettings = EVERY_HOST,
) -> RunResult:
    """Put each chosen user's newest backup back. Needs no profile rendering, nor secrets."""
    loaded, targets = select_targets(project, inventory, settings.limit, settings.hosts)
    jobs = group_by_host((UserJob(target) for target in targets), host_groups(loaded))
    connect = connect_factory(loaded)
    run = settings.run(jobs, lambda job: rollback_host(job, connect, options), broken_host)
    state = State.open(project.state_path)
    try:
        for host in run.results:
            for user in host.users:
                if user.status == RESTORED:
                    # The restored file holds an older secret, maybe: the next push writes it again.
                    state.forget(user.host, user.user)
    finally:
        state.close()
    return RunResult(
        "rollback",
        False,
        run.results,
        run.started,
        run.seconds,
        [],
        Redactor(),
        run.status,
        run.stop_reason,
        run.not_started,
    )


# The report file -------------------------------------------------------------------------


def report_data(run: RunResult) -> dict[str, Any]:
    """The report as data: the same as the table, for scripts (no secret values in it)."""
    return {
        "command": run.command,
        "check": run.check,
        "started": run.started,
        "seconds": round(run.seconds, 3),
        "ok": run.ok,
        "status": run.status,
        "stop_reason": run.stop_reason,
        "not_started": run.not_started,
        "summary": summary(run.hosts),
        "hosts": [
            {
                "host": h.host,
                "status": h.status,
                "reason": h.reason,
                "kind": h.kind,
                "seconds": round(h.seconds, 3),
                "attempts": h.attempts,
                "users": [
                    {
                        "user": u.user,
                        "status": u.status,
                        "reason": u.reason,
                        "backup": u.backup,
                        "restarted": u.restarted,
                        "changes": [
                            {"section": c.section, "key": c.key, "old": c.old, "new": c.new, "note": c.note}
                            for c in u.changes
                        ],
                        "notes": list(u.notes),
                    }
                    for u in h.users
                ],
            }
            for h in run.hosts
        ],
    }


def write_report(path: Path, run: RunResult) -> None:
    """The JSON report, redacted, written whole or not at all."""
    write_text_atomically(path, run.redactor(json.dumps(report_data(run), indent=2, ensure_ascii=False)) + "\n")


def write_text_atomically(path: Path, text: str) -> None:
    folder = path.resolve().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, path)
    except OSError as exc:
        raise ProvisionError(f"cannot write {display_path(path)}: {exc.strerror}") from None


def require_hosts(run: RunResult) -> None:
    if not run.hosts:
        raise ConfigError([Problem("inventory", None, "", "no host to act on")])
