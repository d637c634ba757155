"""push and rollback: the commands that change workstations."""

from __future__ import annotations

import functools
import secrets
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import click
from click.shell_completion import CompletionItem

from provision.cli import options
from provision.cli.app import App
from provision.cli.completion import complete_groups
from provision.errors import ExitStatus, SecretError
from provision.fleet import Amount, Order, Staging, default_workers
from provision.interrupt import handling_interrupts
from provision.outcome import RunOutcome
from provision.project import Project
from provision.push import PushOptions
from provision.report import Reporter
from provision.report.data import report_json
from provision.report.files import STDOUT, is_stdout, write_text
from provision.report.junit import junit_xml
from provision.rollout import (
    ConnectFactory,
    Credentials,
    RunResult,
    RunSettings,
    Tracer,
    push,
    rollback,
    winrm_connect,
)
from provision.runs import ONLY
from provision.secrets import Redactor, Secret

DEFAULT_PASSWORD_REF = "env:PROVISION_WINRM_PASSWORD"  # noqa: S105 - a reference, not a password


@dataclass(frozen=True)
class RemoteArgs:
    """The options every command that talks to workstations takes."""

    inventory: Path
    limit: str | None
    hosts: Sequence[str]
    shard: tuple[int, int] | None
    only: str | None
    from_run: str | None
    forks: int | None
    workers: int | None
    timeout: float
    user: str | None
    password_ref: str
    no_verify_tls: bool
    report_path: str | None
    fmt: str
    junit: str | None
    by_group: bool
    show: str


class AmountType(click.ParamType[Amount]):
    """A number of hosts (0 allowed) or a percentage: 0, 5, 10%."""

    name = "N|P%"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Amount:
        if isinstance(value, Amount):
            return value
        try:
            return Amount.parse(str(value), minimum=0)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


class BatchesType(click.ParamType[tuple[Amount, ...]]):
    """Batch sizes, comma-separated: 1,10%,50% (the last one repeats)."""

    name = "SIZES"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[Amount, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return tuple(Amount.parse(part) for part in str(value).split(",") if part.strip())
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


class CanaryType(click.ParamType[Amount | str]):
    """The canary batch: N hosts, P% of them, or an inventory group's name."""

    name = "N|P%|GROUP"

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        return complete_groups(ctx, param, incomplete)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Amount | str:
        text = str(value).strip()
        if text[:1].isdigit():
            try:
                return Amount.parse(text)
            except ValueError as exc:
                raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
        return text


class ShardType(click.ParamType[tuple[int, int]]):
    """K/N: this controller's part of the fleet."""

    name = "K/N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        k, sep, n = str(value).partition("/")
        if not (sep and k.strip().isdigit() and n.strip().isdigit() and 1 <= int(k) <= int(n)):
            raise click.BadParameter(
                f"{value!r} is not K/N with 1 <= K <= N (e.g. 2/4)", ctx=ctx, param=param
            ) from None
        return int(k), int(n)


# Hosts in flight per worker process by default. A host is mostly waiting (powershell.exe starts
# in 0.5 to 1.5 s on real Windows, then a few round trips) and costs the controller about 4 to 5
# ms of CPU (bench/push.py): a core keeps some 200 hosts busy; 128 leaves room for the lab or
# other work on the controller. docs/performance.md has the figures.
FORKS_PER_WORKER = 128

_REMOTE_OPTIONS = [
    options.inventory(),
    options.selection,
    click.option(
        "--shard",
        type=ShardType(),
        help="Take only part K of N of the chosen hosts (a stable split by host name), so N controllers "
        "share a fleet: --shard 1/4 on the first, 2/4 on the second...",
    ),
    click.option(
        "--only",
        type=click.Choice(ONLY),
        help="With --from-run: only the hosts of that run that ended so (default: failed).",
    ),
    click.option(
        "--from-run",
        metavar="RUN",
        help="Only hosts of an earlier run (an id, or its first characters; see `provision runs`), e.g. "
        "--only unreachable --from-run RUN in a cron job to reach laptops as they come online.",
    ),
    click.option(
        "--forks",
        "-f",
        type=click.IntRange(1, 8192),
        default=None,
        help=f"Hosts worked on at the same time, in all. Default: {FORKS_PER_WORKER} per worker process.",
    ),
    click.option(
        "--workers",
        type=click.IntRange(1, 256),
        default=None,
        help="Processes sharing the hosts (and the forks). Default: the controller's cores; one for small runs.",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(1, 3600),
        default=120,
        show_default=True,
        help="Seconds one host may take, all steps included.",
    ),
    click.option(
        "--user",
        envvar="PROVISION_WINRM_USER",
        metavar="NAME",
        help="WinRM account (DOMAIN\\name or name@domain). Env: PROVISION_WINRM_USER.",
    ),
    click.option(
        "--password-ref",
        default=DEFAULT_PASSWORD_REF,
        show_default=True,
        metavar="REF",
        help="Where the WinRM password is: env:NAME, file:PATH or keyring:SERVICE/NAME. "
        "Asked for on a terminal if it is not there.",
    ),
    click.option(
        "--no-verify-tls",
        is_flag=True,
        help="Do not check the workstations' TLS certificates (prints a warning). Prefer the inventory's ca_bundle.",
    ),
    click.option(
        "--report",
        "report_path",
        metavar="FILE",
        help="Also write the results as JSON to this file ('-' for standard output; the table then goes "
        "to standard error).",
    ),
    click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="table for people; json (the report, on standard output) for scripts.",
    ),
    click.option(
        "--junit",
        metavar="FILE",
        help="Also write JUnit XML, a test case per host, for a CI server or a monitoring job ('-' for "
        "standard output).",
    ),
    click.option(
        "--by-group",
        is_flag=True,
        help="Summaries per inventory group (department): on screen, and a test suite per group in --junit.",
    ),
    click.option(
        "--show",
        type=click.Choice(["auto", "all"]),
        default="auto",
        show_default=True,
        help="Table rows: auto lists every host of a small run, and for a large one the hosts with problems "
        "and changes first; all lists every host.",
    ),
]


