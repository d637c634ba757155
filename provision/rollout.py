"""push and rollback over a fleet: prepare offline, talk to hosts in parallel, record the outcome.

profiles + inventory -> rendered inis (all checked first) -> one HostJob per host ->
push.py per host through the fleet runner -> state recorded here, in the caller's thread -> report.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provision.errors import ConfigError, Problem
from provision.fleet import (
    Amount,
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
    with_canary_groups,
)
from provision.jobs import HostJob, UserJob, endpoint_of, group_by_host, host_groups, host_jobs
from provision.outcome import RunOutcome
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
)
from provision.report.data import summary_counts
from provision.runs import (
    LEASE_MARGIN,
    Record,
    earlier_run,
    finish_recording,
    hosts_done,
    hosts_from_run,
    inputs_digest,
    outcome_record,
    start_recording,
)
from provision.secrets import Redactor, Secret
from provision.session import Connect
from provision.state import HostOutcome as HostRecord
from provision.state import PushRecord, RunInfo, Store, UserOutcome, open_store
from provision.targets import LoadedInventory
from provision.transport.base import Transport


@dataclass(frozen=True)
class Credentials:
    username: str
    password: Secret = field(repr=False)


RunResult = RunOutcome[HostResult]


ConnectFactory = Callable[[LoadedInventory], Connect]


@dataclass(frozen=True)
class RunSettings:
    """Which hosts, in what order and batches, how many at a time, and who hears about progress."""

    forks: int = 16  # hosts in flight at once, in all
    workers: int = 1  # processes sharing the hosts (the command line defaults to the cores)
    limit: str | None = None
    hosts: tuple[str, ...] = ()
    shard: tuple[int, int] | None = None  # (K, N): only the hosts of part K of N
    only: str | None = None  # with from_run: the hosts of that run that ended failed, unreachable or changed
    from_run: str | None = None
    resume: str | None = None  # a stopped or interrupted run to finish (its own options are used)
    wait_for_lease: float = 0.0  # seconds to wait for a host another run holds, before skipping it
    verify_tls: bool = True  # as the connections were made (recorded with the run and in its report)
    staging: Staging = field(default_factory=Staging)
    on_start: Callable[[int], None] = lambda _: None
    on_done: Callable[[HostOutcome], None] = lambda _: None
    on_note: Callable[[str], None] = lambda _: None
    on_redactor: Callable[[Redactor], None] = lambda _: None  # told the run's secrets, before any host
    between: Between | None = None  # asked between batches whether to go on (--pause)

    def recorded(self) -> dict[str, Any]:
        """The options a run is recorded with (which hosts, how many at a time); commands add theirs."""
        return {
            "limit": self.limit,
            "hosts": list(self.hosts),
            "shard": list(self.shard) if self.shard else None,
            "only": self.only,
            "from_run": self.from_run,
            "forks": self.forks,
            "workers": self.workers,
            "verify_tls": self.verify_tls,
        }

    def run(
        self,
        jobs: Sequence[HostJob],
        work: Callable[[HostJob], Out],
        broken: Callable[[HostJob, str, str], Out],
        *,
        canary_groups: frozenset[str] = frozenset(),
        hooks: RunHooks | None = None,
    ) -> FleetRun[Out]:
        staging = with_canary_groups(self.staging, jobs, canary_groups)
        ordered = order_jobs(jobs, staging.order, staging.seed)
        return run_fleet(
            plan_batches(ordered, staging),
            work,
            broken,
            forks=self.forks,
            workers=self.workers,
            staging=staging,
            progress=Progress(self.on_start, self.on_done, self.on_note),
            hooks=hooks,
            between=self.between,
        )

    def run_recorded(
        self,
        store: Store,
        run_id: str,
        record: Record[Out],
        jobs: Sequence[HostJob],
        work: Callable[[HostJob], Out],
        broken: Callable[[HostJob, str, str], Out],
        *,
        canary_groups: frozenset[str] = frozenset(),
        warnings: Sequence[Problem] = (),
        redactor: Redactor | None = None,
        check: bool = False,
    ) -> RunOutcome[Out]:
        """The run, recorded in `store` as `run_id` (started, each host as it finishes, ended),
        and what it ended with."""
        shard = f"{self.shard[0]}/{self.shard[1]}" if self.shard else None
        recording = start_recording(store, run_id, record, jobs, shard=shard, wait_for_lease=self.wait_for_lease)
        run = self.run(jobs, work, broken, canary_groups=canary_groups, hooks=recording)
        finish_recording(recording, run.status, summary_counts(run.results, run.not_started))
        return RunOutcome.of(
            record.command,
            run,
            jobs,
            warnings=warnings,
            redactor=redactor,
            run_id=run_id,
            state_error=recording.error,
            check=check,
            verify_tls=self.verify_tls,
        )


EVERY_HOST = RunSettings()  # the default: all hosts, 16 at a time, one process, no progress shown


Tracer = Callable[[str, str, bytes], None]  # (host, "request" | "reply", WS-Management envelope)


def winrm_connect(
    credentials: Credentials,
    *,
    verify_tls: bool = True,
    timeout: float = 120.0,
    transport: str = "auto",
    tracer: Tracer | None = None,
) -> ConnectFactory:
    """Connect functions that open a WinRM transport for a host's connection settings;
    `tracer` hears every envelope of every host (doctor --transcript)."""

    def factory(inventory: LoadedInventory) -> Connect:
        from provision.transport import open_transport
        from provision.transport.winrm import WinRMSettings

        base = inventory.path.resolve().parent
        _check_ca_bundles(inventory)

        def connect(job: HostJob) -> Transport:
            end = endpoint_of(job, base)
            settings = WinRMSettings(
                address=end.address,
                scheme=end.scheme,
                port=end.port,
                auth=end.auth,
                username=credentials.username,
                password=credentials.password,
                verify_tls=verify_tls,
                ca_bundle=str(end.ca_bundle) if end.ca_bundle else None,
                operation_timeout=max(1, min(20, int(timeout / 4))),
                trace=functools.partial(tracer, job.host) if tracer is not None else None,
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


def push(
    project: Project,
    inventory: Path,
    connect_factory: ConnectFactory,
    options: PushOptions,
    settings: RunSettings = EVERY_HOST,
) -> RunResult:
    """Push every chosen user's ini; record the run, each host as it finishes, and what was pushed."""
    with open_store(project.state_path) as store:
        resumed = None
        if settings.resume:
            resumed = resumable(store, settings.resume, "push")
            settings, options = replayed(resumed, settings, options)
        prepared = prepare(project, inventory, settings.limit, settings.hosts)
        settings.on_redactor(prepared.redactor)
        digest = inputs_digest(input_files(project, prepared.inventory))
        if resumed is not None and resumed.digest != digest:
            raise ConfigError(
                [
                    Problem(
                        "--resume",
                        None,
                        "",
                        f"the profiles, templates or inventory changed since run {resumed.id}; a resume applies "
                        f"exactly what that run did. Start a new push, or use --only failed --from-run {resumed.id}",
                    )
                ]
            )
        records = store.last_pushes(t.host for t in prepared.targets)
        jobs = choose_jobs(store, host_jobs(prepared, records), settings, resumed)
        connect = connect_factory(prepared.inventory)
        key = store.fingerprint_key
        record: Record[HostResult] = Record(
            "push",
            run_options(settings, options),
            host_record,
            digest=digest,
            resume_of=resumed.id if resumed else None,
            lease_seconds=None if options.check else lease_seconds(options),
            pushes=None if options.check else (lambda result: push_records(result, records)),
        )
        run_id = store.new_run_id()
        options = replace(options, run_id=run_id)  # the backups carry it
        return settings.run_recorded(
            store,
            run_id,
            record,
            jobs,
            lambda job: _slim(push_host(job, connect, options, key)),
            broken_host,
            canary_groups=canary_groups(prepared.inventory),
            warnings=prepared.warnings,
            redactor=prepared.redactor,
            check=options.check,
        )


