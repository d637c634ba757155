"""Leases: one run per host at a time, across threads and processes; expiry; renew; release."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from provision.state import LeaseHolder, Store

from .conftest import OpenStore

A = LeaseHolder("run-a", "jdoe", "ctl-1")
B = LeaseHolder("run-b", "asmith", "ctl-2")


def test_free_hosts_are_granted_and_held_ones_refused(store: Store) -> None:
    granted, refused = store.acquire(["ws-02", "ws-01"], A, 600)
    assert granted == ["ws-02", "ws-01"] and refused == {}
    granted, refused = store.acquire(["ws-01", "ws-03"], B, 600)
    assert granted == ["ws-03"]
    lease = refused["ws-01"]
    assert (lease.host, lease.run_id, lease.who, lease.controller) == ("ws-01", "run-a", "jdoe", "ctl-1")
    assert lease.until > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())  # ISO UTC, in the future
    assert lease.until.endswith("+00:00")


def test_a_run_that_holds_a_host_gets_it_again(store: Store) -> None:
    store.acquire(["ws-01"], A, 600)
    granted, refused = store.acquire(["ws-01", "ws-01"], A, 600)
    assert granted == ["ws-01"] and refused == {}


def test_an_expired_lease_is_taken_over(store: Store) -> None:
    store.acquire(["ws-01", "ws-02"], A, 0.2)
    assert store.acquire(["ws-01"], B, 600)[0] == []
    time.sleep(0.5)
    granted, refused = store.acquire(["ws-01"], B, 600)
    assert granted == ["ws-01"] and refused == {}
    assert set(store.leases()) == {"ws-01"}  # the expired ws-02 is not in force
    assert store.leases()["ws-01"].run_id == "run-b"
    assert store.renew("run-a", ["ws-01", "ws-02"], 600) == ["ws-02"]  # a lost lease is not won back


def test_renew_keeps_a_lease_past_its_first_expiry(store: Store) -> None:
    store.acquire(["ws-01", "ws-02"], A, 0.4)
    assert store.renew("run-a", ["ws-01", "ws-09"], 600) == ["ws-01"]
    time.sleep(0.6)
    granted, refused = store.acquire(["ws-01", "ws-02"], B, 600)
    assert granted == ["ws-02"] and set(refused) == {"ws-01"}


def test_release_frees_the_hosts_given_or_all_of_a_run(store: Store) -> None:
    store.acquire(["ws-01", "ws-02", "ws-03"], A, 600)
    store.acquire(["ws-04"], B, 600)
    store.release("run-a", ["ws-01"])
    store.release("run-b", ["ws-02"])  # not B's: nothing happens
    assert set(store.leases()) == {"ws-02", "ws-03", "ws-04"}
    store.release("run-a")
    assert set(store.leases()) == {"ws-04"}
    assert set(store.leases(["ws-04", "ws-01"])) == {"ws-04"}
    assert store.acquire(["ws-01", "ws-02"], B, 600)[0] == ["ws-01", "ws-02"]


def test_a_lease_needs_a_positive_time(store: Store) -> None:
    with pytest.raises(ValueError, match="positive"):
        store.acquire(["ws-01"], A, 0)


def test_two_threads_never_both_get_a_host(open_at: OpenStore) -> None:
    """Each thread has its own store (its own connection), as two controllers would."""
    first, second = open_at(), open_at()
    hosts = [f"ws-{i:03d}" for i in range(60)]
    wants = {A: hosts[:40], B: hosts[20:]}
    for _ in range(15):
        barrier = threading.Barrier(2)
        got: dict[LeaseHolder, list[str]] = {}

        def take(
            store: Store,
            holder: LeaseHolder,
            got: dict[LeaseHolder, list[str]] = got,
            barrier: threading.Barrier = barrier,
        ) -> None:
            barrier.wait()
            got[holder] = store.acquire(wants[holder], holder, 600)[0]

        threads = [threading.Thread(target=take, args=(first, A)), threading.Thread(target=take, args=(second, B))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert set(got[A]).isdisjoint(got[B])
        assert set(got[A]) | set(got[B]) == set(hosts)
        first.release("run-a")
        second.release("run-b")


WORKER = """
import json, sys, time
from pathlib import Path
from provision.state import LeaseHolder, open_store
location, run_id, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
hosts = json.loads(sys.argv[4])
with open_store(location) as store:
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.005)
    granted, refused = store.acquire(hosts, LeaseHolder(run_id, "cron", "ctl-" + run_id), 600)
    print(json.dumps({"granted": granted, "refused": {h: l.run_id for h, l in refused.items()}}), flush=True)
"""


def test_two_processes_never_both_get_a_host(location: str, store: Store, tmp_path: Path) -> None:
    """Two controllers as separate processes (SQLite: two processes sharing one file)."""
    hosts = [f"ws-{i:04d}" for i in range(600)]
    wants = {"p1": hosts[:400], "p2": hosts[200:]}
    go = tmp_path / "go"
    workers = {
        name: subprocess.Popen(
            [sys.executable, "-c", WORKER, location, name, str(go), json.dumps(want)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, want in wants.items()
    }
    for worker in workers.values():
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    go.touch()
    results = {}
    for name, worker in workers.items():
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        results[name] = json.loads(out)
    p1, p2 = set(results["p1"]["granted"]), set(results["p2"]["granted"])
    assert p1.isdisjoint(p2) and p1 | p2 == set(hosts)
    assert all(results["p1"]["refused"][h] == "p2" for h in set(wants["p1"]) - p1)
    assert all(results["p2"]["refused"][h] == "p1" for h in set(wants["p2"]) - p2)
    assert {h: lease.run_id for h, lease in store.leases().items()} == {
        **{h: "p1" for h in p1},
        **{h: "p2" for h in p2},
    }
