"""`provision lab up|down`: the simulated fleet, in the background, for trying provision."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from provision.cli.app import App
from provision.errors import ProvisionError, display_path

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
@lab_dir
@click.pass_obj
def up(app: App, hosts: int, users: int, latency: float, folder: Path) -> None:
    """Start the lab in the background and write an inventory for it."""
    if _running(folder):
        raise ProvisionError(f"a lab is already up in {display_path(folder)}; `provision lab down` stops it")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    log = open(folder / "lab.log", "wb")  # noqa: SIM115 - handed to the child process
    child = subprocess.Popen(  # noqa: S603 - our own module, with our own arguments
        [sys.executable, "-m", "provision.lab.daemon", str(folder), str(hosts), str(users), str(latency)],
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
