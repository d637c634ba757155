"""`python -m provision.lab.daemon DIR HOSTS USERS LATENCY_MS`: a lab that runs until SIGTERM.

SIGUSR1 writes DIR/stats.json: each host's request and WS-Management action counts.

What `provision lab up` starts in the background. It writes DIR/lab.pid once every
endpoint listens, so the caller knows when to go on, and removes it on the way out.
"""

from __future__ import annotations

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


def _dump_stats(fleet: Fleet, path: Path) -> None:
    """On SIGUSR1: every host's counters (requests, WS-Management actions) as JSON, for benchmarks."""
    data = {name: dict(host.stats) for name, host in fleet.hosts.items()}
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(data), "utf-8")
    temp.replace(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
