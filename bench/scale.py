"""Scale benchmark: the push at 500, 2,000 and 5,000 hosts, and what that says about 50,000 and 100,000.

For each size a fresh lab (one user per host, --latency ms per request) runs in a child
process, and the controller in another, so that each size's peak memory is its own. The
controller prepares the run (profiles, inventory, rendering), pushes every host (first push:
all changed) and pushes again (nothing changed). Printed per size: wall time of each push,
controller CPU per host, the lab's CPU per host, the controller's peak memory (RSS), and
the growth from the smallest to the largest size against the growth in hosts (linear: the
same factor; 5,000 / 500 = 10x).

Then a projection for 50,000 and 100,000 hosts on an 8-core controller against real Windows
(no lab on the controller's cores), computed as docs/performance.md explains:

    cpu_bound     = hosts x controller CPU per host / (cores x 0.8)         (workers on every core, 80 % useful)
    latency_bound = ceil(hosts / concurrent) x (powershell start + http requests per host x RTT)
    wall          = prepare time per host x hosts + max(cpu_bound, latency_bound)
    memory        = controller memory at the largest size + slope per host x (hosts - largest size)

with CPU per host, prepare time and memory slope measured here (this machine's cores stand in
for the 8 cores: a faster controller only makes the figures better).

    python bench/scale.py                         # 500, 2,000 and 5,000 hosts (about 4 minutes here)
    python bench/scale.py --sizes 200,2000 --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from push import ROOT, lab_stats, per_host, process_cpu, start_lab  # the sibling benchmark's lab helpers

CORES = 8
USEFUL = 0.8  # share of each core a worker turns into pushes (threads, GIL hand-offs, the reporter)
RTT_MS = 30.0
PS_START = {"fast": 0.5, "typical": 0.8, "slow": 1.5}  # powershell.exe start on Windows 5.1, seconds


def controller(work: Path, forks: int, lab_pid: int) -> dict[str, Any]:
    """The controller's side, in its own process: prepare, first push, unchanged push."""
    from provision.project import Project, prepare
    from provision.push import PushOptions
    from provision.rollout import Credentials, RunSettings, push, winrm_connect
    from provision.secrets import Secret, read_env_file

    inventory = work / "lab" / "inventory.yaml"
    env = read_env_file(work / "lab" / "lab.env")
    project = Project(work / "profiles", None, work / "state.db", env, work)
    connect = winrm_connect(Credentials(env["PROVISION_WINRM_USER"], Secret(env["PROVISION_WINRM_PASSWORD"])))
    clock, cpu = time.monotonic(), time.process_time()
    prepared = prepare(project, inventory, None, ())
    hosts = len({r.target.host for r in prepared.rendered})
    result: dict[str, Any] = {
        "hosts": hosts,
        "prepare_s": round(time.monotonic() - clock, 3),
        "prepare_cpu_ms_per_host": round((time.process_time() - cpu) / hosts * 1000, 3),
    }
    del prepared
    for name in ("first push", "unchanged"):
        lab_before = process_cpu(lab_pid)
        clock, cpu = time.monotonic(), time.process_time()
        run = push(project, inventory, connect, PushOptions(), RunSettings(forks=forks))
        wall, used = time.monotonic() - clock, time.process_time() - cpu
        statuses: dict[str, int] = {}
        for host in run.hosts:
            statuses[host.status] = statuses.get(host.status, 0) + 1
        result[name] = {
            "wall_s": round(wall, 2),
            "controller_cpu_ms_per_host": round(used / hosts * 1000, 2),
            "lab_cpu_ms_per_host": round((process_cpu(lab_pid) - lab_before) / hosts * 1000, 2),
            "statuses": statuses,
        }
        del run
    result["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def one_size(hosts: int, latency: float, forks: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="provision-bench-scale-"))
    lab = None
    try:
        shutil.copytree(ROOT / "profiles", work / "profiles")
        clock = time.monotonic()
        lab = start_lab(work / "lab", hosts, latency)
        lab_up = time.monotonic() - clock
        before = lab_stats(lab, work / "lab")
        child = subprocess.run(
            [sys.executable, __file__, "--controller", str(work), str(forks), str(lab.pid)],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise SystemExit(f"the controller failed at {hosts} hosts:\n{child.stderr}")
        result: dict[str, Any] = json.loads(child.stdout.splitlines()[-1])
        _, http, _ = per_host(before, lab_stats(lab, work / "lab"))
        result["http_per_host_both_pushes"] = round(http, 2)
        result["lab_up_s"] = round(lab_up, 1)
        return result
    finally:
        if lab is not None:
            lab.terminate()
            lab.wait(timeout=120)
        shutil.rmtree(work, ignore_errors=True)


def projection(results: list[dict[str, Any]], concurrent: int) -> list[dict[str, Any]]:
    """50,000 and 100,000 hosts on CORES cores against real Windows, from the measured figures."""
    small, large = results[0], results[-1]
    slope = (large["peak_mb"] - small["peak_mb"]) / max(1, large["hosts"] - small["hosts"])  # MB per host
    prepare = large["prepare_s"] / large["hosts"]
    http = {"unchanged": 6, "first push": 9}  # lean NTLM over HTTPS, measured by bench/push.py
    rows = []
    for hosts in (50_000, 100_000):
        for name in ("unchanged", "first push"):
            cpu_ms = large[name]["controller_cpu_ms_per_host"]
            cpu_bound = hosts * cpu_ms / 1000 / (CORES * USEFUL)
            row: dict[str, Any] = {"hosts": hosts, "push": name, "cpu_bound_s": round(cpu_bound)}
            for label, start in PS_START.items():
                per_host = start + http[name] * RTT_MS / 1000
                latency_bound = math.ceil(hosts / concurrent) * per_host
                row[f"wall_{label}_s"] = round(prepare * hosts + max(cpu_bound, latency_bound))
                row[f"concurrent_to_be_cpu_bound_{label}"] = math.ceil(per_host * CORES * USEFUL * 1000 / cpu_ms)
            row["memory_mb"] = round(large["peak_mb"] + slope * (hosts - large["hosts"]))
            rows.append(row)
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--controller":
        work, forks, lab_pid = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(controller(work, forks, lab_pid)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="500,2000,5000", help="host counts, comma-separated")
    parser.add_argument("--latency", type=float, default=30.0, help="milliseconds per request")
    parser.add_argument("--forks", type=int, default=64)
    parser.add_argument("--concurrent", type=int, default=1024, help="hosts at a time for the projection")
    parser.add_argument("--json", action="store_true", help="one JSON object per size and per projection")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",") if n]
    started = time.monotonic()
    if not args.json:
        print(f"{args.latency:g} ms per request, --forks {args.forks}, 1 user per host, {os.cpu_count()} cores")
        print(
            f"{'hosts':>6} {'lab up s':>8} {'prepare s':>9} {'first s':>8} {'ctl ms':>7} {'lab ms':>7} "
            f"{'unchanged s':>11} {'ctl ms':>7} {'lab ms':>7} {'peak MB':>8}"
        )
    results = []
    for hosts in sizes:
        r = one_size(hosts, args.latency, args.forks)
        results.append(r)
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        first, same = r["first push"], r["unchanged"]
        print(
            f"{r['hosts']:>6} {r['lab_up_s']:8.1f} {r['prepare_s']:9.2f} {first['wall_s']:8.2f} "
            f"{first['controller_cpu_ms_per_host']:7.2f} {first['lab_cpu_ms_per_host']:7.2f} "
            f"{same['wall_s']:11.2f} {same['controller_cpu_ms_per_host']:7.2f} {same['lab_cpu_ms_per_host']:7.2f} "
            f"{r['peak_mb']:8.1f}",
            flush=True,
        )
    small, large = results[0], results[-1]
    factor = large["hosts"] / small["hosts"]
    growth = {
        "hosts_factor": round(factor, 2),
        "first_push_wall_factor": round(large["first push"]["wall_s"] / small["first push"]["wall_s"], 2),
        "unchanged_wall_factor": round(large["unchanged"]["wall_s"] / small["unchanged"]["wall_s"], 2),
        "peak_memory_factor": round(large["peak_mb"] / small["peak_mb"], 2),
        "memory_mb_per_1000_hosts": round(
            (large["peak_mb"] - small["peak_mb"]) / (large["hosts"] - small["hosts"]) * 1000, 1
        ),
    }
    rows = projection(results, args.concurrent)
    if args.json:
        print(json.dumps({"growth": growth}))
        for row in rows:
            print(json.dumps({"projection": row}))
    else:
        print(
            f"growth {small['hosts']} -> {large['hosts']} hosts ({factor:g}x): first push wall "
            f"{growth['first_push_wall_factor']}x, unchanged wall {growth['unchanged_wall_factor']}x, peak memory "
            f"{growth['peak_memory_factor']}x ({growth['memory_mb_per_1000_hosts']} MB per 1,000 hosts)"
        )
        print(
            f"projection: {CORES} cores, {args.concurrent} hosts at a time, {RTT_MS:g} ms RTT, "
            f"powershell.exe start 0.5 / 0.8 / 1.5 s"
        )
        for row in rows:
            print(
                f"  {row['hosts']:>7} {row['push']:<10} cpu-bound {row['cpu_bound_s']:>5} s; wall "
                f"{row['wall_fast_s']} / {row['wall_typical_s']} / {row['wall_slow_s']} s; "
                f"memory {row['memory_mb']} MB; hosts at a time to be CPU-bound "
                f"{row['concurrent_to_be_cpu_bound_fast']} / {row['concurrent_to_be_cpu_bound_typical']} / "
                f"{row['concurrent_to_be_cpu_bound_slow']}"
            )
    if not args.json:
        print(f"bench took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
