"""`python -m provision.lab.daemon DIR HOSTS USERS LATENCY_MS [FAULTS.json]`: a lab that runs until SIGTERM.

HOSTS is a number (lab-001, lab-002, ...), or a JSON file for `lab up -i`: {"hosts": [HostSpec
as JSON], "inventory": the inventory to write back, pointed at the lab}; USERS is then unused.

FAULTS.json maps host-name patterns (globs) to fault settings, applied in order, and
`users` to settings of those hosts' users (see provision/lab/faults.py and docs/commands/lab.md):
{"*": {"powershell_start_ms": 800}, "lab-00[12]": {"refuse": true},
 "lab-003": {"users": {"*b": {"hive_loaded": false}}}}.

SIGUSR1 writes DIR/stats.json: each host's request and WS-Management action counts.

What `provision lab up` starts in the background. It writes DIR/lab.pid once every
endpoint listens, so the caller knows when to go on, and removes it on the way out.
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from provision.ini import encode_ini
from provision.lab.faults import problems
from provision.lab.fleet import Fleet, HostSpec
from provision.lab.host import SimulatedHost


def main(argv: list[str]) -> int:
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
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: _dump_stats(fleet, folder / "stats.json"))
    fleet.start()
    pid_file = folder / "lab.pid"
    pid_file.write_text(f"{os.getpid()}\n", "utf-8")
    try:
        while not stop.wait(3600):
            pass
    finally:
        fleet.stop()
        pid_file.unlink(missing_ok=True)
    return 0


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
    data = {name: dict(host.stats) for name, host in fleet.hosts.items()}
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(data), "utf-8")
    temp.replace(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
