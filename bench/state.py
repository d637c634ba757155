"""State benchmark: what recording a fleet run costs per host, on SQLite and on PostgreSQL.

For H hosts with U users each, in batches of B hosts (as the fleet runner records them):
record_hosts (one host outcome with U user outcomes each) plus record_pushes (U push records
per host), then the reads a command makes before it contacts any host: last_pushes for all H
hosts in one call, opening the store (SQLite: with its quick_check), leases for all H hosts,
run_hosts of the run, and the runs listing. Prints ms per host, seconds per step, and the
PostgreSQL/SQLite ratio of each. `--history N` records N runs first, to see how opening and
the file grow with the run history.

PostgreSQL: PROVISION_TEST_POSTGRES_URL (the bench makes and drops a schema of its own), or
else a throwaway cluster from this machine's server binaries, as the tests do; without
either only SQLite is measured.

    python bench/state.py                       # 20,000 hosts x 2 users, batches of 500
    python bench/state.py --hosts 2000 --history 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from provision.state import (  # noqa: E402
    HostOutcome,
    LeaseHolder,
    PushRecord,
    RunStart,
    Store,
    UserOutcome,
    open_store,
)

from pgcluster import bench_postgres  # noqa: E402

USERS = ("jdoe", "asmith", "bwong", "cmeyer")


def outcome(host: str, users: int) -> HostOutcome:
    return HostOutcome(
        host,
        "changed",
        "",
        "",
        2.5,
        1,
        "2026-11-29T08:00:05+00:00",
        tuple(UserOutcome(u, "changed", "", f"microsip.ini.20261129T080005-{u}.bak", True, 4) for u in USERS[:users]),
    )


def pushes(host: str, users: int) -> list[PushRecord]:
    keys = frozenset({("settings", "autoanswer"), ("settings", "denyincoming"), ("account1", "server")})
    return [
        PushRecord(host, u, "2026-11-29T08:00:05+00:00", keys, "f" * 64, {"account1": "a" * 64}, "changed")
        for u in USERS[:users]
    ]


def record_run(
    store: Store, hosts: list[str], users: int, batch: int, groups: dict[str, list[str]]
) -> tuple[str, dict[str, float]]:
    """One run as the fleet runner records it: the run id and seconds spent per call kind."""
    run_id = store.new_run_id()
    start = RunStart(
        run_id, "push", {"batch": batch}, "bench", "ctl", "2026-11-29T08:00:00+00:00", "sha256:x", None,
        len(hosts), None, groups,
    )  # fmt: skip
    store.start_run(start)
    spent = {"record_hosts": 0.0, "record_pushes": 0.0}
    for first in range(0, len(hosts), batch):
        chunk = hosts[first : first + batch]
        clock = time.perf_counter()
        store.record_hosts(run_id, [outcome(h, users) for h in chunk])
        spent["record_hosts"] += time.perf_counter() - clock
        records = [r for h in chunk for r in pushes(h, users)]
        clock = time.perf_counter()
        store.record_pushes(records)
        spent["record_pushes"] += time.perf_counter() - clock
    store.finish_run(run_id, "finished", "2026-11-29T09:00:00+00:00", {"changed": len(hosts)})
    return run_id, spent


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    clock = time.perf_counter()
    result = work()
    return time.perf_counter() - clock, result


def measure(location: str, hosts: int, users: int, batch: int, history: int) -> dict[str, float]:
    names = [f"ws-{i:05d}" for i in range(hosts)]
    groups = {h: ["site-" + str(i % 20), "dept-" + str(i % 7)] for i, h in enumerate(names)}
    figures: dict[str, float] = {}
    with open_store(location) as store:
        for _ in range(history):
            record_run(store, names, users, batch, groups)
        run_id, spent = record_run(store, names, users, batch, groups)
        figures["record_hosts ms/host"] = spent["record_hosts"] / hosts * 1000
        figures["record_pushes ms/host"] = spent["record_pushes"] / hosts * 1000
        figures["both ms/host"] = figures["record_hosts ms/host"] + figures["record_pushes ms/host"]
        seconds, found = timed(lambda: store.last_pushes(names))
        assert len(found) == hosts * users
        figures["last_pushes s (all hosts)"] = seconds
        holder = LeaseHolder(run_id, "bench", "ctl")
        figures["acquire s (all hosts)"], (granted, _) = timed(lambda: store.acquire(names, holder, 600))
        assert len(granted) == hosts
        figures["renew s (all hosts)"], _ = timed(lambda: store.renew(run_id, names, 600))
        figures["release s (all hosts)"], _ = timed(lambda: store.release(run_id))
        figures["run_hosts s (one run)"], got = timed(lambda: store.run_hosts(run_id))
        assert len(got) == hosts
        figures["runs() s (listing)"], _ = timed(lambda: store.runs(limit=50))
    figures["open s"], opened = timed(lambda: open_store(location))
    opened.close()
    figures["size MB"] = size(location) / 1e6
    return figures


def size(location: str) -> int:
    """Bytes the state takes: the SQLite file (with its WAL), or the PostgreSQL schema's tables."""
    if not location.startswith("postgresql://"):
        return sum(p.stat().st_size for p in Path(location).parent.iterdir())
    import psycopg

    with psycopg.connect(location) as conn:
        row = conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2, choices=range(1, len(USERS) + 1))
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--history", type=int, default=0, help="runs recorded before the measured one")
    args = parser.parse_args()
    print(f"{args.hosts} hosts x {args.users} users, batches of {args.batch}, {args.history} earlier runs")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        results["SQLite"] = measure(str(Path(folder) / "state.db"), args.hosts, args.users, args.batch, args.history)
    with bench_postgres() as url:
        if url is not None:
            results["PostgreSQL"] = measure(url, args.hosts, args.users, args.batch, args.history)
    names = list(results["SQLite"])
    stores = list(results)
    print(f"\n{'':28}" + "".join(f"{s:>12}" for s in stores) + ("     PG/SQLite" if len(stores) == 2 else ""))
    for name in names:
        values = [results[s].get(name) for s in stores]
        cells = "".join(f"{v:>12.4f}" if v is not None else f"{'-':>12}" for v in values)
        ratio = ""
        if len(stores) == 2 and values[0] and values[1] is not None:
            ratio = f"{values[1] / values[0]:>13.1f}x"
        print(f"{name:28}{cells}{ratio}")


if __name__ == "__main__":
    main()
