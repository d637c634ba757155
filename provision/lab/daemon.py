"""A lab that runs until SIGTERM:

    python -m provision.lab.daemon [--processes N] DIR HOSTS USERS LATENCY_MS [FAULTS.json]

HOSTS is a number (lab-001, lab-002, ...), or a JSON file for `lab up -i`: {"hosts": [HostSpec
as JSON], "inventory": the inventory to write back, pointed at the lab}; USERS is then unused.

FAULTS.json maps host-name patterns (globs) to fault settings, applied in order, and
`users` to settings of those hosts' users (see provision/lab/faults.py and docs/commands/lab.md):
{"*": {"powershell_start_ms": 800}, "lab-00[12]": {"refuse": true},
 "lab-003": {"users": {"*b": {"hive_loaded": false}}}}.

SIGUSR1 writes DIR/stats.json: each host's request and WS-Management action counts.

--processes N serves the hosts from N forked processes, each with its own event loop and
every Nth host (for benchmarks: one Python process serves about one core's worth of hosts,
so a single lab process can be what limits a push on a machine with more cores). Each host
lives in one process only, so its state is as consistent as with one.

What `provision lab up` starts in the background. It writes DIR/lab.pid once every
endpoint listens, so the caller knows when to go on, and removes it on the way out.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provision.ini import encode_ini
from provision.lab.faults import problems
from provision.lab.fleet import Fleet, HostSpec
from provision.lab.host import SimulatedHost


def main(argv: list[str]) -> int:
    processes = 1
    if argv[:1] == ["--processes"]:
        processes, argv = max(1, int(argv[1])), argv[2:]
    folder, hosts, users, latency = Path(argv[0]), argv[1], int(argv[2]), float(argv[3])
    if hosts.endswith(".json"):
        spec = json.loads(Path(hosts).read_text("utf-8"))
        specs = [HostSpec.from_json(h) for h in spec["hosts"]]
        fleet = Fleet(folder, specs, inventory=spec["inventory"])
    else:
        fleet = Fleet(folder, int(hosts), users_per_host=users)
    for host in fleet.hosts.values():
        host.faults.latency_ms = latency
    if len(argv) > 4:
        apply_faults(fleet, json.loads(Path(argv[4]).read_text("utf-8")))
    if processes > 1:
        return _serve_forked(fleet, folder, processes)
    fleet.start()
    return _until_stopped(folder, lambda: _dump_stats(fleet, folder / "stats.json"), fleet.stop)


def _until_stopped(folder: Path, dump_stats: Callable[[], None], end: Callable[[], None]) -> int:
    """Once every endpoint listens: DIR/lab.pid, SIGUSR1 for the counters, and the wait for
    SIGTERM or SIGINT; then `end` and lab.pid removed."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: dump_stats())
    pid_file = folder / "lab.pid"
    pid_file.write_text(f"{os.getpid()}\n", "utf-8")
    try:
        while not stop.wait(3600):
            pass
    finally:
        end()
        pid_file.unlink(missing_ok=True)
    return 0


def _serve_forked(fleet: Fleet, folder: Path, processes: int) -> int:
    """Every Nth host served by one of N forked processes; this one waits, forwards signals
    and gathers the counters. Forked before any thread of the lab runs."""
    names = list(fleet.hosts)
    children: list[int] = []
    for k in range(processes):
        ready, told = os.pipe()
        pid = os.fork()
        if pid == 0:  # a child: never returns into the caller's code
            os.close(ready)
            code = 1
            try:
                own = set(names[k::processes])
                _serve_share(fleet, own, folder / f"stats.{k}.json", told)
                code = 0
            except BaseException:  # noqa: BLE001 - said on stderr; the parent sees the pipe close
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(told)
        children.append(pid)
        answer = os.read(ready, 1)
        os.close(ready)
        if answer != b"1":
            _end(children)
            raise SystemExit("the lab did not start: a serving process failed")
    return _until_stopped(folder, lambda: _gather_stats(children, folder), lambda: _end(children))


def _serve_share(fleet: Fleet, own: set[str], stats: Path, told: int) -> None:
    server = fleet.server
    server.endpoints = {a: e for a, e in server.endpoints.items() if e.host.name in own}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
    shared = {name: host for name, host in fleet.hosts.items() if name in own}
    signal.signal(signal.SIGUSR1, lambda *_: _write_json({n: dict(h.stats) for n, h in shared.items()}, stats))
    fleet.start()
    os.write(told, b"1")
    os.close(told)
    try:
        while not stop.wait(3600):
            pass
    finally:
        fleet.stop()


def _gather_stats(children: list[int], folder: Path) -> None:
    parts = [folder / f"stats.{k}.json" for k in range(len(children))]
    for part in parts:
        part.unlink(missing_ok=True)
    for pid in children:
        os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 30
    data: dict[str, Any] = {}
    for part in parts:
        while not part.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        if part.exists():
            data.update(json.loads(part.read_text("utf-8")))
    _write_json(data, folder / "stats.json")


def _end(children: list[int]) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def apply_faults(fleet: Fleet, spec: dict[str, dict[str, Any]]) -> None:
    """Set faults on the hosts whose names match each pattern, in the order given."""
    wrong = [f"{'.'.join(path)}: {message}" for path, message in problems(spec)]
    if wrong:
        raise SystemExit("bad lab faults: " + "; ".join(wrong))
    for pattern, settings in spec.items():
        for name, host in fleet.hosts.items():
            if not fnmatch.fnmatchcase(name, pattern):
                continue
            for field, value in settings.items():
                if field == "users":
                    _set_users(host, value)
                else:
                    setattr(host.faults, field, value)  # refuse is honoured when the fleet starts
            _set_up(host, settings)


UNREADABLE = encode_ini("[Settings]\nsingleMode=1\n[Settings]\nsingleMode=0\n")  # a section twice: no parser takes it


def _set_up(host: SimulatedHost, settings: dict[str, Any]) -> None:
    """The faults that are a state of the host rather than a setting it reads as it works."""
    folder = settings.get("provision_folder")
    if folder == "user":
        first = next(iter(host.users.values()))
        host.user_creates_folder(first.name, "C:\\ProgramData\\provision")
    elif folder == "inherited":
        host.create_directory("C:\\ProgramData\\provision\\closed")  # ProgramData's rules, inherited
    for cmdlet, message in (settings.get("cmdlet_fails") or {}).items():
        host.break_cmdlet(cmdlet, message, times=sys.maxsize)
    if "ini_switch" in settings:
        host.ini_switch = bool(settings["ini_switch"])
    if settings.get("unreadable_after_exit"):
        host.after_save.append(lambda user, ini: host.write_ini(user, UNREADABLE, ini or None))


def _set_users(host: SimulatedHost, spec: dict[str, dict[str, Any]]) -> None:
    for pattern, settings in spec.items():
        for user in host.users.values():
            if fnmatch.fnmatchcase(user.name, pattern):
                for name, value in settings.items():
                    setattr(user, name, value)
                if not user.profile_exists and host.test_path(f"C:\\Users\\{user.name}"):
                    host.remove_item(f"C:\\Users\\{user.name}")


def _dump_stats(fleet: Fleet, path: Path) -> None:
    """On SIGUSR1: every host's counters (requests, WS-Management actions) as JSON, for benchmarks."""
    _write_json({name: dict(host.stats) for name, host in fleet.hosts.items()}, path)


def _write_json(data: dict[str, Any], path: Path) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(data), "utf-8")
    temp.replace(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