@dataclass(frozen=True)
class StagingArgs:
    """How a rollout is staged: canary, batches, stop rule, pauses, order."""

    canary: Amount | str | None
    batch: tuple[Amount, ...]
    max_fail: Amount | None
    count_unreachable: bool
    pause: bool
    pause_seconds: float
    order: str
    wait_for_lease: float

    def staging(self, seed: int) -> Staging:
        order: Order = "random" if self.order == "random" else "group" if self.order == "group" else "inventory"
        return Staging(
            canary=self.canary,
            batches=self.batch,
            max_fail=self.max_fail,
            count_unreachable=self.count_unreachable,
            order=order,
            seed=seed,
            pause_seconds=self.pause_seconds,
        )


_STAGING_OPTIONS = [
    click.option(
        "--canary",
        type=CanaryType(),
        help="First batch: N hosts, P% of them, or a group's hosts; the rollout stops if any of them fails "
        "(unless --max-fail says otherwise). Groups marked canary: true go first when batching.",
    ),
    click.option(
        "--batch",
        type=BatchesType(),
        default="",
        help="Batch sizes after the canary, e.g. 10 or 25% or 1,10%,50% (the last size repeats).",
    ),
    click.option(
        "--max-fail",
        type=AmountType(),
        help="Stop (before the next host) once more than N or P% hosts failed, in a batch or in all.",
    ),
    click.option(
        "--count-unreachable",
        is_flag=True,
        help="Unreachable hosts count as failures for --max-fail (by default they are their own outcome).",
    ),
    click.option("--pause", is_flag=True, help="Ask before each batch after the first (on a terminal)."),
    click.option(
        "--pause-seconds",
        type=click.FloatRange(0, 86400),
        default=0,
        help="Wait this long between batches (for scripts; Ctrl-C during the wait stops the run).",
    ),
    click.option(
        "--order",
        type=click.Choice(["inventory", "random", "group"]),
        default="inventory",
        show_default=True,
        help="Order in which hosts are taken.",
    ),
    click.option(
        "--wait-for-lease",
        type=click.FloatRange(0, 86400),
        default=0,
        metavar="SECONDS",
        help="A host another run is working on is skipped (and reported); wait up to this long for it instead.",
    ),
]