def _slim(result: HostResult) -> HostResult:
    """What comes back from a host, without the file contents (passwords included) it no longer needs."""
    for user in result.users:
        if user.plan is not None and user.plan.content is not None:
            user.plan = replace(user.plan, content=None)
    return result


def push_records(result: HostResult, known: Mapping[tuple[str, str], PushRecord]) -> list[PushRecord]:
    """What was pushed to each user of a host, for the next plan (passwords by fingerprint only).
    An unchanged user is recorded only when the record of it is missing or no longer true."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    out = []
    for user in result.users:
        plan = user.plan
        if plan is None or user.status not in (CHANGED, UNCHANGED):
            continue
        earlier = known.get((result.host, user.user.casefold()))
        if user.status == UNCHANGED and earlier is not None and earlier.managed_hash == plan.managed_hash:
            continue
        keys, digest, prints = plan.managed_keys, plan.managed_hash, plan.fingerprints
        out.append(PushRecord(result.host, user.user, now, keys, digest, prints, user.status, plan.managed_values))
    return out


def host_record(result: HostResult) -> HostRecord:
    users = (UserOutcome(u.user, u.status, u.reason, u.backup, u.restarted, len(u.changes)) for u in result.users)
    return outcome_record(result, users)


def lease_seconds(options: PushOptions) -> float:
    """As long as one host may take, all attempts included, and a margin; renewed while it works."""
    waits = 0.0
    wait = options.backoff * 1.5  # the longest a jittered backoff waits
    for _ in range(options.retries):
        waits += wait
        wait *= 2
    return options.timeout * (options.retries + 1) + waits + LEASE_MARGIN


def rollback(
    project: Project,
    inventory: Path,
    connect_factory: ConnectFactory,
    options: PushOptions,
    settings: RunSettings = EVERY_HOST,
    *,
    undo: str | None = None,
) -> RunResult:
    """Put each chosen user's newest backup back; or, with `undo` (a push's run id), the ini each
    user that run changed had before it, and only for them. Needs no rendering, nor secrets."""
    with open_store(project.state_path) as store:
        loaded, targets = select_targets(project, inventory, settings.limit, settings.hosts)
        backups: dict[tuple[str, str], str | None] = {(t.host, t.user.casefold()): None for t in targets}
        if undo is not None:
            backups = backups_of_run(store, earlier_run(store, undo, command="push", option="--run"))
        users = (
            UserJob(t, backup=backups[(t.host, t.user.casefold())])
            for t in targets
            if (t.host, t.user.casefold()) in backups
        )
        jobs = choose_jobs(store, group_by_host(users, host_groups(loaded)), settings)
        connect = connect_factory(loaded)
        record: Record[HostResult] = Record(
            "rollback",
            {**run_options(settings, options), "run": undo},
            host_record,
            lease_seconds=lease_seconds(options),
            forget=restored_users,
        )
        return settings.run_recorded(
            store,
            store.new_run_id(),
            record,
            jobs,
            lambda job: rollback_host(job, connect, options),
            broken_host,
            canary_groups=canary_groups(loaded),
            warnings=loaded.warnings,
        )


def backups_of_run(store: Store, run: RunInfo) -> dict[tuple[str, str], str | None]:
    """The backup a push made of each user's ini before changing it: (host, user) -> its path."""
    return {
        (outcome.host, user.user.casefold()): user.backup
        for outcome in store.run_hosts(run.id)
        for user in outcome.users
        if user.status == CHANGED and user.backup
    }


