"""push and rollback: the commands that change workstations."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click

from provision.cli import options
from provision.cli.app import App
from provision.errors import ExitStatus, SecretError
from provision.project import Project
from provision.push import PushOptions
from provision.rollout import (
    ConnectFactory,
    Credentials,
    RunResult,
    RunSettings,
    push,
    rollback,
    winrm_connect,
    write_report,
)
from provision.secrets import Secret

DEFAULT_PASSWORD_REF = "env:PROVISION_WINRM_PASSWORD"  # noqa: S105 - a reference, not a password


@dataclass(frozen=True)
class RemoteArgs:
    """The options every command that talks to workstations takes."""

    inventory: Path
    limit: str | None
    hosts: Sequence[str]
    forks: int
    timeout: float
    user: str | None
    password_ref: str
    no_verify_tls: bool
    report_path: Path | None


_REMOTE_OPTIONS = [
    options.inventory(),
    options.selection,
    click.option(
        "--forks",
        "-f",
        type=click.IntRange(1, 512),
        default=16,
        show_default=True,
        help="Hosts worked on at the same time.",
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
        type=click.Path(path_type=Path, dir_okay=False),
        help="Also write the results as JSON to this file.",
    ),
]


def remote_options(func: Callable[..., None]) -> Callable[..., None]:
    """Adds the shared options and hands them to the command as one RemoteArgs, `remote`."""
    names = [f.name for f in fields(RemoteArgs)]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        remote = RemoteArgs(**{name: kwargs.pop(name) for name in names})
        func(*args, remote=remote, **kwargs)

    command: Callable[..., None] = wrapper
    for decorator in reversed(_REMOTE_OPTIONS):
        command = decorator(command)
    return command


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


Action = Callable[[Project, Path, ConnectFactory, RunSettings], RunResult]


@contextmanager
def fleet_run(ctx: click.Context, remote: RemoteArgs, verb: str) -> Iterator[tuple[ConnectFactory, RunSettings]]:
    """Credentials, the TLS warning, and progress shown while the hosts are worked on."""
    app: App = ctx.obj
    creds = credentials(app, remote.user, remote.password_ref)
    if remote.no_verify_tls:
        app.reporter.err.print("[yellow]Warning:[/] TLS certificates are not checked (--no-verify-tls)")
    connect = winrm_connect(creds, verify_tls=not remote.no_verify_tls, timeout=remote.timeout)
    with app.reporter.hosts_progress(verb) as (on_start, on_done):
        yield connect, RunSettings(remote.forks, remote.limit, tuple(remote.hosts), on_start, on_done)


def _run(ctx: click.Context, remote: RemoteArgs, verb: str, action: Action, *, diff: bool = False) -> RunResult:
    """The run, then the table, the report and the exit status."""
    app: App = ctx.obj
    with fleet_run(ctx, remote, verb) as (connect, settings):
        run = action(app.project, remote.inventory, connect, settings)
    app.reporter.warnings(run.warnings)
    app.reporter.redact = run.redactor
    app.reporter.fleet(run, diff=diff)
    if remote.report_path is not None:
        write_report(remote.report_path, run)
    if not run.ok:
        ctx.exit(ExitStatus.FAILED)
    return run


@click.command(name="push")
@remote_options
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
@click.pass_context
def push_command(
    ctx: click.Context,
    remote: RemoteArgs,
    check: bool,
    show_diff: bool,
    backups: int,
    exit_code: bool,
    replace_unreadable: bool,
) -> None:
    """Put each user's microsip.ini on their workstation, changing only what differs."""
    options = PushOptions(check=check, timeout=remote.timeout, backups=backups, replace_unreadable=replace_unreadable)

    def action(project: Project, inventory: Path, connect: ConnectFactory, settings: RunSettings) -> RunResult:
        return push(project, inventory, connect, options, settings)

    run = _run(ctx, remote, "check" if check else "push", action, diff=show_diff)
    if check and exit_code and run.pending:
        ctx.exit(ExitStatus.CHANGES)


@click.command(name="rollback")
@remote_options
@click.pass_context
def rollback_command(ctx: click.Context, remote: RemoteArgs) -> None:
    """Put back each user's newest backup of microsip.ini (made by the last push that wrote it)."""
    options = PushOptions(timeout=remote.timeout)

    def action(project: Project, inventory: Path, connect: ConnectFactory, settings: RunSettings) -> RunResult:
        return rollback(project, inventory, connect, options, settings)

    _run(ctx, remote, "rollback", action)
