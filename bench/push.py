"""Push benchmark: N lab workstations with injected latency, pushed with --forks F, transports side by side.

The lab runs in a child process; this process is the controller, as an admin would run it.
For each transport (the lean one, then stock pywinrm, each against a fresh lab) three runs:
a first push (every host changed; MicroSIP running on half of them, so closed, re-merged
and restarted), a second push (nothing changed) and a push after a profile change.
For each run:

    wall s       wall time of the push
    ops, http    WS-Management operations and HTTP requests per host (counted by the lab)
    limit s      what the round trips alone cost if every fork were always busy:
                 rounds x (http requests per host x latency + powershell start), rounds = ceil(hosts / forks)
    ratio        wall / limit (goals: unchanged <= 1.3, changed <= 1.5)
    ctl ms/host  the controller's CPU time (this process and any worker processes) / hosts
    vs stock     that CPU per host against stock pywinrm's for the same run (goals: unchanged <= 0.35,
                 changed <= 0.4)
    lab ms/host  the lab's CPU time (with its serving processes) / hosts; lab busy = lab CPU / wall
                 (one lab process is one event loop: near 100 % means the lab, not the controller,
                 is what is slow)

Then the unchanged push with 1, 2, 2 and 1 worker processes against a lab served from
--lab-processes processes (2 by default), so that the lab's one interpreter is not what the
push waits for. Then, on the lean transport: the same fleet with realistic Windows timing (powershell.exe
taking --ps-start ms to start, 800 by default; real Windows 5.1: 0.5 to 1.5 s), pushed first and
then unchanged at each of --sweep forks, to show which --forks the fleet needs; and, when
RunSettings has a `workers` field, the unchanged push with 1 and with 2 worker processes.
With --trickle, a last run measures how closely --timeout is kept against a server that
sends its replies slowly (each transport, one host, --timeout 10).

With --stores (sqlite, postgresql or both), the run's own overhead: a first and an unchanged
push with the state on each store, and the controller time spent in the store (runs, hosts
and users recorded as they finish, push records, leases taken, renewed and released) per host.
PostgreSQL comes from PROVISION_TEST_POSTGRES_URL or a throwaway cluster (as the tests do).

    python bench/push.py                          # 500 hosts, 30 ms, --forks 64 (about 3 minutes here)
    python bench/push.py --hosts 100 --latency 10 --sweep 16,64 --json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GOAL_OPS = {"first push": 10, "unchanged": 6, "profile change": 10}  # per host, at most
GOAL_RATIO = {"unchanged": 1.3}  # wall / limit; 1.5 for pushes that change hosts
GOAL_CPU = {"unchanged": 0.35}  # lean CPU / stock CPU per host; 0.4 for pushes that change hosts
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def start_lab(
    folder: Path, hosts: int, latency: float, faults: dict[str, dict[str, Any]] | None = None, processes: int = 1
) -> subprocess.Popen[bytes]:
    arguments = [sys.executable, "-m", "provision.lab.daemon", "--processes", str(processes)]
    arguments += [str(folder), str(hosts), "1", str(latency)]
    if faults:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "faults.json").write_text(json.dumps(faults), "utf-8")
        arguments.append(str(folder / "faults.json"))
    child = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
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


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process and its live children have used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / CLOCK_TICK
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            child = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if child[1] == str(pid):
            total += (int(child[11]) + int(child[12])) / CLOCK_TICK
    return total


def controller_cpu(lab_pid: int) -> float:
    """This process's CPU, plus its other children's (worker processes), live or finished; not the lab's."""
    total = time.process_time()
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    total += reaped.ru_utime + reaped.ru_stime
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == lab_pid:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICK
    return total


@dataclasses.dataclass
class Lab:
    work: Path
    child: subprocess.Popen[bytes]
    project: Any
    inventory: Path
    credentials: Any

    @property
    def folder(self) -> Path:
        return self.work / "lab"


@contextmanager
def running_lab(
    hosts: int, latency: float, auth: str, faults: dict[str, dict[str, Any]] | None = None, processes: int = 1
) -> Iterator[Lab]:
    from provision.project import Project
    from provision.rollout import Credentials
    from provision.secrets import Secret, read_env_file

    work = Path(tempfile.mkdtemp(prefix="provision-bench-push-"))
    child = None
    try:
        shutil.copytree(ROOT / "profiles", work / "profiles")
        child = start_lab(work / "lab", hosts, latency, faults, processes)
        inventory = work / "lab" / "inventory.yaml"
        if auth != "ntlm":
            inventory.write_text(inventory.read_text("utf-8").replace("auth: ntlm", f"auth: {auth}"), "utf-8")
        env = read_env_file(work / "lab" / "lab.env")
        project = Project(work / "profiles", None, work / "state.db", env, work)
        credentials = Credentials(env["PROVISION_WINRM_USER"], Secret(env["PROVISION_WINRM_PASSWORD"]))
        yield Lab(work, child, project, inventory, credentials)
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