def restored_users(result: HostResult) -> list[tuple[str, str]]:
    """Users whose ini was put back: the file may hold an older secret, so the next push writes it again."""
    return [(result.host, user.user) for user in result.users if user.status == RESTORED]


def canary_groups(inventory: LoadedInventory) -> frozenset[str]:
    return frozenset(name for name, group in inventory.model.groups.items() if group.canary)


def input_files(project: Project, inventory: LoadedInventory) -> list[Path]:
    """The files a run applies: profiles, templates (the user's and the built-in ones), inventory, users CSVs."""
    files = list(project.profiles_dir.glob("*.yaml")) if project.profiles_dir.is_dir() else []
    for folder in project.templates().directories:
        files += folder.glob("*.j2")
    files.append(inventory.path)
    files += [inventory.path.parent / name for name in inventory.model.users_csv]
    return files


# Options recorded with a run, and replayed by --resume --------------------------------------------


def run_options(settings: RunSettings, options: PushOptions) -> dict[str, Any]:
    staging = settings.staging
    return {
        **settings.recorded(),
        "canary": str(staging.canary) if staging.canary is not None else None,
        "batch": [str(a) for a in staging.batches],
        "max_fail": str(staging.max_fail) if staging.max_fail is not None else None,
        "count_unreachable": staging.count_unreachable,
        "order": staging.order,
        "seed": staging.seed,
        "pause_seconds": staging.pause_seconds,
        "check": options.check,
        "timeout": options.timeout,
        "backups": options.backups,
    }


