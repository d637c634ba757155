"""provision doctor: why a host can or cannot be worked on, step by step, with the fixes."""

from __future__ import annotations

from pathlib import Path

import click

from provision.cli.app import App
from provision.cli.remote import RemoteArgs, exit_for, fleet_run, remote_options, report_run
from provision.doctor import Transcript, doctor


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
    with fleet_run(ctx, remote, "doctor", tracer=lines.wire if transcript is not None else None) as session:
        run = session.run(
            lambda connect, settings: doctor(
                app.project,
                remote.inventory,
                connect,
                settings,
                timeout=remote.timeout,
                verify_tls=not remote.no_verify_tls,
                user=user,
                transcript=transcript,
                lines=lines,
            )
        )
        report_run(app, remote, run)
    exit_for(ctx, run)
