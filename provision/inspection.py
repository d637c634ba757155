"""health and smoke over a fleet, and their reports for people (table) and machines (JSON, JUnit).

profiles + inventory -> targets (and for smoke, the smoke profile's test ini) -> one job per
host -> checks.py per host, `forks` at a time -> CheckRun -> table / JSON / JUnit XML.
"""

from __future__ import annotations

import time
from pathlib import Path

from provision.checks import FAIL, CheckResult, SmokePlan, health_host, smoke_host, smoke_ini
from provision.errors import ConfigError, Problem, SecretError, TemplateError
from provision.jobs import HostJob, UserJob, host_jobs
from provision.outcome import RunOutcome
from provision.project import Project, prepare, select_targets
from provision.push import PushOptions
from provision.render import Renderer
from provision.rollout import (
    EVERY_HOST,
    ConnectFactory,
    RunSettings,
    choose_jobs,
    input_files,
)
from provision.runs import Record, inputs_digest, outcome_record
from provision.secrets import Redactor
from provision.state import HostOutcome as HostRecord
from provision.state import UserOutcome, open_store
from provision.targets import smoke_target

CheckRun = RunOutcome[CheckResult]


def _broken(job: HostJob, reason: str, kind: str) -> CheckResult:
    result = CheckResult(job.host)
    result.add("provision", FAIL, f"{kind}: {reason}")
    return result


def health(
    project: Project,
    inventory: Path,
    connect_factory: ConnectFactory,
    options: PushOptions,
    settings: RunSettings = EVERY_HOST,
) -> CheckRun:
    """Read-only checks of every chosen host; nothing on a workstation is changed."""
    with open_store(project.state_path) as store:
        prepared = prepare(project, inventory, settings.limit, settings.hosts)
        settings.on_redactor(prepared.redactor)
        records = store.last_pushes(t.host for t in prepared.targets)
        jobs = choose_jobs(store, host_jobs(prepared, records), settings)
        connect = connect_factory(prepared.inventory)
        key, now = store.fingerprint_key, time.time()
        digest = inputs_digest(input_files(project, prepared.inventory))
        record: Record[CheckResult] = Record("health", settings.recorded(), check_record, digest=digest)
        return settings.run_recorded(
            store,
            store.new_run_id(),
            record,
            jobs,
            lambda job: health_host(job, connect, options, key, now),
            _broken,
            warnings=prepared.warnings,
            redactor=prepared.redactor,
        )


def smoke(
    project: Project,
    inventory: Path,
    profile: str,
    connect_factory: ConnectFactory,
    options: PushOptions,
    settings: RunSettings = EVERY_HOST,
) -> CheckRun:
    """A test copy of MicroSIP on every chosen host, rendered from the smoke profile."""
    loaded, targets = select_targets(project, inventory, settings.limit, settings.hosts)
    store, renderer, resolver = project.store(), Renderer(project.templates()), project.secret_resolver()
    jobs: list[tuple[HostJob, SmokePlan]] = []
    seen: set[str] = set()
    problems: list[Problem] = []
    for target in targets:
        if target.host in seen:
            continue
        seen.add(target.host)
        try:
            test = smoke_target(store, target, profile)
            version = test.resolved.profile.version
            secrets = {
                a.section.lower(): resolver.resolve_ini(a.password.ref, a.password.where, version)
                for a in test.accounts
                if a.password
            }
            rendered = renderer.render(test)
        except ConfigError as exc:
            problems += exc.problems
            break  # the same profile fails the same way on every host
        except (SecretError, TemplateError) as exc:
            problems.append(Problem(profile, None, "", exc.message))
            break
        smoke_settings = test.resolved.profile.smoke
        plan = SmokePlan(
            smoke_ini(rendered, secrets),
            smoke_settings.number,
            smoke_settings.ready_seconds,
            smoke_settings.step_seconds,
        )
        groups = tuple(loaded.model.hosts[target.host].groups)
        jobs.append((HostJob(target.host, target.connection, target.install, (UserJob(test),), groups), plan))
    if problems:
        raise ConfigError(problems)
    redactor = Redactor(resolver.secrets())
    settings.on_redactor(redactor)
    plans = {job.host: plan for job, plan in jobs}
    connect = connect_factory(loaded)
    with open_store(project.state_path) as state:
        chosen = choose_jobs(state, [job for job, _ in jobs], settings)
        record: Record[CheckResult] = Record("smoke", settings.recorded(), check_record)
        return settings.run_recorded(
            state,
            state.new_run_id(),
            record,
            chosen,
            lambda job: smoke_host(job, connect, options, plans[job.host]),
            _broken,
            warnings=loaded.warnings,
            redactor=redactor,
        )


def check_record(result: CheckResult) -> HostRecord:
    """A host's checks as the state keeps them: the failed ones stand for its users."""
    failed = (UserOutcome(c.name, c.status, c.detail, None, None, 0) for c in result.checks if c.status == FAIL)
    return outcome_record(result, failed)


# Summaries and reports ---------------------------------------------------------------------
