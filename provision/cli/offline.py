"""render, diff, validate: the commands that need no workstation."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from provision.cli import options
from provision.cli.app import App
from provision.errors import ExitStatus, ProvisionError
from provision.offline import diff_tree, render_tree, validate_all
from provision.output import Encoding
from provision.report.offline import write_error_json

F = TypeVar("F", bound=Callable[..., Any])


def output_format(func: F) -> F:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="table for people; json (one object on standard output, also when the input is refused) for scripts.",
    )(func)


@contextmanager
def refusals_as_json(command: str, fmt: str) -> Iterator[None]:
    """With --format json, a refused input is a JSON object too (ok: false, the problems); the
    text error still goes to standard error and the exit status is unchanged."""
    try:
        yield
    except ProvisionError as exc:
        if fmt == "json":
            write_error_json(command, exc)
        raise


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
@click.option(
    "--encoding",
    type=click.Choice(["utf-16", "utf-8"]),
    default="utf-16",
    show_default=True,
    help="utf-16: the real file (UTF-16LE with BOM, CRLF), as MicroSIP reads it. utf-8: a copy for review "
    "and git (no BOM, LF line ends); never one to put on a workstation.",
)
@output_format
@click.pass_obj
def render(
    app: App,
    inventory: Path,
    out: Path,
    limit: str | None,
    hosts: Sequence[str],
    include_secrets: bool,
    encoding: Encoding,
    fmt: str,
) -> None:
    """Render each (host, user)'s microsip.ini into a folder, all or nothing."""
    with refusals_as_json("render", fmt):
        result = render_tree(
            app.project, inventory, out, limit=limit, hosts=hosts, include_secrets=include_secrets, encoding=encoding
        )
    app.reporter.redact = result.redactor
    app.reporter.warnings(result.warnings)
    app.reporter.rendered(result, json_out=fmt == "json")


@click.command()
@options.inventory()
@click.option(
    "--against",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    required=True,
    help="Folder of current inis laid out as render writes them (either encoding): DIR/<host>/<user>/microsip.ini.",
)
@options.selection
@click.option("--exit-code", is_flag=True, help=f"Exit {int(ExitStatus.CHANGES)} when anything would change.")
@output_format
@click.pass_context
def diff(
    ctx: click.Context,
    inventory: Path,
    against: Path,
    limit: str | None,
    hosts: Sequence[str],
    exit_code: bool,
    fmt: str,
) -> None:
    """Show, key by key, what a push would change in the inis under DIR (passwords masked)."""
    app: App = ctx.obj
    with refusals_as_json("diff", fmt):
        result = diff_tree(app.project, inventory, against, limit=limit, hosts=hosts)
    app.reporter.redact = result.redactor
    app.reporter.warnings(result.warnings)
    app.reporter.diff(result, json_out=fmt == "json")
    if result.failed:
        ctx.exit(ExitStatus.FAILED)
    if exit_code and result.changed:
        ctx.exit(ExitStatus.CHANGES)


@click.command()
@options.inventory(required=False)
@output_format
@click.pass_obj
def validate(app: App, inventory: Path | None, fmt: str) -> None:
    """Check profiles, templates and, with --inventory, every target and its secrets."""
    with refusals_as_json("validate", fmt):
        result = validate_all(app.project, inventory)
    app.reporter.warnings(result.warnings)
    app.reporter.validated(result, json_out=fmt == "json")
