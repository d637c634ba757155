"""A run's leases (runs.Recording) on both stores: every host the run has leased stays leased
while it waits for a fork or for another run's host, and a lease found taken over is lost."""

from __future__ import annotations

import time

from provision.jobs import HostJob
from provision.model.inventory import Connection, Install
from provision.runs import LOST, Recording
from provision.state import HostOutcome, LeaseHolder, Store

A = LeaseHolder("run-a", "jdoe", "ctl-1")
B = LeaseHolder("run-b", "asmith", "ctl-2")


def jobs(*hosts: str) -> list[HostJob]:
    return [HostJob(host, Connection(), Install(), ()) for host in hosts]


def recording(store: Store, lease: float, wait: float = 0.0) -> Recording[HostOutcome]:
    return Recording(store, A.run_id, A, to_record=lambda r: r, lease_seconds=lease, wait_for_lease=wait)


def test_hosts_waiting_for_a_fork_keep_their_lease(store: Store) -> None:
    run = recording(store, 0.8)
    assert run.admit(jobs("ws-01", "ws-02", "ws-03")) == {}
    for _ in range(6):  # 1.2 s: past the first lease, renewed on the way
        time.sleep(0.2)
        assert run.tick(["ws-01"]) == {}
    granted, refused = store.acquire(["ws-02", "ws-03"], B, 600)
    assert granted == [] and {lease.run_id for lease in refused.values()} == {"run-a"}


def test_a_lease_taken_over_is_lost_and_the_rest_kept(store: Store) -> None:
    run = recording(store, 0.4)
    run.admit(jobs("ws-01", "ws-02"))
    time.sleep(0.6)  # the run stalled: no tick, its leases expired
    assert store.acquire(["ws-02"], B, 600)[0] == ["ws-02"]
    assert run.tick(["ws-01"]) == {"ws-02": LOST}
    assert store.leases()["ws-01"].run_id == "run-a"  # won back: nobody else took it
    assert run.leased == {"ws-01"}


def test_hosts_granted_stay_leased_while_the_run_waits_for_the_others(store: Store) -> None:
    store.acquire(["ws-02"], B, 1.0)
    run = recording(store, 0.6, wait=5.0)
    started = time.monotonic()
    assert run.admit(jobs("ws-01", "ws-02")) == {}  # B's lease ran out; ws-01 was renewed meanwhile
    assert time.monotonic() - started >= 0.9
    assert {host: lease.run_id for host, lease in store.leases().items()} == {"ws-01": "run-a", "ws-02": "run-a"}
