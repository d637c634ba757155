"""Options shared by several commands, defined once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from provision.cli import completion

F = TypeVar("F", bound=Callable[..., Any])


def inventory(required: bool = True) -> Callable[[F], F]:
    return click.option(
        "--inventory",
        "-i",
        "inventory",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        required=required,
        envvar="PROVISION_INVENTORY",
        help="Inventory file: provision's YAML, or an Ansible inventory (INI or YAML). Env: PROVISION_INVENTORY.",
    )


def selection(func: F) -> F:
    func = click.option(
        "--limit",
        "-l",
        metavar="PATTERN",
        shell_complete=completion.complete_pattern,
        help="Hosts and groups to act on, with Ansible's patterns: names, globs, ~regex, ':' or ',' between "
        "terms, '&' to intersect, '!' to exclude, group[0:2], @FILE (e.g. 'sales:&lyon:!ws-hq-03').",
    )(func)
    return click.option(
        "--host",
        "hosts",
        multiple=True,
        metavar="NAME",
        shell_complete=completion.complete_hosts,
        help="Act on this host only (repeatable).",
    )(func)
