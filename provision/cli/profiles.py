"""provision profiles: list, show (with where each value came from), reference, schema."""

from __future__ import annotations

from pathlib import Path

import click

from provision.cli.app import App
from provision.cli.inventory import schema_out, write_schema
from provision.errors import ProvisionError
from provision.model.reference import reference_markdown
from provision.model.schema import profile_schema
from provision.model.values import shown
from provision.project import select_targets


@click.group()
def profiles() -> None:
    """Inspect profiles and their layering."""


@profiles.command("list")
@click.pass_obj
def list_profiles(app: App) -> None:
    """List the profiles in the profiles folder."""
    store = app.project.store()
    rows = []
    for name in store.names():
        data = store.load(name).data
        extends = data.get("extends", [])
        extends = ", ".join([extends] if isinstance(extends, str) else map(str, extends))
        rows.append((name, extends, str(data.get("description") or "")))
    app.reporter.profile_names(rows)


@profiles.command()
@click.argument("name", required=False)
@click.option("--resolved", is_flag=True, help="Apply every layer and show which file set each value.")
@click.option(
    "--for",
    "for_target",
    metavar="HOST[/USER]",
    help="Show what a host's user gets: profiles plus inventory overrides (needs --inventory; implies --resolved).",
)
@click.option(
    "--inventory",
    "-i",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    envvar="PROVISION_INVENTORY",
    help="Inventory file, with --for.",
)
@click.pass_obj
def show(app: App, name: str | None, resolved: bool, for_target: str | None, inventory: Path | None) -> None:
    """Show profile NAME, or with --resolved the result of all its layers."""
    store = app.project.store()
    if for_target:
        if inventory is None:
            raise click.UsageError("--for needs --inventory")
        host, _, user = for_target.partition("/")
        _, targets = select_targets(app.project, inventory, hosts=[host])
        chosen = [t for t in targets if not user or t.user.casefold() == user.casefold()]
        if not chosen:
            raise ProvisionError(f"{shown(host)} has no user {shown(user)}")
        target = chosen[0]
        app.reporter.line(f"# {target.id}")
        app.reporter.resolved(target.resolved.located, target.resolved.chain)
        return
    if not name:
        raise click.UsageError("give a profile NAME, or --for HOST[/USER]")
    if resolved:
        result = store.resolve(store.chain([(name, None)]))
        app.reporter.warnings(result.warnings)
        app.reporter.resolved(result.located, result.chain)
    else:
        store.load(name)
        app.reporter.line(store.path(name).read_text(encoding="utf-8").rstrip())


@profiles.command()
def reference() -> None:
    """Print the profile and inventory reference (Markdown), generated from the models."""
    click.echo(reference_markdown(), nl=False)


@profiles.command()
@schema_out
def schema(out: Path | None) -> None:
    """Print the JSON Schema of a profile file, for editors (the same as `provision schema profile`)."""
    write_schema(profile_schema(), out)
