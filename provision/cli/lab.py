"""`provision lab up|down`: the simulated fleet, in the background, for trying provision."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from provision.cli.app import App
from provision.errors import ConfigError, ProvisionError, display_path
from provision.lab.faults import problems
from provision.model.source import load_yaml

DEFAULT_DIR = Path(".provision/lab")
START_TIMEOUT = 120.0


lab_dir = click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_DIR,
    show_default=True,
    help="Where the lab keeps its workstations, inventory, credentials and test CA.",
)


@click.group()
def lab() -> None:
    """A fleet of simulated Windows workstations on loopback, to try provision on."""


def _running(folder: Path) -> int | None:
    try:
        pid = int((folder / "lab.pid").read_text("utf-8").strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


@lab.command()
@click.option("--hosts", "-n", type=click.IntRange(1, 5000), default=10, show_default=True, help="Workstations.")
@click.option("--users", type=click.IntRange(1, 9), default=1, show_default=True, help="Windows users on each.")
@click.option("--latency", type=click.FloatRange(0, 5000), default=0, help="Milliseconds added to every request.")
@click.option(
    "--faults",
    "faults_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="YAML: host-name patterns to the faults of those hosts (see docs/commands/lab.md).",
)
@lab_dir
@click.pass_obj
def up(app: App, hosts: int, users: int, latency: float, faults_file: Path | None, folder: Path) -> None:
    """Start the lab in the background and write an inventory for it."""
    faults = read_faults(faults_file) if faults_file is not None else None
    if _running(folder):
        raise ProvisionError(f"a lab is already up in {display_path(folder)}; `provision lab down` stops it")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    arguments = [str(folder), str(hosts), str(users), str(latency)]
    if faults is not None:
        (folder / "faults.json").write_text(json.dumps(faults), "utf-8")
        arguments.append(str(folder / "faults.json"))
    log = open(folder / "lab.log", "wb")  # noqa: SIM115 - handed to the child process
    child = subprocess.Popen(  # noqa: S603 - our own module, with our own arguments
        [sys.executable, "-m", "provision.lab.daemon", *arguments],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while not (folder / "lab.pid").exists():
        if child.poll() is not None:
            raise ProvisionError(f"the lab did not start; see {display_path(folder / 'lab.log')}")
        if time.monotonic() > deadline:
            child.terminate()
            raise ProvisionError(f"the lab did not start within {START_TIMEOUT:.0f} s")
        time.sleep(0.1)
    where = display_path(folder)
    app.reporter.line(f"Lab up: {hosts} simulated workstations (WinRM over HTTPS and HTTP), in {where}/")
    app.reporter.line(f"  inventory:   {where}/inventory.yaml")
    app.reporter.line(f"  credentials: {where}/lab.env (throwaway; loopback only)")
    app.reporter.line(f"Try:  provision --env-file {where}/lab.env push -i {where}/inventory.yaml")
    app.reporter.line("Stop: provision lab down")


def read_faults(path: Path) -> dict[str, Any]:
    """A faults file, checked: an unknown fault or a wrong value is an error naming file and line."""
    located = load_yaml(path)
    found = [located.problem(where, message) for where, message in problems(located.data)]
    if found:
        raise ConfigError(found, summary=f"{len(found)} problem{'s' if len(found) != 1 else ''} in the lab faults")
    data: dict[str, Any] = located.data
    return data


@lab.command()
@lab_dir
@click.pass_obj
def down(app: App, folder: Path) -> None:
    """Stop the lab started by `lab up`."""
    pid = _running(folder)
    if pid is None:
        app.reporter.line(f"No lab is up in {display_path(folder)}.")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while _running(folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _running(folder):
        os.kill(pid, signal.SIGKILL)
        (folder / "lab.pid").unlink(missing_ok=True)
    app.reporter.line("Lab down.")
