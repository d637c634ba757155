"""provision list-hosts: the hosts a selection chooses, as provision reads the inventory;
provision schema: the JSON Schemas of profile and inventory files, for editors.

(Not an `inventory` command group: `inventory` is an option's name in provision.toml.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from provision.cli import options
from provision.cli.app import App
from provision.cli.offline import output_format, refusals_as_json
from provision.model.schema import inventory_schema, profile_schema, schema_text
from provision.report.files import STDOUT, write_text
from provision.report.offline import print_host_list
from provision.targets import list_hosts


@click.command("list-hosts")
@options.inventory()
@options.selection
@output_format
@click.pass_obj
def list_hosts_command(app: App, inventory: Path, limit: str | None, hosts: Sequence[str], fmt: str) -> None:
    """List the hosts chosen (all, or by --limit and --host) with their groups and connection.

    The inventory may be provision's YAML or an Ansible inventory (INI or YAML): this shows
    how provision reads it, and what a --limit pattern selects, without touching a host."""
    with refusals_as_json("list-hosts", fmt):
        listed = list_hosts(inventory, limit, hosts)
    app.reporter.warnings(listed.warnings)
    print_host_list(app.reporter, listed, json_out=fmt == "json")


def schema_out(func: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--out",
        "-o",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Write the schema to this file (UTF-8) instead of standard output.",
    )(func)


@click.command()
@click.argument("kind", type=click.Choice(["profile", "inventory"]))
@schema_out
def schema(kind: str, out: Path | None) -> None:
    """Print the JSON Schema of a profile file or of provision's own inventory file, for editors
    (VS Code's YAML extension: `# yaml-language-server: $schema=FILE`)."""
    write_schema(profile_schema() if kind == "profile" else inventory_schema(), out)


def write_schema(document: dict[str, object], out: Path | None) -> None:
    write_text(out if out is not None else STDOUT, schema_text(document))
