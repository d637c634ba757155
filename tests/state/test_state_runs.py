"""Runs: start, per-host and per-user outcomes, end; listing with filters; lookup by id prefix."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from provision.state import HostOutcome, RunStart, StateError, Store, UserOutcome

GROUPS = {"ws-01": ["sales", "berlin"], "ws-02": ["sales"], "ws-03": ["support"]}


def start(
    store: Store,
    run_id: str,
    command: str = "push",
    started: str = "2026-11-29T08:00:00+00:00",
    groups: dict[str, list[str]] | None = None,
    resume_of: str | None = None,
) -> RunStart:
    run = RunStart(
        id=run_id,
        command=command,
        options={"forks": 16, "batch": ["1", "10%"], "check": False},
        who="jdoe",
        controller="ctl-1",
        started=started,
        digest="sha256:abc",
        resume_of=resume_of,
        hosts_total=3,
        shard="1/2",
        groups=GROUPS if groups is None else groups,
    )
    store.start_run(run)
    return run


def host(name: str, status: str = "changed", *users: UserOutcome, reason: str = "") -> HostOutcome:
    return HostOutcome(name, status, "" if status != "unreachable" else "unreachable", reason, 1.25, 1,
                       "2026-11-29T08:00:05+00:00", users)  # fmt: skip


def user(name: str, status: str = "changed", backup: str | None = "b-1", restarted: bool | None = True) -> UserOutcome:
    return UserOutcome(name, status, "", backup, restarted, 3)


def test_a_run_reads_back_with_its_hosts_and_users(store: Store) -> None:
    run = start(store, "20261129T080000-aaaaaa")
    hosts = [
        host("ws-02", "changed", user("jdoe"), user("asmith", "unchanged", None, None)),
        host("ws-01", "failed", user("bob", "failed", None, False), reason="disk full on C:"),
        host("ws-03", "unreachable", reason="connection refused"),
    ]
    store.record_hosts(run.id, hosts[:2])
    store.record_hosts(run.id, hosts[2:])
    store.finish_run(run.id, "finished", "2026-11-29T08:10:00+00:00", {"by_group": {"sales": {"changed": 1}}})
    info = store.get_run(run.id)
    assert info is not None
    assert (info.id, info.command, info.options, info.who, info.controller) == (
        run.id, "push", run.options, "jdoe", "ctl-1",
    )  # fmt: skip
    assert (info.started, info.digest, info.resume_of, info.hosts_total, info.shard) == (
        run.started, "sha256:abc", None, 3, "1/2",
    )  # fmt: skip
    assert info.groups == GROUPS and info.group_names == ("berlin", "sales", "support")
    assert (info.status, info.finished) == ("finished", "2026-11-29T08:10:00+00:00")
    assert info.summary == {"by_group": {"sales": {"changed": 1}}}
    assert info.counts == {"changed": 1, "failed": 1, "unreachable": 1} and info.hosts_done == 3
    assert store.run_hosts(run.id) == hosts  # in recording order, users in their order
    assert store.run_host_names(run.id) == ["ws-02", "ws-01", "ws-03"]
    assert store.run_host_names(run.id, ["failed", "unreachable"]) == ["ws-01", "ws-03"]
    assert store.run_host_names(run.id, []) == []


def test_a_running_run_has_status_running_and_no_end(store: Store) -> None:
    start(store, "20261129T080000-aaaaaa")
    info = store.get_run("20261129T080000-aaaaaa")
    assert info is not None and (info.status, info.finished, info.summary, info.counts) == ("running", None, {}, {})


def test_recording_a_host_again_replaces_its_outcome_and_users(store: Store) -> None:
    run = start(store, "r1")
    store.record_hosts(run.id, [host("ws-01", "failed", user("jdoe", "failed"), user("bob", "failed"))])
    store.record_hosts(run.id, [host("ws-02")])
    store.record_hosts(run.id, [host("ws-01", "changed", user("jdoe"))])
    assert store.run_hosts(run.id) == [host("ws-01", "changed", user("jdoe")), host("ws-02")]
    assert store.run_host_names(run.id, ["failed"]) == []


def test_runs_are_listed_newest_first_and_filtered(store: Store) -> None:
    start(store, "20261101T080000-000001", "push", "2026-11-01T08:00:00+00:00", {"ws-01": ["sales"]})
    start(store, "20261115T080000-000002", "health", "2026-11-15T08:00:00+00:00", {"ws-03": ["support"]})
    start(store, "20261120T080000-000003", "push", "2026-11-20T08:00:00+00:00", {"ws-02": ["sales", "hq"]})
    start(store, "20261125T080000-000004", "rollback", "2026-11-25T08:00:00+00:00", {})
    store.finish_run("20261101T080000-000001", "finished", "2026-11-01T09:00:00+00:00", {})
    store.finish_run("20261120T080000-000003", "stopped", "2026-11-20T09:00:00+00:00", {"why": "max-fail"})

    def ids(runs: list[object]) -> list[str]:
        return [r.id[-1] for r in runs]  # type: ignore[attr-defined]

    assert ids(store.runs()) == ["4", "3", "2", "1"]
    assert ids(store.runs(command="push")) == ["3", "1"]
    assert ids(store.runs(status="stopped")) == ["3"]
    assert ids(store.runs(status="running")) == ["4", "2"]
    assert ids(store.runs(group="sales")) == ["3", "1"]
    assert ids(store.runs(group="hq")) == ["3"]
    assert ids(store.runs(group="nobody")) == []
    assert ids(store.runs(since="2026-11-15")) == ["4", "3", "2"]
    assert ids(store.runs(until="2026-11-20")) == ["2", "1"]
    assert ids(store.runs(since=datetime(2026, 11, 10, tzinfo=UTC), until=datetime(2026, 11, 21))) == ["3", "2"]
    assert ids(store.runs(command="push", group="sales", since="2026-11-10")) == ["3"]
    assert ids(store.runs(limit=2)) == ["4", "3"]
    assert ids(store.runs(limit=None)) == ["4", "3", "2", "1"]
    listed = store.runs(command="push")
    assert listed[0].groups == {} and listed[0].group_names == ("hq", "sales")  # listing: names only
    assert store.runs(command="push", with_groups=True)[0].groups == {"ws-02": ["sales", "hq"]}


def test_a_run_is_found_by_a_unique_prefix(store: Store) -> None:
    start(store, "20261129T080000-3f9a1c")
    start(store, "20261129T080000-3f9b00")
    start(store, "20261130T090000-000000")
    found = store.get_run("20261130")
    assert found is not None and found.id == "20261130T090000-000000"
    assert store.get_run("20261129T080000-3f9a") is not None
    assert store.get_run("2027") is None
    assert store.get_run("") is None
    with pytest.raises(StateError) as caught:
        store.get_run("20261129T080000-3f9")
    assert "ambiguous" in caught.value.message
    assert "20261129T080000-3f9a1c" in caught.value.message and "20261129T080000-3f9b00" in caught.value.message
    assert caught.value.exit_status == 2


def test_a_run_id_is_recorded_once(store: Store) -> None:
    start(store, "r1")
    with pytest.raises(StateError, match="already recorded"):
        start(store, "r1")


def test_outcomes_of_an_unknown_run_are_refused(store: Store) -> None:
    with pytest.raises(StateError, match="no run nope"):
        store.record_hosts("nope", [host("ws-01")])
    with pytest.raises(StateError, match="no run nope"):
        store.finish_run("nope", "finished", "2026-11-29T08:00:00+00:00", {})


def test_new_run_ids_are_short_sortable_and_distinct(store: Store) -> None:
    ids = [store.new_run_id() for _ in range(2_000)]
    assert all(re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{6}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert [i[:15] for i in ids] == sorted(i[:15] for i in ids)


def test_a_resumed_run_names_the_run_it_finishes(store: Store) -> None:
    start(store, "r1")
    store.record_hosts("r1", [host("ws-01"), host("ws-02", "unreachable")])
    store.finish_run("r1", "interrupted", "2026-11-29T08:05:00+00:00", {})
    start(store, "r2", resume_of="r1", started="2026-11-29T09:00:00+00:00")
    resumed = store.get_run("r2")
    assert resumed is not None and resumed.resume_of == "r1"
    assert store.run_host_names("r1", ["unreachable"]) == ["ws-02"]


def test_free_text_with_nul_characters_is_kept_readable(store: Store) -> None:
    start(store, "r1")
    store.record_hosts("r1", [host("ws-01", "failed", reason="remote said \x00 oops")])
    (got,) = store.run_hosts("r1")
    assert got.reason == "remote said \ufffd oops"


def test_pruning_drops_old_finished_runs_with_their_hosts_and_keeps_the_rest(store: Store) -> None:
    old = start(store, "20250101T000000-aaaaaa", started="2025-01-01T00:00:00+00:00").id
    store.record_hosts(old, [host("ws-1", "changed", user("u1"))])
    store.finish_run(old, "finished", "2025-01-01T00:01:00+00:00", {})
    stuck = start(store, "20250102T000000-bbbbbb", started="2025-01-02T00:00:00+00:00").id  # still running
    new = start(store, "20261101T000000-cccccc", started="2026-11-01T00:00:00+00:00").id
    store.record_hosts(new, [host("ws-1")])
    assert store.prune("2026-01-01T00:00:00+00:00") == 1
    assert [r.id for r in store.runs()] == [new, stuck]
    assert store.run_hosts(old) == [] and [h.host for h in store.run_hosts(new)] == ["ws-1"]