def _bundled(
    args_class: type[Any], decorators: list[Callable[[Any], Any]], keyword: str
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A decorator that adds `decorators` (click options) and hands their values to the
    command as one `args_class`, under `keyword`."""
    names = [f.name for f in fields(args_class)]

    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            bundle = args_class(**{name: kwargs.pop(name) for name in names})
            func(*args, **{keyword: bundle}, **kwargs)

        command: Callable[..., None] = wrapper
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return decorate


#: Adds the staging options and hands them to the command as one StagingArgs, `staged`.
staging_options = _bundled(StagingArgs, _STAGING_OPTIONS, "staged")
#: Adds the shared options and hands them to the command as one RemoteArgs, `remote`.
remote_options = _bundled(RemoteArgs, _REMOTE_OPTIONS, "remote")


def credentials(app: App, user: str | None, password_ref: str) -> Credentials:
    user = user or app.project.environ.get("PROVISION_WINRM_USER")  # also from --env-file
    if not user:
        if sys.stdin.isatty():
            user = click.prompt("WinRM user")
        else:
            raise SecretError("no WinRM user: use --user or set PROVISION_WINRM_USER")
    try:
        password = app.project.secret_resolver().resolve(password_ref, "--password-ref")
    except SecretError:
        if password_ref != DEFAULT_PASSWORD_REF or not sys.stdin.isatty():
            raise
        password = Secret(click.prompt(f"WinRM password for {user}", hide_input=True))
    return Credentials(str(user), password)


R = TypeVar("R")
Run = TypeVar("Run", bound=RunOutcome[Any])
#: What a command does on the fleet: its inventory, connected, under the run's settings.
Action = Callable[[Project, Path, ConnectFactory, RunSettings], Run]


@dataclass(frozen=True)
class FleetSession:
    """What a command that talks to workstations works with: how to connect, and a run
    shown with progress. Made by `fleet_run`."""

    connect: ConnectFactory
    settings: RunSettings
    reporter: Reporter
    verb: str
    pause: bool = False  # ask on the terminal between batches
    secrets: tuple[Secret, ...] = field(default=(), repr=False)  # the WinRM password: never shown either

    def run(self, action: Callable[[ConnectFactory, RunSettings], R]) -> R:
        """Run `action` with progress shown (a bar on a terminal, a line per host otherwise)."""

        def redacting(redactor: Redactor) -> None:
            redactor.add(self.secrets)
            self.reporter.use_redactor(redactor)

        with self.reporter.hosts_progress(self.verb) as progress:
            settings = replace(
                self.settings,
                on_start=progress.on_start,
                on_done=progress.on_done,
                on_note=progress.on_note,
                on_redactor=redacting,
                between=progress.confirm_batch if self.pause else None,
            )
            result = action(self.connect, settings)
        if isinstance(result, RunOutcome):
            result.redactor.add(self.secrets)
        return result


@contextmanager
def fleet_run(
    ctx: click.Context, remote: RemoteArgs, verb: str, staged: StagingArgs | None = None, tracer: Tracer | None = None
) -> Iterator[FleetSession]:
    """Credentials and the TLS warning first; then, until the block ends, Ctrl-C and SIGTERM
    stop the run in two stages and never lose the table or report of what was done."""
    app: App = ctx.obj
    if staged is not None and staged.pause and not sys.stdin.isatty():
        raise click.UsageError("--pause needs a terminal to ask on; use --pause-seconds in scripts")
    creds = credentials(app, remote.user, remote.password_ref)
    app.reporter.use_redactor(Redactor([creds.password]))
    if remote.no_verify_tls:
        app.reporter.err.print("[yellow]Warning:[/] TLS certificates are not checked (--no-verify-tls)")
    connect = winrm_connect(creds, verify_tls=not remote.no_verify_tls, timeout=remote.timeout, tracer=tracer)
    if remote.fmt == "json" and remote.junit is not None and is_stdout(remote.junit):
        raise click.UsageError("--format json and --junit - would both write to standard output")
    staging = staged.staging(seed=secrets.randbelow(2**31)) if staged is not None else Staging()
    if remote.only and not remote.from_run:
        raise click.UsageError("--only needs --from-run RUN")
    workers = remote.workers if remote.workers is not None else default_workers()
    settings = RunSettings(
        forks=remote.forks if remote.forks is not None else FORKS_PER_WORKER * workers,
        workers=workers,
        limit=remote.limit,
        hosts=tuple(remote.hosts),
        shard=remote.shard,
        only=remote.only,
        from_run=remote.from_run,
        wait_for_lease=staged.wait_for_lease if staged is not None else 0.0,
        staging=staging,
        verify_tls=not remote.no_verify_tls,
    )
    with handling_interrupts(app.reporter.note):
        pause = staged is not None and staged.pause
        yield FleetSession(connect, settings, app.reporter, verb, pause=pause, secrets=(creds.password,))


def run_command(
    ctx: click.Context,
    remote: RemoteArgs,
    verb: str,
    action: Action[Run],
    *,
    staged: StagingArgs | None = None,
    diff: bool = False,
    tracer: Tracer | None = None,
) -> Run:
    """The run, then what it says (table, JSON, JUnit), and the exit status."""
    app: App = ctx.obj
    with fleet_run(ctx, remote, verb, staged, tracer) as session:
        run = session.run(lambda connect, settings: action(app.project, remote.inventory, connect, settings))
        report_run(app, remote, run, diff=diff)
    exit_for(ctx, run)
    return run


def report_run(app: App, remote: RemoteArgs, run: RunOutcome[Any], *, diff: bool = False) -> None:
    """The table (or the JSON report) of a run, the report and JUnit files, a state that could not
    be written. Standard output carries only JSON when JSON is asked for there."""
    reporter = app.reporter
    reporter.use_redactor(run.redactor)
    reporter.warnings(run.warnings)
    json_out = remote.fmt == "json" or (remote.report_path is not None and is_stdout(remote.report_path))
    if remote.fmt == "json":
        write_text(STDOUT, report_json(run))
    else:
        reporter.outcome(run, diff=diff, by_group=remote.by_group, show=remote.show, to_stderr=json_out)
    if remote.report_path is not None and not (remote.fmt == "json" and is_stdout(remote.report_path)):
        write_text(remote.report_path, report_json(run))
    if remote.junit is not None:
        write_text(remote.junit, junit_xml(run, by_group=remote.by_group))
    if run.state_error is not None:
        reporter.error(run.state_error)


def exit_for(ctx: click.Context, run: RunOutcome[Any]) -> None:
    """130 interrupted; 1 a host failed, the run stopped, or the state could not be written;
    then for health 4 if a workstation drifted, 3 if the profiles changed since the last push."""
    if run.interrupted:
        ctx.exit(ExitStatus.INTERRUPTED)
    failed = any(not h.ok and h.status != "drifted" for h in run.hosts)
    if failed or run.stopped or run.state_error is not None:
        ctx.exit(ExitStatus.FAILED)
    statuses = {h.status for h in run.hosts}
    if "drifted" in statuses:
        ctx.exit(ExitStatus.DRIFT)
    if "pending" in statuses:
        ctx.exit(ExitStatus.CHANGES)


@click.command(name="push")
@remote_options
@staging_options
@click.option("--check", is_flag=True, help="Change nothing; say what would change.")
@click.option("--diff", "show_diff", is_flag=True, help="Print each user's changes key by key (passwords masked).")
@click.option(
    "--backups",
    type=click.IntRange(1, 100),
    default=5,
    show_default=True,
    help="Backups of each ini kept on the workstation.",
)
@click.option(
    "--exit-code", is_flag=True, help=f"With --check: exit {int(ExitStatus.CHANGES)} if anything would change."
)
@click.option(
    "--replace-unreadable",
    is_flag=True,
    help="Replace a workstation ini that cannot be read with the rendered one (after a backup) "
    "instead of reporting it.",
)
@click.option(
    "--resume",
    metavar="RUN",
    help="Finish a stopped or interrupted push: the hosts it did not get through, with its own options "
    "(selection, batches, --check) and the same profiles and inventory.",
)
@click.pass_context
def push_command(
    ctx: click.Context,
    remote: RemoteArgs,
    staged: StagingArgs,
    check: bool,
    show_diff: bool,
    backups: int,
    exit_code: bool,
    replace_unreadable: bool,
    resume: str | None,
) -> None:
    """Put each user's microsip.ini on their workstation, changing only what differs."""
    options = PushOptions(check=check, timeout=remote.timeout, backups=backups, replace_unreadable=replace_unreadable)
    if resume:
        given = [
            f"--{name.replace('_', '-')}"
            for name in ("limit", "hosts", "shard", "only", "from_run", "canary", "batch", "max_fail", "order", "check")
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(f"--resume uses the options of the run it finishes; drop {', '.join(given)}")

    def action(project: Project, inventory: Path, connect: ConnectFactory, settings: RunSettings) -> RunResult:
        return push(project, inventory, connect, options, replace(settings, resume=resume))

    run = run_command(ctx, remote, "check" if check else "push", action, staged=staged, diff=show_diff)
    if check and exit_code and run.pending:
        ctx.exit(ExitStatus.CHANGES)


@click.command(name="rollback")
@remote_options
@staging_options
@click.option(
    "--run",
    "undo",
    metavar="RUN",
    help="Undo that push: put back the ini each user it changed had before it (its backup), and only "
    "for those users. Without it, each chosen user's newest backup.",
)
@click.pass_context
def rollback_command(ctx: click.Context, remote: RemoteArgs, staged: StagingArgs, undo: str | None) -> None:
    """Put back each user's newest backup of microsip.ini, or with --run what a push replaced."""
    options = PushOptions(timeout=remote.timeout)

    def action(project: Project, inventory: Path, connect: ConnectFactory, settings: RunSettings) -> RunResult:
        return rollback(project, inventory, connect, options, settings, undo=undo)

    run_command(ctx, remote, "rollback", action, staged=staged)
