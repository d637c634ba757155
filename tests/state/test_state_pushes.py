"""Push records and the fingerprint key, on both stores."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest

from provision.errors import ExitStatus
from provision.state import EmptyStore, PushRecord, StateError, Store, open_store

from .conftest import OpenStore, execute


def record(host: str = "ws-01", user: str = "jdoe", result: str = "changed", digest: str = "h1") -> PushRecord:
    return PushRecord(
        host,
        user,
        "2026-11-29T08:00:00+00:00",
        frozenset({("settings", "autoanswer"), ("account1", "server")}),
        digest,
        {"account1": f"fp-{host}-{user}"},
        result,
    )


def test_a_push_record_reads_back_as_written(store: Store) -> None:
    store.record_pushes([record()])
    assert store.last_push("ws-01", "jdoe") == record()
    assert store.last_push("ws-01", "other") is None
    assert store.last_push("ws-02", "jdoe") is None


def test_users_compare_case_insensitively(store: Store) -> None:
    store.record_pushes([record(user="JDoe")])
    found = store.last_push("ws-01", "JDOE")
    assert found is not None and found.user == "jdoe"
    assert set(store.last_pushes(["ws-01"])) == {("ws-01", "jdoe")}


def test_recording_again_replaces_the_record(store: Store) -> None:
    store.record_pushes([record(digest="h1")])
    store.record_pushes([record(digest="h2", result="unchanged")])
    found = store.last_push("ws-01", "jdoe")
    assert found is not None and (found.managed_hash, found.result) == ("h2", "unchanged")


def test_last_pushes_loads_many_hosts_at_once(store: Store) -> None:
    hosts = [f"ws-{i:04d}" for i in range(1_200)]  # more than one IN list on SQLite
    store.record_pushes(record(h, u) for h in hosts for u in ("jdoe", "asmith"))
    store.record_pushes([record("elsewhere")])
    found = store.last_pushes([*hosts, "ws-never", hosts[0]])
    assert len(found) == 2_400
    assert found[("ws-1199", "asmith")] == record("ws-1199", "asmith")
    assert ("elsewhere", "jdoe") not in found
    assert store.last_pushes([]) == {}


def test_forget_drops_only_the_pairs_given(store: Store) -> None:
    store.record_pushes([record("ws-01", "jdoe"), record("ws-01", "asmith"), record("ws-02", "jdoe")])
    store.forget([("ws-01", "JDOE"), ("ws-09", "nobody")])
    assert set(store.last_pushes(["ws-01", "ws-02"])) == {("ws-01", "asmith"), ("ws-02", "jdoe")}


def refuse_host(location: str, host: str) -> None:
    """A trigger that makes the database refuse any push record of `host`, as a constraint would."""
    if location.startswith("postgresql://"):
        execute(
            location,
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.host = '{host}' THEN RAISE EXCEPTION 'refused' USING ERRCODE = '23514'; END IF; "
            "RETURN NEW; END $$",
        )
        execute(location, "CREATE TRIGGER refuse BEFORE INSERT ON pushes FOR EACH ROW EXECUTE FUNCTION refuse()")
    else:
        execute(
            location,
            f"CREATE TRIGGER refuse BEFORE INSERT ON pushes WHEN NEW.host = '{host}' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )


def test_record_pushes_is_one_transaction(store: Store, location: str) -> None:
    refuse_host(location, "ws-03")
    with pytest.raises(StateError) as caught:
        store.record_pushes([record("ws-01"), record("ws-02"), record("ws-03"), record("ws-04")])
    assert "push records of 4 users" in caught.value.message and "refused" in caught.value.message
    assert store.last_pushes(["ws-01", "ws-02", "ws-03", "ws-04"]) == {}  # nothing of the batch stayed
    store.record_pushes([record("ws-05")])  # and the store still writes
    assert store.last_push("ws-05", "jdoe") is not None


def test_the_fingerprint_key_is_made_once_and_shared(open_at: OpenStore) -> None:
    first = open_at()
    key = first.fingerprint_key
    assert isinstance(key, bytes) and len(key) == 32
    second = open_at()
    assert second.fingerprint_key == key
    first.close()
    assert open_at().fingerprint_key == key


def test_read_only_store_reads_and_refuses_writes(open_at: OpenStore) -> None:
    open_at().record_pushes([record()])
    reader = open_at(read_only=True)
    assert reader.read_only and reader.last_push("ws-01", "jdoe") == record()
    with pytest.raises(StateError, match="read-only") as caught:
        reader.record_pushes([record("ws-02")])
    assert caught.value.exit_status == ExitStatus.USAGE
    with pytest.raises(StateError, match="read-only"):
        reader.forget([("ws-01", "jdoe")])
    assert reader.last_push("ws-01", "jdoe") == record()


def test_a_missing_file_read_only_is_an_empty_store_and_stays_missing(tmp_path: Path) -> None:
    path = tmp_path / ".provision" / "state.db"
    with open_store(path, read_only=True) as store:
        assert isinstance(store, EmptyStore)
        assert store.last_push("ws-01", "jdoe") is None and store.last_pushes(["ws-01"]) == {}
        assert store.runs() == [] and store.get_run("2026") is None and store.leases() == {}
        assert len(store.fingerprint_key) == 32
        with pytest.raises(StateError, match="read-only"):
            store.record_pushes([record()])
    assert not path.parent.exists()


def test_the_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "deep" / ".provision" / "state.db"
    open_store(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_text_columns_keep_unicode(store: Store, location: str) -> None:
    store.record_pushes([record("ws-ü", "Jürgen")])
    assert store.last_push("ws-ü", "JÜRGEN") == replace(record("ws-ü", "Jürgen"), user="jürgen")
    (count,) = execute(location, "SELECT COUNT(*) FROM pushes")
    assert count[0] == 1
