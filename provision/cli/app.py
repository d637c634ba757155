"""What every command receives: the project and the reporter; env files, wherever given."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import click
from rich.console import Console

from provision.cli.config import all_commands
from provision.errors import display_path
from provision.project import Project
from provision.report import Reporter
from provision.secrets import env_file_warnings, read_env_file


@dataclass
class App:
    project: Project
    reporter: Reporter
    env_sources: dict[str, Path] = field(default_factory=dict)  # which env file set each name


PIPE_WIDTH = 4000  # piped output is for scripts and logs: lines are not wrapped at 80 columns


def make_reporter(verbosity: int = 0, environ: Mapping[str, str] | None = None) -> Reporter:
    """Rich consoles for standard output and error. NO_COLOR (any value) removes every style;
    output that is not a terminal is never wrapped; TERM=dumb gets plain progress lines."""
    environ = os.environ if environ is None else environ
    plain = "NO_COLOR" in environ

    def console(stderr: bool) -> Console:
        stream = sys.stderr if stderr else sys.stdout
        terminal = stream.isatty()
        return Console(
            stderr=stderr,
            highlight=False,
            soft_wrap=True,
            color_system=None if plain else "auto",
            width=None if terminal else PIPE_WIDTH,
        )

    return Reporter(out=console(False), err=console(True), verbosity=verbosity)


def apply_env_files(app: App, files: Iterable[Path]) -> None:
    """Read env files in order into the project's environment: later files win, with a
    warning when one overrides another's value (never showing values); a file others can
    read gets a warning too (it may hold passwords)."""
    for path in files:
        values = read_env_file(path)
        app.reporter.warnings(env_file_warnings(path))
        environ = app.project.environ
        for name, value in values.items():
            earlier = app.env_sources.get(name)
            if earlier is not None and earlier != path and environ.get(name) != value:
                app.reporter.err.print(
                    f"[yellow]Warning:[/] {name} from {display_path(path)} overrides {display_path(earlier)}"
                )
            app.env_sources[name] = path
        app.project = replace(app.project, environ={**environ, **values})


def _env_files_given(ctx: click.Context, _param: click.Parameter, value: Sequence[Path]) -> None:
    if value and isinstance(ctx.obj, App):
        apply_env_files(ctx.obj, value)


def add_env_file_option(root: click.Command) -> None:
    """--env-file after any command too (`provision push --env-file lab.env ...`)."""
    for command in list(all_commands(root)):
        if isinstance(command, click.Group):
            continue
        command.params.append(
            click.Option(
                ["--env-file"],
                type=click.Path(path_type=Path, dir_okay=False, exists=True),
                multiple=True,
                expose_value=False,
                callback=_env_files_given,
                help="Read NAME=VALUE lines, as the top-level --env-file; repeatable, later files win.",
            )
        )