def resumable(store: Store, run_id: str, command: str) -> RunInfo:
    run = earlier_run(store, run_id, command=command)
    if run.status not in ("stopped", "interrupted", "running"):
        raise ConfigError(
            [
                Problem(
                    "--resume",
                    None,
                    "",
                    f"run {run.id} {run.status} and went through every host; nothing to resume "
                    f"(to retry its failed hosts: --only failed --from-run {run.id})",
                )
            ]
        )
    return run


def replayed(run: RunInfo, settings: RunSettings, options: PushOptions) -> tuple[RunSettings, PushOptions]:
    """The settings and options of the run being resumed; its canary is behind it."""
    recorded = run.options
    staging = Staging(
        canary=None,
        batches=tuple(Amount.parse(a) for a in recorded.get("batch") or []),
        max_fail=Amount.parse(recorded["max_fail"], minimum=0) if recorded.get("max_fail") else None,
        count_unreachable=bool(recorded.get("count_unreachable")),
        order=recorded.get("order") or "inventory",
        seed=int(recorded.get("seed") or 0),
        pause_seconds=float(recorded.get("pause_seconds") or 0),
    )
    shard = recorded.get("shard")
    settings = replace(
        settings,
        limit=recorded.get("limit"),
        hosts=tuple(recorded.get("hosts") or ()),
        shard=(int(shard[0]), int(shard[1])) if shard else None,
        only=recorded.get("only"),
        from_run=recorded.get("from_run"),
        staging=staging,
    )
    options = replace(
        options,
        check=bool(recorded.get("check")),
        backups=int(recorded.get("backups") or options.backups),
    )
    return settings, options


def choose_jobs(
    store: Store, jobs: Sequence[HostJob], settings: RunSettings, resumed: RunInfo | None = None
) -> list[HostJob]:
    """The jobs of this run: a shard of the chosen hosts, those of an earlier run (--only --from-run),
    and, for a resume, those its run did not get through."""
    chosen = list(jobs)
    if settings.shard is not None:
        part, parts = settings.shard
        chosen = [job for job in chosen if shard_of(job.host, parts) == part]
    if settings.from_run:
        earlier = earlier_run(store, settings.from_run)
        wanted = set(hosts_from_run(store, earlier, settings.only or "failed"))
        chosen = [job for job in chosen if job.host in wanted]
    if resumed is not None:
        done = hosts_done(store, resumed)
        chosen = [job for job in chosen if job.host not in done]
    return chosen