def workers_field() -> bool:
    from provision.rollout import RunSettings

    return any(f.name == "workers" for f in dataclasses.fields(RunSettings))


def measured_push(
    lab: Lab,
    name: str,
    *,
    transport: str,
    forks: int,
    latency: float,
    ps_start_ms: float = 0.0,
    workers: int | None = None,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """One push, measured: wall, CPU of controller and lab, requests per host, statuses."""
    from provision.push import PushOptions
    from provision.rollout import RunSettings, push, winrm_connect

    connect = winrm_connect(lab.credentials, timeout=timeout, transport=transport)
    settings = RunSettings(forks=forks)
    if workers is not None:  # a field the fleet runner may have (see workers_field)
        settings = dataclasses.replace(settings, workers=workers)
    before = lab_stats(lab.child, lab.folder)
    lab_before, ctl_before = process_cpu(lab.child.pid), controller_cpu(lab.child.pid)
    clock = time.monotonic()
    run = push(lab.project, lab.inventory, connect, PushOptions(timeout=timeout), settings)
    wall = time.monotonic() - clock
    ctl = controller_cpu(lab.child.pid) - ctl_before
    lab_cpu = process_cpu(lab.child.pid) - lab_before
    after = lab_stats(lab.child, lab.folder)
    ops, http, most = per_host(before, after)
    hosts = len(run.hosts)
    rounds = math.ceil(hosts / forks)
    limit = rounds * (http * latency / 1000 + ps_start_ms / 1000)
    statuses: dict[str, int] = {}
    for host in run.hosts:
        statuses[host.status] = statuses.get(host.status, 0) + 1
    return {
        "run": name,
        "transport": transport,
        "hosts": hosts,
        "forks": forks,
        "workers": workers,
        "latency_ms": latency,
        "powershell_start_ms": ps_start_ms,
        "wall_s": round(wall, 3),
        "limit_s": round(limit, 3),
        "ratio": round(wall / limit, 2) if limit else None,
        "ops_per_host": round(ops, 2),
        "max_ops": most,
        "http_per_host": round(http, 2),
        "controller_cpu_ms_per_host": round(ctl / hosts * 1000, 2),
        "controller_cores_busy": round(ctl / wall, 2),
        "lab_cpu_ms_per_host": round(lab_cpu / hosts * 1000, 2),
        "lab_busy": round(lab_cpu / wall, 2),
        "statuses": statuses,
        "reasons": sorted({h.reason for h in run.hosts if h.reason})[:3],
    }


HEADER = (
    f"{'run':<15} {'transport':<8} {'forks':>5} {'wall s':>7} {'ops':>5} {'http':>5} {'limit s':>7} {'ratio':>5} "
    f"{'ctl ms/host':>11} {'vs stock':>8} {'lab ms/host':>11} {'lab busy':>8}  status"
)


def show(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(row), flush=True)
        return
    status = ", ".join(f"{n} {s}" for s, n in row["statuses"].items())
    if row["reasons"]:
        status += " (" + "; ".join(row["reasons"]) + ")"
    versus = f"{row['cpu_vs_stock']:.2f}" if row.get("cpu_vs_stock") is not None else "-"
    name = row["run"] if row["workers"] is None else f"{row['run']} w={row['workers']}"
    print(
        f"{name:<15} {row['transport']:<8} {row['forks']:>5} {row['wall_s']:7.2f} {row['ops_per_host']:5.1f} "
        f"{row['http_per_host']:5.1f} {row['limit_s']:7.2f} {row['ratio']:5.2f} "
        f"{row['controller_cpu_ms_per_host']:11.2f} {versus:>8} {row['lab_cpu_ms_per_host']:11.2f} "
        f"{row['lab_busy'] * 100:7.0f}%  {status}",
        flush=True,
    )


def note(text: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"note": text}), flush=True)
    else:
        print(text, flush=True)


