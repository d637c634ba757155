"""render, diff, validate: the commands that need no workstation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from provision.cli import options
from provision.cli.app import App
from provision.errors import ExitStatus, display_path
from provision.offline import diff_tree, render_tree, validate_all


@click.command()
@options.inventory()
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder to write DIR/<host>/<user>/microsip.ini into.",
)
@options.selection
@click.option(
    "--include-secrets",
    is_flag=True,
    help="Write real SIP passwords (files readable by you only) instead of ********.",
)
@click.pass_obj
def render(
    app: App,
    inventory: Path,
    out: Path,
    limit: str | None,
    hosts: Sequence[str],
    include_secrets: bool,
) -> None:
    """Render each (host, user)'s microsip.ini into a folder, all or nothing."""
    result = render_tree(app.project, inventory, out, limit=limit, hosts=hosts, include_secrets=include_secrets)
    app.reporter.redact = result.redactor
    app.reporter.warnings(result.warnings)
    app.reporter.rendered(result.rows, display_path(out), redacted=not include_secrets)


@click.command()
@options.inventory()
@click.option(
    "--against",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    required=True,
    help="Folder of current inis laid out as render writes them: DIR/<host>/<user>/microsip.ini.",
)
@options.selection
@click.option("--exit-code", is_flag=True, help=f"Exit {int(ExitStatus.CHANGES)} when anything would change.")
@click.pass_context
def diff(
    ctx: click.Context,
    inventory: Path,
    against: Path,
    limit: str | None,
    hosts: Sequence[str],
    exit_code: bool,
) -> None:
    """Show, key by key, what a push would change in the inis under DIR (passwords masked)."""
    app: App = ctx.obj
    result = diff_tree(app.project, inventory, against, limit=limit, hosts=hosts)
    app.reporter.redact = result.redactor
    app.reporter.warnings(result.warnings)
    app.reporter.diff(result.plans, result.failed, result.new)
    if result.failed:
        ctx.exit(ExitStatus.FAILED)
    if exit_code and result.changed:
        ctx.exit(ExitStatus.CHANGES)


@click.command()
@options.inventory(required=False)
@click.pass_obj
def validate(app: App, inventory: Path | None) -> None:
    """Check profiles, templates and, with --inventory, every target and its secrets."""
    result = validate_all(app.project, inventory)
    app.reporter.warnings(result.warnings)
    app.reporter.validated(result.counts)
