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
        help="Inventory file (YAML). Env: PROVISION_INVENTORY.",
    )


def selection(func: F) -> F:
    func = click.option(
        "--limit",
        "-l",
        metavar="PATTERN",
        shell_complete=completion.complete_pattern,
        help="Hosts and groups to act on: names, globs, '!' to exclude, comma-separated "
        "(e.g. 'sales,ws-hq-*,!ws-hq-03').",
    )(func)
    return click.option(
        "--host",
        "hosts",
        multiple=True,
        metavar="NAME",
        shell_complete=completion.complete_hosts,
        help="Act on this host only (repeatable).",
    )(func)