def change_profile(lab: Lab) -> None:
    sales = lab.work / "profiles" / "sales.yaml"
    sales.write_text(sales.read_text("utf-8").replace("autoAnswer: button", "autoAnswer: all"), "utf-8")


def side_by_side(args: argparse.Namespace, show_row: Callable[[dict[str, Any]], None]) -> None:
    stock: dict[str, dict[str, Any]] = {}
    lean: dict[str, dict[str, Any]] = {}
    workers: list[dict[str, Any]] = []
    for transport, rows in (("pywinrm", stock), ("auto", lean)):
        with running_lab(args.hosts, args.latency, args.auth) as lab:
            for name in ("first push", "unchanged", "profile change"):
                if name == "profile change":
                    change_profile(lab)
                rows[name] = measured_push(lab, name, transport=transport, forks=args.forks, latency=args.latency)
            if transport == "auto" and workers_field():  # CPU-bound here: do more processes help?
                for count in (1, 2):
                    workers.append(
                        measured_push(
                            lab, "unchanged", transport="auto", forks=args.forks, latency=args.latency, workers=count
                        )
                    )
    for name in lean:
        show_row(stock[name])
        row = lean[name]
        row["cpu_vs_stock"] = round(row["controller_cpu_ms_per_host"] / stock[name]["controller_cpu_ms_per_host"], 3)
        show_row(row)
    for row in workers:
        show_row(row)


def workers_apart(args: argparse.Namespace, show_row: Callable[[dict[str, Any]], None], as_json: bool) -> None:
    """Worker processes when the lab is not what limits: the lab in --lab-processes processes.
    The unchanged push with 1, 2, 2 and 1 workers (ABBA, so a drift of the machine cancels)."""
    note(f"-- workers, with the lab in {args.lab_processes} processes (lean transport)", as_json)
    with running_lab(args.hosts, args.latency, args.auth, processes=args.lab_processes) as lab:
        measured_push(lab, "first push", transport="auto", forks=args.forks, latency=args.latency)
        for count in (1, 2, 2, 1):
            show_row(measured_push(lab, "unchanged", transport="auto", forks=args.forks, latency=args.latency,
                                   workers=count))  # fmt: skip


def windows_timing(args: argparse.Namespace, show_row: Callable[[dict[str, Any]], None], as_json: bool) -> None:
    faults = {"*": {"powershell_start_ms": args.ps_start}}
    note(f"-- with Windows timing: powershell.exe starts in {args.ps_start:g} ms (lean transport)", as_json)
    with running_lab(args.hosts, args.latency, args.auth, faults) as lab:
        common = {"transport": "auto", "latency": args.latency, "ps_start_ms": args.ps_start}
        show_row(measured_push(lab, "first push", forks=args.forks, **common))
        for forks in args.sweep:
            show_row(measured_push(lab, "unchanged", forks=forks, **common))
        if workers_field():
            for workers in (1, 2):
                show_row(measured_push(lab, "unchanged", forks=args.forks, workers=workers, **common))
        else:
            note("worker comparison unavailable: RunSettings has no `workers` field", as_json)


class TimedStore:
    """A store whose every call adds its time to `spent` (the state's share of a run)."""

    def __init__(self, store: Any, spent: dict[str, float]) -> None:
        self._store, self._spent = store, spent

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if not callable(found):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            clock = time.perf_counter()
            try:
                return found(*args, **kwargs)
            finally:
                self._spent[name] = self._spent.get(name, 0.0) + time.perf_counter() - clock

        return call

    def __enter__(self) -> TimedStore:
        return self

    def __exit__(self, *_: object) -> None:
        self._store.close()


@contextmanager
def timed_state() -> Iterator[dict[str, float]]:
    """Time every call the push makes to its state store."""
    import provision.rollout as rollout

    spent: dict[str, float] = {}
    original = rollout.open_store
    rollout.open_store = lambda location, **kw: TimedStore(original(location, **kw), spent)  # type: ignore[assignment]
    try:
        yield spent
    finally:
        rollout.open_store = original


