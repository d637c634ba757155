"""provision doctor: why a host can or cannot be worked on, step by step, with the fixes."""

from __future__ import annotations

from pathlib import Path

import click

from provision.cli.app import App
from provision.cli.remote import RemoteArgs, fleet_run, remote_options
from provision.doctor import doctor, lines, report_json
from provision.errors import ExitStatus
from provision.rollout import write_text_atomically


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
    with fleet_run(ctx, remote, "doctor") as (connect, settings):
        run = doctor(
            app.project,
            remote.inventory,
            connect,
            settings,
            timeout=remote.timeout,
            verify_tls=not remote.no_verify_tls,
            user=user,
            transcript=transcript,
        )
    app.reporter.redact = run.redactor
    for line in lines(run):
        app.reporter.line(line)
    if remote.report_path is not None:
        write_text_atomically(remote.report_path, report_json(run))
    if not run.ok:
        ctx.exit(ExitStatus.FAILED)
