"""provision runs: the runs recorded in the state, newest first, and one run in detail."""

from __future__ import annotations

import json

import click

from provision.cli.app import App
from provision.runs import detail_data, parse_when, run_data, run_detail
from provision.state import RUN_STATUSES, open_store

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people; json (on standard output) for scripts.",
)


@click.group(invoke_without_command=True)
@click.option("--command", "command", type=click.Choice(["push", "rollback", "health", "smoke"]), help="Only these.")
@click.option("--status", type=click.Choice(RUN_STATUSES), help="Only runs that ended so.")
@click.option("--group", metavar="GROUP", help="Only runs that took hosts of this inventory group.")
@click.option("--since", metavar="WHEN", help="Started at or after: 2026-11-29, 2026-11-29T08:00, or 12h, 7d ago.")
@click.option("--until", metavar="WHEN", help="Started before (same forms).")
@click.option("--last", "last", type=click.IntRange(1, 100_000), default=20, show_default=True, help="How many.")
@format_option
@click.pass_context
def runs(
    ctx: click.Context,
    command: str | None,
    status: str | None,
    group: str | None,
    since: str | None,
    until: str | None,
    last: int,
    fmt: str,
) -> None:
    """List recorded runs, newest first (`runs show RUN` for one in detail)."""
    if ctx.invoked_subcommand is not None:
        return
    app: App = ctx.obj
    with open_store(app.project.state_path, read_only=True) as store:
        found = store.runs(
            command=command,
            status=status,
            group=group,
            since=parse_when(since, option="--since") if since else None,
            until=parse_when(until, option="--until") if until else None,
            limit=last,
        )
    if fmt == "json":
        click.echo(json.dumps({"runs": [run_data(r) for r in found]}, indent=2, ensure_ascii=False))
    else:
        app.reporter.runs(found)


@runs.command()
@click.argument("run_id", metavar="RUN")
@click.option("--by-group", is_flag=True, help="Add a summary per inventory group (department).")
@format_option
@click.pass_obj
def show(app: App, run_id: str, by_group: bool, fmt: str) -> None:
    """One run: its options, a summary (per group with --by-group), its failures, every host."""
    with open_store(app.project.state_path, read_only=True) as store:
        detail = run_detail(store, run_id)
    if fmt == "json":
        click.echo(json.dumps(detail_data(detail), indent=2, ensure_ascii=False))
    else:
        app.reporter.run_detail(detail, by_group=by_group)


@runs.command()
@click.option(
    "--older-than",
    "older_than",
    metavar="AGE",
    required=True,
    help="Delete runs that started before this: an age (90d, 12w) or a date (2026-01-01).",
)
@click.pass_obj
def prune(app: App, older_than: str) -> None:
    """Delete old runs from the history (what was pushed, and leases, are kept)."""
    before = parse_when(older_than, option="--older-than")
    with open_store(app.project.state_path) as store:
        count = store.prune(before)
    app.reporter.line(f"Deleted {count} run(s) that started before {before.isoformat(timespec='seconds')}.")