def state_overhead(args: argparse.Namespace, as_json: bool) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from pgcluster import bench_postgres

    note("-- the run's own cost: the state store's time per host (lean transport)", as_json)
    for store in args.stores:
        with contextlib.ExitStack() as stack:
            location: str | None = None
            if store == "postgresql":
                location = stack.enter_context(bench_postgres())
                if location is None:
                    continue
            lab = stack.enter_context(running_lab(args.hosts, args.latency, args.auth))
            if location is not None:
                lab.project = dataclasses.replace(lab.project, state_path=location)
            for name in ("first push", "unchanged"):
                with timed_state() as spent:
                    row = measured_push(lab, name, transport="auto", forks=args.forks, latency=args.latency)
                total = sum(spent.values())
                row |= {"store": store, "state_ms_per_host": round(total / row["hosts"] * 1000, 3)}
                row |= {"state_share": round(total / row["wall_s"], 3)}
                row["state_calls_ms"] = {k: round(v * 1000, 1) for k, v in sorted(spent.items(), key=lambda i: -i[1])}
                if as_json:
                    print(json.dumps(row), flush=True)
                else:
                    top = ", ".join(f"{k} {v:.0f}" for k, v in list(row["state_calls_ms"].items())[:4])
                    print(
                        f"{name:<15} {store:<10} wall {row['wall_s']:6.2f} s; state {row['state_ms_per_host']:.3f} "
                        f"ms/host ({row['state_share'] * 100:.1f}% of the wall time; ms: {top})",
                        flush=True,
                    )


def timeout_check(args: argparse.Namespace, as_json: bool) -> None:
    """How long a push with --timeout 10 takes against a server that trickles its replies."""
    from provision.push import PushOptions
    from provision.rollout import RunSettings, push, winrm_connect

    timeout = 10.0
    note(f"-- a server sending {args.trickle:g} bytes/s, --timeout {timeout:g} (one host)", as_json)
    for transport in ("auto", "pywinrm"):
        with running_lab(1, 0.0, args.auth, {"*": {"trickle_bytes_per_s": args.trickle}}) as lab:
            connect = winrm_connect(lab.credentials, timeout=timeout, transport=transport)
            clock = time.monotonic()
            run = push(lab.project, lab.inventory, connect, PushOptions(timeout=timeout, retries=0), RunSettings())
            wall = time.monotonic() - clock
            (host,) = run.hosts
            over = f"{(host.seconds / timeout - 1) * 100:+.1f}%"
            row = {"run": "trickle", "transport": transport, "timeout_s": timeout, "host_s": round(host.seconds, 3)}
            row |= {"over_by": over, "kind": host.kind, "wall_s": round(wall, 3)}
            if as_json:
                print(json.dumps(row), flush=True)
            else:
                print(
                    f"{transport:<8} host took {host.seconds:.2f} s for a {timeout:g} s limit ({row['over_by']}), "
                    f"failed as {host.kind or '-'}: {host.reason}",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--latency", type=float, default=30.0, help="milliseconds per request")
    parser.add_argument("--forks", type=int, default=64)
    parser.add_argument("--auth", choices=["ntlm", "basic"], default="ntlm", help="WinRM auth, over HTTPS")
    parser.add_argument("--ps-start", type=float, default=800.0, help="powershell.exe start-up, ms (0: skip)")
    parser.add_argument(
        "--sweep",
        type=lambda text: [int(n) for n in text.split(",") if n],
        default=[32, 64, 128, 256, 512],
        help="forks to try with Windows timing, comma-separated",
    )
    parser.add_argument(
        "--lab-processes",
        type=int,
        default=2,
        help="lab processes for the workers comparison with the lab out of the way (1: skip)",
    )
    parser.add_argument("--trickle", type=float, default=0.0, help="bytes/s for the --timeout check (0: skip)")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    parser.add_argument(
        "--stores",
        type=lambda text: [s for s in text.split(",") if s],
        default=["sqlite", "postgresql"],
        help="the state stores to measure the run's own cost on (sqlite,postgresql; empty: skip)",
    )
    args = parser.parse_args()

    def show_row(row: dict[str, Any]) -> None:
        show(row, args.json)

    started = time.monotonic()
    note(
        f"{args.hosts} hosts, {args.latency:g} ms per request, {args.auth} over https, --forks {args.forks}, "
        f"{os.cpu_count()} cores (lab and controller share them)",
        args.json,
    )
    if not args.json:
        print(HEADER)
    side_by_side(args, show_row)
    if args.lab_processes > 1 and workers_field():
        workers_apart(args, show_row, args.json)
    if args.ps_start > 0:
        windows_timing(args, show_row, args.json)
    if args.stores:
        state_overhead(args, args.json)
    if args.trickle > 0:
        timeout_check(args, args.json)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    note(f"controller peak memory {peak:.0f} MB; bench took {time.monotonic() - started:.0f} s", args.json)


if __name__ == "__main__":
    main()
