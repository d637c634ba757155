"""provision doctor: why a host can or cannot be worked on, step by step, with the fixes."""

from __future__ import annotations

from pathlib import Path

import click

from provision.cli.app import App
from provision.cli.remote import RemoteArgs, remote_options, run_command
from provision.doctor import DoctorRun, Transcript, doctor
from provision.project import Project
from provision.rollout import ConnectFactory, RunSettings


@click.command(name="doctor")
@remote_options
@click.option(
    "--transcript",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write every request and reply of the conversation (inis and passwords masked), for a bug report.",
)
@click.pass_context
def doctor_command(ctx: click.Context, remote: RemoteArgs, transcript: Path | None) -> None:
    """Check every step from each host's name to its MicroSIP: DNS, TCP, TLS, authentication,
    the WinRM account, PowerShell, WinRM settings, MicroSIP and each user; say how to fix what fails."""
    app: App = ctx.obj
    user = remote.user or app.project.environ.get("PROVISION_WINRM_USER")
    lines = Transcript()

    def action(project: Project, inventory: Path, connect: ConnectFactory, settings: RunSettings) -> DoctorRun:
        return doctor(
            project,
            inventory,
            connect,
            settings,
            timeout=remote.timeout,
            verify_tls=not remote.no_verify_tls,
            user=user,
            transcript=transcript,
            lines=lines,
        )

    run_command(ctx, remote, "doctor", action, tracer=lines.wire if transcript is not None else None)
