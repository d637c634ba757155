"""`python -m provision.lab.daemon DIR HOSTS USERS LATENCY_MS [FAULTS.json]`: a lab that runs until SIGTERM.

FAULTS.json maps host-name patterns (globs) to fault settings, applied in order:
{"*": {"powershell_start_ms": 800}, "lab-00[12]": {"refuse": true}}.

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

from provision.lab.fleet import Fleet


def main(argv: list[str]) -> int:
    folder, hosts, users, latency = Path(argv[0]), int(argv[1]), int(argv[2]), float(argv[3])
    fleet = Fleet(folder, hosts, users_per_host=users)
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


def apply_faults(fleet: Fleet, spec: dict[str, dict[str, object]]) -> None:
    """Set faults on the hosts whose names match each pattern, in the order given."""
    for pattern, settings in spec.items():
        for name, host in fleet.hosts.items():
            if fnmatch.fnmatchcase(name, pattern):
                for field, value in settings.items():
                    if not hasattr(host.faults, field):
                        raise SystemExit(f"unknown lab fault {field!r}")
                    setattr(host.faults, field, value)  # refuse is honoured when the fleet starts


def _dump_stats(fleet: Fleet, path: Path) -> None:
    """On SIGUSR1: every host's counters (requests, WS-Management actions) as JSON, for benchmarks."""
    data = {name: dict(host.stats) for name, host in fleet.hosts.items()}
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(data), "utf-8")
    temp.replace(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
