"""Push benchmark: N lab workstations with injected latency, pushed with --forks F.

The lab runs in a child process (its own core); this process is the controller, as an admin
would run it. Three runs: a first push (every host changed; MicroSIP running on half of
them, so closed, re-merged and restarted), a second push (nothing changed), and a push
after a profile change. For each: wall time, WS-Management operations and HTTP requests
per host (counted by the lab), and the ratio to the latency limit

    limit = requests per host x latency x ceil(hosts / forks)

i.e. what the round trips alone cost if every fork were always busy. Goals: unchanged
push at most 6 operations per host, changed at most 10; wall time within 1.5x of the
limit and 500 hosts in under 60 s.

    python bench/push.py                          # 500 hosts, 30 ms, --forks 64
    python bench/push.py --hosts 100 --latency 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_OPS = {"first push": 10, "unchanged": 6, "profile change": 10}  # per host, at most


def start_lab(folder: Path, hosts: int, latency: float) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(
        [sys.executable, "-m", "provision.lab.daemon", str(folder), str(hosts), "1", str(latency)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (folder / "lab.pid").exists():
        if child.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the lab did not start")
        time.sleep(0.1)
    return child


def lab_stats(child: subprocess.Popen[bytes], folder: Path) -> dict[str, dict[str, int]]:
    path = folder / "stats.json"
    path.unlink(missing_ok=True)
    os.kill(child.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the lab did not report its counters")
        time.sleep(0.05)
    data: dict[str, dict[str, int]] = json.loads(path.read_text("utf-8"))
    return data


def per_host(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> tuple[float, float, int]:
    """Mean WS-Management operations and HTTP requests per host, and the most operations any host needed."""
    ops, http = [], []
    for host, counts in after.items():
        old = before.get(host, {})
        ops.append(sum(n - old.get(k, 0) for k, n in counts.items() if k.startswith("action_")))
        http.append(counts.get("requests", 0) - old.get("requests", 0))
    return sum(ops) / len(ops), sum(http) / len(http), max(ops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--latency", type=float, default=30.0, help="milliseconds per request")
    parser.add_argument("--forks", type=int, default=64)
    parser.add_argument("--auth", choices=["ntlm", "basic"], default="ntlm", help="WinRM auth, over HTTPS")
    args = parser.parse_args()

    from provision.project import Project
    from provision.push import PushOptions
    from provision.rollout import Credentials, RunSettings, push, winrm_connect
    from provision.secrets import Secret, read_env_file

    work = Path(tempfile.mkdtemp(prefix="provision-bench-push-"))
    child = None
    try:
        shutil.copytree(ROOT / "profiles", work / "profiles")
        started = time.monotonic()
        child = start_lab(work / "lab", args.hosts, args.latency)
        print(
            f"lab: {args.hosts} hosts, {args.latency:g} ms per request, up in {time.monotonic() - started:.1f} s; "
            f"{args.auth} over https, --forks {args.forks}"
        )
        inventory = work / "lab" / "inventory.yaml"
        if args.auth != "ntlm":
            inventory.write_text(inventory.read_text("utf-8").replace("auth: ntlm", f"auth: {args.auth}"), "utf-8")
        env = read_env_file(work / "lab" / "lab.env")
        project = Project(work / "profiles", None, work / "state.db", env, work)
        connect = winrm_connect(Credentials(env["PROVISION_WINRM_USER"], Secret(env["PROVISION_WINRM_PASSWORD"])))
        rounds = math.ceil(args.hosts / args.forks)
        print(
            f"{'run':<15} {'wall s':>7} {'ops/host':>9} {'max':>4} {'goal':>5} {'http/host':>10} "
            f"{'limit s':>8} {'ratio':>6} {'status'}"
        )
        for name in ("first push", "unchanged", "profile change"):
            if name == "profile change":
                sales = work / "profiles" / "sales.yaml"
                sales.write_text(sales.read_text("utf-8").replace("autoAnswer: button", "autoAnswer: all"), "utf-8")
            before = lab_stats(child, work / "lab")
            clock = time.monotonic()
            run = push(project, inventory, connect, PushOptions(), RunSettings(forks=args.forks))
            wall = time.monotonic() - clock
            after = lab_stats(child, work / "lab")
            ops, http, most = per_host(before, after)
            limit = http * args.latency / 1000 * rounds
            counts: dict[str, int] = {}
            for host in run.hosts:
                counts[host.status] = counts.get(host.status, 0) + 1
            status = ", ".join(f"{n} {s}" for s, n in counts.items())
            reasons = sorted({h.reason for h in run.hosts if h.reason})
            if reasons:
                status += " (" + "; ".join(reasons[:3]) + ")"
            print(
                f"{name:<15} {wall:7.2f} {ops:9.2f} {most:4d} {GOAL_OPS[name]:5d} {http:10.2f} "
                f"{limit:8.2f} {wall / limit:6.2f} {status}"
            )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"controller peak memory: {peak:.0f} MB; limit = http requests/host x latency x ceil(hosts/forks)")
        print(f"goals: ratio <= 1.5, {args.hosts} hosts in < 60 s")
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
