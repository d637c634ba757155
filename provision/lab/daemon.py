"""`python -m provision.lab.daemon DIR HOSTS USERS LATENCY_MS`: a lab that runs until SIGTERM.

What `provision lab up` starts in the background. It writes DIR/lab.pid once every
endpoint listens, so the caller knows when to go on, and removes it on the way out.
"""

from __future__ import annotations

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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
