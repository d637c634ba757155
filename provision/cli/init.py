"""`provision init [DIR]`: a config directory to start from."""

from __future__ import annotations

from pathlib import Path

import click

from provision.cli.app import App
from provision.errors import display_path
from provision.init import init_project


@click.command()
@click.argument("folder", type=click.Path(path_type=Path, dir_okay=True, file_okay=False), default=Path("."))
@click.pass_obj
def init(app: App, folder: Path) -> None:
    """Make a config directory to start from: profiles, an inventory, .env, provision.toml."""
    written = init_project(folder)
    where = display_path(folder)
    app.reporter.line(f"Wrote {len(written)} files into {where}/:")
    for name in written:
        app.reporter.line(f"  {name}")
    go = "" if where in (".", "") else f"cd {where} && "
    app.reporter.line("Next: put your PBX in profiles/base.yaml, your workstations in inventory.yaml,")
    app.reporter.line("the SIP passwords in .env, then:")
    app.reporter.line(f"  {go}provision validate")
    app.reporter.line("  provision lab up -i inventory.yaml      # simulated workstations to try it on")
