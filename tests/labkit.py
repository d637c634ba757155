"""A small lab fleet for a test, a way to run the CLI against it in this process, and a transport
straight to one simulated host (no HTTP) for tests of the agent itself."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from provision.cli.main import cli
from provision.lab.fleet import Fleet
from provision.lab.host import SimulatedHost
from provision.lab.programs import Program, start_program
from provision.transport.base import Output


def host_name(index: int) -> str:
    """The name the lab gives its index-th workstation (from 1)."""
    return f"lab-{index:03d}"


@dataclass
class Lab:
    fleet: Fleet
    root: Path  # the config directory: profiles/, state, reports

    @property
    def profiles(self) -> Path:
        return self.root / "profiles"

    def run(self, *args: str, env_file: Path | None = None) -> Result:
        """provision --env-file lab.env <args> -i inventory.yaml, as an admin would type it."""
        command = [
            "--profiles",
            str(self.profiles),
            "--state",
            str(self.root / "state.db"),
            "--env-file",
            str(env_file or self.fleet.env_file),
            *args,
            "-i",
            str(self.fleet.inventory),
        ]
        return CliRunner().invoke(cli, command, catch_exceptions=False)

    def push(self, *args: str) -> Result:
        return self.run("push", "--timeout", "20", *args)

    def report(self, *args: str) -> dict[str, Any]:
        path = self.root / "report.json"
        result = self.push("--report", str(path), *args)
        data: dict[str, Any] = json.loads(path.read_text("utf-8"))
        data["exit_code"] = result.exit_code
        data["output"] = result.output
        return data

    def host(self, name: str) -> SimulatedHost:
        return self.fleet.host(name)

    def ini(self, host: str, user: str) -> bytes | None:
        return self.fleet.host(host).read_ini(user)

    def user(self, host: str, index: int = 0) -> str:
        return list(self.fleet.host(host).users.values())[index].name

    def ops(self) -> dict[str, int]:
        """WS-Management operations per host (Create, Command, Send, Receive, Signal, Delete)."""
        return {
            name: sum(n for key, n in host.stats.items() if key.startswith("action_"))
            for name, host in self.fleet.hosts.items()
        }

    def reset_counts(self) -> None:
        for host in self.fleet.hosts.values():
            host.stats.clear()


@contextmanager
def running_lab(tmp_path: Path, examples: Path, hosts: int = 4, users: int = 2) -> Iterator[Lab]:
    root = tmp_path / "project"
    shutil.copytree(examples, root / "profiles")
    fleet = Fleet(tmp_path / "lab", hosts=hosts, users_per_host=users)
    for host in fleet.hosts.values():
        host.wait_scale = 0.05  # a MicroSIP that never closes is given up on after 0.5 s, not 10
    fleet.start()
    try:
        yield Lab(fleet, root)
    finally:
        fleet.stop()


class DirectTransport:
    """Runs the lab's program for the command line without HTTP, recording what is sent."""

    def __init__(self, host: SimulatedHost) -> None:
        self.host = host
        self.command_lines: list[str] = []
        self.sent: list[bytes] = []

    def start(self, command: str, arguments: list[str]) -> DirectCommand:
        line = " ".join(arguments)
        self.command_lines.append(f"{command} {line}")
        return DirectCommand(start_program(self.host, command, line, False), self.sent)

    def set_deadline(self, deadline: float) -> None:
        self.deadline = deadline

    def close(self) -> None:
        pass


class DirectCommand:
    def __init__(self, program: Program, sent: list[bytes]) -> None:
        self.program = program
        self.sent = sent

    def send(self, data: bytes, *, end: bool = False) -> None:
        self.sent.append(data)
        self.program.feed(data, end)

    def receive(self) -> Output:
        p = self.program
        deadline = time.monotonic() + 5  # the agent answers from a thread of its own, as a process would
        while not (p.stdout or p.stderr or p.done) and time.monotonic() < deadline:
            time.sleep(0.001)
        out = Output(bytes(p.stdout), bytes(p.stderr), p.done, p.exit_code)
        p.stdout.clear()
        p.stderr.clear()
        return out
