"""`provision`: the command group, global options and the one place errors are turned into exits."""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

import provision
from provision.cli import checks, doctor, inventory, lab, offline, profiles, remote
from provision.cli.app import App, add_env_file_option, apply_env_files, make_reporter
from provision.cli.config import CONFIG_ENV, CONFIG_NAME, add_environment_variables, default_map, find_config
from provision.cli.init import init
from provision.cli.runs import runs
from provision.errors import ExitStatus, ProvisionError
from provision.project import Project
from provision.state import is_postgres_url


class ProvisionGroup(click.Group):
    """Turns ProvisionError into one screen of text and its exit status; bugs keep their traceback.

    Reads the config file (provision.toml) before the command line is parsed: its values are
    the defaults of the options (the command line and PROVISION_* variables win)."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        if parent is None and "default_map" not in extra:
            try:
                found = find_config(_config_argument(args), Path.cwd())
                if found is not None:
                    extra["default_map"] = default_map(found, self)
            except ProvisionError as exc:
                make_reporter().error(exc)
                sys.exit(exc.exit_status)
        return super().make_context(info_name, args, parent, **extra)

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
    multiple=True,
    help="Read NAME=VALUE lines (secrets for env: references, PROVISION_WINRM_USER/PASSWORD); they take "
    "precedence over the environment. Repeatable, here or after the command; later files win.",
)
@click.option(
    "--state",
    "state",
    default=".provision/state.db",
    show_default=True,
    envvar="PROVISION_STATE",
    metavar="PATH|URL",
    help="The controller's state (what was pushed, runs, leases): a SQLite file, or a PostgreSQL URL "
    "(postgresql://user@host/db) that several admins and controllers share.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar=CONFIG_ENV,
    help=f"Config file with defaults for every option (default: ./{CONFIG_NAME}, or [tool.provision] "
    "in ./pyproject.toml).",
)
@click.option("--verbose", "-v", count=True, help="More detail: -v every host's users and checks, -vv the log too.")
@click.option("--quiet", "-q", is_flag=True, help="Only the summary line and errors.")
@click.option(
    "--log-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Append a log of the run (hosts, retries, batches; secrets redacted) to this file.",
)
@click.version_option(provision.__version__, "--version", prog_name="provision")
@click.pass_context
def cli(
    ctx: click.Context,
    profiles_dir: Path,
    templates_dir: Path | None,
    env_file: tuple[Path, ...],
    state: str,
    config_file: Path | None,
    verbose: int,
    quiet: bool,
    log_file: Path | None,
) -> None:
    """Roll out and look after the MicroSIP softphone on Windows workstations.

    Run it in your config directory (profiles/, templates/, an inventory), as with Ansible.
    """
    if templates_dir is None and Path("templates").is_dir():
        templates_dir = Path("templates")
    environ: Mapping[str, str] = dict(os.environ)
    reporter = make_reporter(-1 if quiet else verbose)
    location: str | Path = state if is_postgres_url(state) else Path(state)
    ctx.obj = App(Project(profiles_dir, templates_dir, location, environ, Path.cwd()), reporter)
    if log_file is not None:
        try:
            handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(f"cannot write {log_file}: {exc.strerror}", param_hint="--log-file") from None
        reporter.log_to(handler)
        ctx.call_on_close(lambda: _close_log(handler))
    if verbose > 1:
        stream = logging.StreamHandler(sys.stderr)
        reporter.log_to(stream)
        ctx.call_on_close(lambda: _close_log(stream))
    apply_env_files(ctx.obj, env_file)


cli.add_command(offline.render)
cli.add_command(offline.diff)
cli.add_command(offline.validate)
cli.add_command(profiles.profiles)
cli.add_command(inventory.list_hosts_command)
cli.add_command(inventory.schema)
cli.add_command(remote.push_command)
cli.add_command(remote.rollback_command)
cli.add_command(checks.health_command)
cli.add_command(checks.smoke_command)
cli.add_command(lab.lab)
cli.add_command(doctor.doctor_command)
cli.add_command(init)
cli.add_command(runs)


def _close_log(handler: logging.Handler) -> None:
    logging.getLogger("provision").removeHandler(handler)
    handler.close()


add_env_file_option(cli)
add_environment_variables(cli)


def _config_argument(args: Sequence[str]) -> str | None:
    """--config FILE or --config=FILE among the top command's own options (before the command)."""
    for index, arg in enumerate(args):
        if arg == "--config" and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--config="):
            return arg.partition("=")[2]
        if not arg.startswith("-"):
            break
    return None


def main() -> None:
    try:
        cli.main(prog_name="provision", standalone_mode=True)
    except SystemExit as exc:
        if exc.code == ExitStatus.INTERRUPTED:
            # The run was interrupted and has said what it did: another Ctrl-C while Python
            # shuts down must not turn that into a traceback or a death by signal.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise
    sys.exit(0)  # pragma: no cover
