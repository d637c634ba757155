"""`provision`: the command group, global options and the one place errors are turned into exits."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

import provision
from provision.cli import checks, doctor, lab, offline, profiles, remote
from provision.cli.app import App, make_reporter
from provision.errors import ExitStatus, ProvisionError
from provision.project import Project
from provision.secrets import read_env_file


class ProvisionGroup(click.Group):
    """Turns ProvisionError into one screen of text and its exit status; bugs keep their traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ProvisionError as exc:
            reporter = ctx.obj.reporter if isinstance(ctx.obj, App) else make_reporter()
            reporter.error(exc)
            ctx.exit(exc.exit_status)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(ExitStatus.INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception:  # noqa: BLE001 - the last resort: a bug, shown as one
            traceback.print_exc()
            click.echo(
                f"\nThis is a bug in provision {provision.__version__}; please report it with the traceback above.",
                err=True,
            )
            ctx.exit(ExitStatus.INTERNAL)


@click.group(cls=ProvisionGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--profiles",
    "profiles_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("profiles"),
    show_default=True,
    envvar="PROVISION_PROFILES",
    help="Folder of profile files (<name>.yaml). Env: PROVISION_PROFILES.",
)
@click.option(
    "--templates",
    "templates_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    envvar="PROVISION_TEMPLATES",
    help="Folder of your own templates; the built-in ones fill in what it lacks. "
    "Default: ./templates if it exists. Env: PROVISION_TEMPLATES.",
)
@click.option(
    "--env-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Read NAME=VALUE lines for env: secret references; they take precedence over the environment.",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path(".provision/state.db"),
    show_default=True,
    envvar="PROVISION_STATE",
    help="The controller's record of pushes (SQLite). Env: PROVISION_STATE.",
)
@click.version_option(provision.__version__, "--version", prog_name="provision")
@click.pass_context
def cli(
    ctx: click.Context,
    profiles_dir: Path,
    templates_dir: Path | None,
    env_file: Path | None,
    state_path: Path,
) -> None:
    """Roll out and look after the MicroSIP softphone on Windows workstations.

    Run it in your config directory (profiles/, templates/, an inventory), as with Ansible.
    """
    if templates_dir is None and Path("templates").is_dir():
        templates_dir = Path("templates")
    environ: Mapping[str, str] = dict(os.environ)
    if env_file is not None:
        environ = {**environ, **read_env_file(env_file)}
    ctx.obj = App(Project(profiles_dir, templates_dir, state_path, environ, Path.cwd()), make_reporter())


cli.add_command(offline.render)
cli.add_command(offline.diff)
cli.add_command(offline.validate)
cli.add_command(profiles.profiles)
cli.add_command(remote.push_command)
cli.add_command(remote.rollback_command)
cli.add_command(checks.health_command)
cli.add_command(checks.smoke_command)
cli.add_command(lab.lab)
cli.add_command(doctor.doctor_command)


def main() -> None:
    cli.main(prog_name="provision", standalone_mode=True)
    sys.exit(0)  # pragma: no cover
