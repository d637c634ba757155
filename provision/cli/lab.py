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
from provision.project import select_targets

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
@click.option(
    "--inventory",
    "-i",
    "inventory",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Build the lab from your inventory: its hosts and users, your profiles' hooks; DIR/inventory.yaml "
    "is then yours with each host pointed at the lab (your groups, profiles and passwords unchanged).",
)
@click.option("--hosts", "-n", type=click.IntRange(1, 5000), default=10, show_default=True, help="Workstations.")
@click.option("--users", type=click.IntRange(1, 9), default=1, show_default=True, help="Windows users on each.")
@click.option("--latency", type=click.FloatRange(0, 5000), default=0, help="Milliseconds added to every request.")
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Serve the workstations from this many processes (one serves about a core's worth).",
)
@click.option(
    "--faults",
    "faults_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="YAML: host-name patterns to the faults of those hosts (see docs/commands/lab.md).",
)
@lab_dir
@click.pass_context
def up(
    ctx: click.Context,
    inventory: Path | None,
    hosts: int,
    users: int,
    latency: float,
    processes: int,
    faults_file: Path | None,
    folder: Path,
) -> None:
    """Start the lab in the background and write an inventory for it."""
    app: App = ctx.obj
    source = click.core.ParameterSource.COMMANDLINE
    if inventory is not None and source in (ctx.get_parameter_source("hosts"), ctx.get_parameter_source("users")):
        raise click.UsageError("--inventory takes the hosts and users from the inventory: drop --hosts and --users")
    faults = read_faults(faults_file) if faults_file is not None else None
    spec = lab_spec(app, inventory) if inventory is not None else None
    if _running(folder):
        raise click.UsageError(f"a lab is already up in {display_path(folder)}; `provision lab down` stops it")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    arguments = [str(folder), str(hosts), str(users), str(latency)]
    if spec is not None:
        hosts = len(spec["hosts"])
        (folder / "spec.json").write_text(json.dumps(spec), "utf-8")
        arguments[1] = str(folder / "spec.json")
    if processes > 1:
        arguments = ["--processes", str(processes), *arguments]
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
    if spec is not None:  # their own secrets come from their env file (provision.toml's, or --env-file)
        app.reporter.line(f"Try:  provision push -i {where}/inventory.yaml --env-file {where}/lab.env")
    else:
        app.reporter.line(f"Try:  provision --env-file {where}/lab.env push -i {where}/inventory.yaml")
    app.reporter.line("Stop: provision lab down" + ("" if folder == DEFAULT_DIR else f" --dir {where}"))


def lab_spec(app: App, inventory: Path) -> dict[str, Any]:
    """The lab's workstations from an inventory (checked as every command checks it): each host
    with its users, the programs its users' hooks run, and a portable MicroSIP's exe; and the
    inventory itself, its users from CSV files included, to be written back pointed at the lab."""
    loaded, targets = select_targets(app.project, inventory)
    hosts: dict[str, dict[str, Any]] = {}
    for target in targets:
        entry = hosts.setdefault(target.host, {"name": target.host, "users": [], "files": [], "portable_exe": None})
        entry["users"].append(target.user)
        hooks = target.resolved.profile.hooks
        entry["files"] += [
            h.program for h in hooks.__dict__.values() if h is not None and h.program not in entry["files"]
        ]
        if target.install.mode == "portable":
            entry["portable_exe"] = target.install.exe
    for name in loaded.model.hosts:  # a host with no user is a workstation too
        hosts.setdefault(name, {"name": name, "users": [], "files": [], "portable_exe": None})
    data = loaded.model.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    data.pop("users_csv", None)  # their users and hosts are in the hosts now
    data.pop("hosts_csv", None)
    data.setdefault("hosts", {})
    for name in hosts:
        data["hosts"].setdefault(name, {})
    return {"hosts": list(hosts.values()), "inventory": data}


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
        try:
            os.killpg(pid, signal.SIGKILL)  # `lab up` made it lead its own group: its serving processes too
        except OSError:
            os.kill(pid, signal.SIGKILL)
        (folder / "lab.pid").unlink(missing_ok=True)
    app.reporter.line("Lab down.")
