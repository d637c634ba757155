"""health and smoke: is MicroSIP working on these workstations, and configured as we said?"""

from __future__ import annotations

from pathlib import Path

import click

from provision.cli.completion import complete_profiles
from provision.cli.remote import RemoteArgs, remote_options, run_command
from provision.inspection import CheckRun, health, smoke
from provision.project import Project
from provision.push import PushOptions
from provision.rollout import ConnectFactory, RunSettings


@click.command(name="health")
@remote_options
@click.pass_context
def health_command(ctx: click.Context, remote: RemoteArgs) -> None:
    """Read-only checks: WinRM, MicroSIP's version and age, each user's ini and drift, hooks, devices."""
    options = PushOptions(timeout=remote.timeout)

    def action(project: Project, inventory: Path, connect: ConnectFactory, settings: RunSettings) -> CheckRun:
        return health(project, inventory, connect, options, settings)

    run_command(ctx, remote, "health", action)


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
@click.pass_context
def smoke_command(ctx: click.Context, remote: RemoteArgs, profile: str) -> None:
    """Start an isolated test copy of MicroSIP on each host and drive its control commands."""
    options = PushOptions(timeout=remote.timeout)

    def action(project: Project, inventory: Path, connect: ConnectFactory, settings: RunSettings) -> CheckRun:
        return smoke(project, inventory, profile, connect, options, settings)

    run_command(ctx, remote, "smoke", action)
