"""health and smoke: is MicroSIP working on these workstations, and configured as we said?"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from provision.cli.app import App
from provision.cli.completion import complete_profiles
from provision.cli.remote import RemoteArgs, fleet_run, remote_options
from provision.errors import ExitStatus
from provision.inspection import CheckRun, health, report_json, smoke, write_junit
from provision.project import Project
from provision.push import PushOptions
from provision.rollout import ConnectFactory, RunSettings, write_text_atomically

output_format = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people; json (on standard output) for scripts.",
)
junit_option = click.option(
    "--junit",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write JUnit XML, one test case per host, for a CI server or monitoring job.",
)


CheckAction = Callable[[Project, Path, ConnectFactory, RunSettings], CheckRun]


def _run_checks(
    ctx: click.Context, remote: RemoteArgs, verb: str, fmt: str, junit: Path | None, action: CheckAction
) -> None:
    app: App = ctx.obj
    with fleet_run(ctx, remote, verb) as session:
        run = session.run(lambda connect, settings: action(app.project, remote.inventory, connect, settings))
        app.reporter.redact = run.redactor
        app.reporter.warnings(run.warnings)
        if fmt == "json":
            click.echo(report_json(run), nl=False)
        else:
            app.reporter.checks(run)
        if remote.report_path is not None:
            write_text_atomically(remote.report_path, report_json(run))
        if junit is not None:
            write_junit(run, junit)
        if run.state_error is not None:
            app.reporter.error(run.state_error)
    if run.interrupted:
        ctx.exit(ExitStatus.INTERRUPTED)
    if not run.ok:
        ctx.exit(ExitStatus.FAILED)


@click.command(name="health")
@remote_options
@output_format
@junit_option
@click.pass_context
def health_command(ctx: click.Context, remote: RemoteArgs, fmt: str, junit: Path | None) -> None:
    """Read-only checks: WinRM, MicroSIP's version and age, each user's ini and drift, hooks, devices."""
    options = PushOptions(timeout=remote.timeout)

    def action(project: Project, inventory: Path, connect: ConnectFactory, settings: RunSettings) -> CheckRun:
        return health(project, inventory, connect, options, settings)

    _run_checks(ctx, remote, "health", fmt, junit, action)


@click.command(name="smoke")
@remote_options
@click.option(
    "--profile",
    "profile",
    default="smoke",
    show_default=True,
    metavar="NAME",
    shell_complete=complete_profiles,
    help="Profile the test instance's ini is rendered from (its own account, sourcePort, logging on).",
)
@output_format
@junit_option
@click.pass_context
def smoke_command(ctx: click.Context, remote: RemoteArgs, profile: str, fmt: str, junit: Path | None) -> None:
    """Start an isolated test copy of MicroSIP on each host and drive its control commands."""
    options = PushOptions(timeout=remote.timeout)

    def action(project: Project, inventory: Path, connect: ConnectFactory, settings: RunSettings) -> CheckRun:
        return smoke(project, inventory, profile, connect, options, settings)

    _run_checks(ctx, remote, "smoke", fmt, junit, action)
