"""push and rollback over a fleet: prepare offline, talk to hosts in parallel, record the outcome.

profiles + inventory -> rendered inis (all checked first) -> one HostJob per host ->
push.py per host, `forks` at a time -> state recorded here, in the caller's thread -> report.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provision.errors import ConfigError, Problem, ProvisionError, display_path
from provision.project import Prepared, Project, prepare, select_targets
from provision.push import (
    CHANGED,
    RESTORED,
    UNCHANGED,
    Connect,
    HostJob,
    HostOutcome,
    HostResult,
    Out,
    PushOptions,
    UserJob,
    broken_host,
    push_host,
    rollback_host,
    run_hosts,
    summary,
)
from provision.secrets import Redactor, Secret
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

    @property
    def ok(self) -> bool:
        return all(h.ok for h in self.hosts)

    @property
    def pending(self) -> bool:
        return any(u.changes for h in self.hosts for u in h.users)


ConnectFactory = Callable[[LoadedInventory], Connect]


@dataclass(frozen=True)
class RunSettings:
    """Which hosts, how many at a time, and who hears about progress."""

    forks: int = 16
    limit: str | None = None
    hosts: tuple[str, ...] = ()
    on_start: Callable[[int], None] = lambda _: None
    on_done: Callable[[HostOutcome], None] = lambda _: None


EVERY_HOST = RunSettings()  # the default: all hosts, 16 at a time, no progress shown


def winrm_connect(
    credentials: Credentials, *, verify_tls: bool = True, timeout: float = 120.0, transport: str = "auto"
) -> ConnectFactory:
    """Connect functions that open a pywinrm transport for a host's connection settings."""

    def factory(inventory: LoadedInventory) -> Connect:
        from provision.transport import open_transport
        from provision.transport.winrm import WinRMSettings

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
            return open_transport(settings, transport, deadline=time.monotonic() + timeout)

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


def group_by_host(users: Iterable[UserJob]) -> list[HostJob]:
    """One job per host, its users in inventory order, with the host's connection settings."""
    by_host: dict[str, list[UserJob]] = {}
    for user in users:
        by_host.setdefault(user.target.host, []).append(user)
    return [HostJob(host, us[0].target.connection, us[0].target.install, tuple(us)) for host, us in by_host.items()]


def host_jobs(prepared: Prepared, state: State | None) -> list[HostJob]:
    return group_by_host(
        UserJob(
            r.target,
            r,
            prepared.secrets[r.target.id],
            state.last_push(r.target.host, r.target.user) if state else None,
        )
        for r in prepared.rendered
    )


def run_fleet(
    jobs: Sequence[HostJob],
    work: Callable[[HostJob], Out],
    settings: RunSettings,
    broken: Callable[[HostJob, str, str], Out],
) -> tuple[list[Out], str, float]:
    """Every job, `settings.forks` at a time: results, the start time and how long it took."""
    started, clock = now_iso(), time.monotonic()
    settings.on_start(len(jobs))
    results = run_hosts(jobs, work, settings.forks, settings.on_done, broken)
    return results, started, time.monotonic() - clock


def push(
    project: Project,
    inventory: Path,
    connect_factory: ConnectFactory,
    options: PushOptions,
    settings: RunSettings = EVERY_HOST,
) -> RunResult:
    prepared = prepare(project, inventory, settings.limit, settings.hosts)
    state = State.open(project.state_path)
    try:
        jobs = host_jobs(prepared, state)
        connect = connect_factory(prepared.inventory)
        key = state.fingerprint_key
        results, started, seconds = run_fleet(
            jobs, lambda job: push_host(job, connect, options, key), settings, broken_host
        )
        if not options.check:
            _record(state, jobs, results)
    finally:
        state.close()
    redactor = prepared.redactor
    return RunResult("push", options.check, results, started, seconds, prepared.warnings, redactor)


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
    jobs = group_by_host(UserJob(target) for target in targets)
    connect = connect_factory(loaded)
    results, started, seconds = run_fleet(jobs, lambda job: rollback_host(job, connect, options), settings, broken_host)
    state = State.open(project.state_path)
    try:
        for host in results:
            for user in host.users:
                if user.status == RESTORED:
                    # The restored file holds an older secret, maybe: the next push writes it again.
                    state.forget(user.host, user.user)
    finally:
        state.close()
    return RunResult("rollback", False, results, started, seconds, [], Redactor())


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# The report file -------------------------------------------------------------------------


def report_data(run: RunResult) -> dict[str, Any]:
    """The report as data: the same as the table, for scripts (no secret values in it)."""
    return {
        "command": run.command,
        "check": run.check,
        "started": run.started,
        "seconds": round(run.seconds, 3),
        "ok": run.ok,
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
