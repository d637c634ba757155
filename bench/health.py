"""Health benchmark: a whole-fleet `provision health` pass over N lab workstations.

The lab runs in a child process with injected latency; this process is the controller.
The fleet is pushed first (so every check has a record to compare with), then health runs
twice. Printed: wall time, WS-Management operations and HTTP requests per host (counted by
the lab), and the ratio to the latency limit (HTTP requests per host x latency x
ceil(hosts / forks)). Goal: 500 hosts in under 30 s.

    python bench/health.py                        # 500 hosts, 30 ms, --forks 64
"""

from __future__ import annotations

import argparse
import math
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from push import ROOT, lab_stats, per_host, start_lab  # the sibling benchmark's lab helpers

GOAL_SECONDS = 30.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--latency", type=float, default=30.0, help="milliseconds per request")
    parser.add_argument("--forks", type=int, default=64)
    args = parser.parse_args()

    from provision.inspection import health, summary
    from provision.project import Project
    from provision.push import PushOptions
    from provision.rollout import Credentials, RunSettings, push, winrm_connect
    from provision.secrets import Secret, read_env_file

    work = Path(tempfile.mkdtemp(prefix="provision-bench-health-"))
    child = None
    try:
        shutil.copytree(ROOT / "profiles", work / "profiles")
        child = start_lab(work / "lab", args.hosts, args.latency)
        inventory = work / "lab" / "inventory.yaml"
        env = read_env_file(work / "lab" / "lab.env")
        project = Project(work / "profiles", None, work / "state.db", env, work)
        connect = winrm_connect(Credentials(env["PROVISION_WINRM_USER"], Secret(env["PROVISION_WINRM_PASSWORD"])))
        settings = RunSettings(forks=args.forks)
        push(project, inventory, connect, PushOptions(), settings)
        print(f"lab: {args.hosts} hosts, {args.latency:g} ms per request, --forks {args.forks}; pushed once")
        rounds = math.ceil(args.hosts / args.forks)
        header = ("run", "wall s", "goal s", "ops/host", "http/host", "limit s", "ratio")
        print("{:<8} {:>7} {:>7} {:>9} {:>10} {:>8} {:>6} summary".format(*header))

        for name in ("health 1", "health 2"):
            before = lab_stats(child, work / "lab")
            clock = time.monotonic()
            run = health(project, inventory, connect, PushOptions(), settings)
            wall = time.monotonic() - clock
            ops, http, _ = per_host(before, lab_stats(child, work / "lab"))
            limit = http * args.latency / 1000 * rounds
            print(
                f"{name:<8} {wall:7.2f} {GOAL_SECONDS:7.0f} {ops:9.2f} {http:10.2f} {limit:8.2f} {wall / limit:6.2f} "
                f"{summary(run)}"
            )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"controller peak memory: {peak:.0f} MB")
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
