"""The schema: upgrades in place, refuses newer, and damage is one clear message (exit 2)."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from provision.cli.main import cli
from provision.errors import ExitStatus
from provision.state import (
    MOVE_ASIDE_COST,
    HostOutcome,
    PushRecord,
    RunStart,
    StateError,
    Store,
    open_store,
    redact_url,
)
from provision.state.migrations import LATEST, MIGRATIONS

from .conftest import OpenStore, execute
from conftest import BASE, INVENTORY, write

V1_SQL = Path(__file__).parent / "fixtures" / "state-v1.sql"
V1_KEY = bytes.fromhex("6A5C453BB28679AFB4C756E65CA0D517BE080460D8F2B0736C4AECC5FFC045F6")


def v1_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.executescript(V1_SQL.read_text(encoding="utf-8"))
    db.close()
    return path


def version(location: str) -> list[tuple[object, ...]]:
    return execute(location, "SELECT version FROM schema_version")


def run_start(run_id: str) -> RunStart:
    return RunStart(run_id, "push", {}, "jdoe", "ctl", "2026-11-29T08:00:00+00:00", None, None, 1, None, {})


def assert_damaged(error: StateError, where: str, *words: str) -> None:
    message = error.message
    assert error.exit_status == ExitStatus.USAGE
    assert where in message and "damaged" in message, message
    assert MOVE_ASIDE_COST in message, message
    for word in words:
        assert word in message, message


# -- upgrades -------------------------------------------------------------------------------


def test_a_file_of_the_first_releases_is_upgraded_in_place(tmp_path: Path) -> None:
    path = v1_file(tmp_path / ".provision" / "state.db")
    with open_store(path) as store:
        assert store.fingerprint_key == V1_KEY  # every recorded fingerprint stays valid
        old = store.last_push("ws-01", "JDoe")
        assert old is not None and old.managed_keys == {("account1", "server"), ("settings", "autoanswer")}
        assert old.fingerprints == {"account1": "9f2c41e0b3a7"} and old.result == "changed"
        assert set(store.last_pushes(["ws-01", "ws-02"])) == {("ws-01", "jdoe"), ("ws-02", "asmith")}
        store.start_run(run_start("r1"))
        store.record_hosts("r1", [HostOutcome("ws-01", "changed", "", "", 1.0, 1, "2026-11-29T08:00:01+00:00")])
    assert version(str(path)) == [(LATEST,)]
    with open_store(path) as again:
        assert again.run_host_names("r1") == ["ws-01"] and again.fingerprint_key == V1_KEY


def test_a_store_at_version_1_is_upgraded(location: str, backend: str) -> None:
    """The same numbered migrations on both dialects: a store left at version 1 reaches LATEST."""
    if backend == "sqlite":
        Path(location).parent.mkdir(parents=True)
    for statement in MIGRATIONS[0].statements(backend):
        execute(location, statement)
    execute(location, "CREATE TABLE schema_version (version INTEGER NOT NULL)")
    execute(location, "INSERT INTO schema_version (version) VALUES (1)")
    execute(
        location,
        'INSERT INTO pushes (host, "user", pushed_at, managed_keys, managed_hash, fingerprints, result) '
        "VALUES ('ws-01', 'jdoe', 't', '[]', 'h', '{}', 'changed')",
    )
    with open_store(location) as store:
        assert store.last_push("ws-01", "jdoe") == PushRecord("ws-01", "jdoe", "t", frozenset(), "h", {}, "changed")
        store.start_run(run_start("r1"))
    assert version(location) == [(LATEST,)]


def test_a_store_at_version_2_keeps_its_records_and_learns_the_pushed_values(location: str, backend: str) -> None:
    if backend == "sqlite":
        Path(location).parent.mkdir(parents=True)
    for migration in MIGRATIONS[:2]:
        for statement in migration.statements(backend):
            execute(location, statement)
    execute(location, "CREATE TABLE schema_version (version INTEGER NOT NULL)")
    execute(location, "INSERT INTO schema_version (version) VALUES (2)")
    execute(
        location,
        'INSERT INTO pushes (host, "user", pushed_at, managed_keys, managed_hash, fingerprints, result) '
        "VALUES ('ws-01', 'jdoe', 't', '[[\"settings\", \"autoanswer\"]]', 'h', '{}', 'changed')",
    )
    with open_store(location) as store:
        old = store.last_push("ws-01", "jdoe")
        assert old is not None and old.managed_values is None  # pushed before the values were kept
        keys = frozenset({("settings", "autoanswer")})
        store.record_pushes(
            [PushRecord("ws-01", "jdoe", "u", keys, "h2", {}, "changed", {("settings", "autoanswer"): "button"})]
        )
        new = store.last_push("ws-01", "jdoe")
        assert new is not None and new.managed_values == {("settings", "autoanswer"): "button"}
    assert version(location) == [(LATEST,)] == [(3,)]


def test_a_newer_schema_is_refused(open_at: OpenStore, location: str) -> None:
    open_at().close()
    execute(location, "UPDATE schema_version SET version = ?", (LATEST + 1,))
    with pytest.raises(StateError) as caught:
        open_at()
    message = caught.value.message
    assert f"schema version {LATEST + 1}" in message and "newer provision" in message and "Upgrade" in message
    assert caught.value.exit_status == ExitStatus.USAGE
    assert "Move it aside" not in message  # nothing is wrong with it


def test_concurrent_openers_migrate_once(location: str, backend: str) -> None:
    keys: list[bytes] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_one() -> None:
        barrier.wait()
        try:
            with open_store(location) as store:
                keys.append(store.fingerprint_key)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(keys) == 4 and len(set(keys)) == 1
    assert version(location) == [(LATEST,)]


# -- damage ----------------------------------------------------------------------------------


def test_a_file_that_is_not_a_database_is_one_message(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(StateError) as caught:
        open_store(path)
    assert_damaged(caught.value, str(path), "file is not a database", "Move it aside", "-wal")
    with pytest.raises(StateError):
        open_store(path, read_only=True)


def filled(path: Path, hosts: int = 3_000) -> Path:
    with open_store(path) as store:
        store.record_pushes(
            PushRecord(
                f"ws-{i:05d}", "jdoe", "t", frozenset({("settings", "a")}), "h" * 40, {"account1": "f" * 64}, "c"
            )
            for i in range(hosts)
        )
    return path


def test_a_truncated_file_is_found_when_it_opens(tmp_path: Path) -> None:
    path = filled(tmp_path / "state.db")
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2 // 4096 * 4096)
    with pytest.raises(StateError) as caught:
        open_store(path)
    assert_damaged(caught.value, str(path))


def test_a_page_of_garbage_is_found_when_it_opens(tmp_path: Path) -> None:
    path = filled(tmp_path / "state.db")
    pages = path.stat().st_size // 4096
    with path.open("r+b") as f:
        for page in (pages // 3, pages // 2):
            f.seek(page * 4096)
            f.write(os.urandom(4096))
    with pytest.raises(StateError) as caught:
        open_store(path)
    assert_damaged(caught.value, str(path))


def test_an_empty_file_is_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()
    with open_store(path) as store:
        assert len(store.fingerprint_key) == 32


def test_a_database_of_something_else_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    execute(str(path), "CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StateError) as caught:
        open_store(path)
    assert "not a provision state file" in caught.value.message and "invoices" in caught.value.message
    assert caught.value.exit_status == ExitStatus.USAGE
    assert execute(str(path), "SELECT name FROM sqlite_master") == [("invoices",)]


def test_half_a_schema_is_damage(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    execute(str(path), "CREATE TABLE pushes (host TEXT)")
    with pytest.raises(StateError) as caught:
        open_store(path)
    assert_damaged(caught.value, str(path), "unknown schema", "pushes")


def test_a_missing_column_is_damage(open_at: OpenStore, location: str) -> None:
    open_at().close()
    execute(location, "ALTER TABLE runs DROP COLUMN summary")
    with pytest.raises(StateError) as caught:
        open_at()
    assert_damaged(caught.value, redact_url(location), "runs lacks summary")  # no password in it


def test_a_version_table_with_two_rows_is_damage(open_at: OpenStore, location: str) -> None:
    open_at().close()
    execute(location, "INSERT INTO schema_version (version) VALUES (1)")
    with pytest.raises(StateError) as caught:
        open_at()
    assert_damaged(caught.value, "", "schema_version should hold one whole number")


def test_a_bad_fingerprint_key_is_damage(open_at: OpenStore, location: str) -> None:
    open_at().close()
    execute(location, "UPDATE meta SET value = ? WHERE name = 'fingerprint_key'", (b"short",))
    with pytest.raises(StateError) as caught:
        open_at()
    assert_damaged(caught.value, "", "fingerprint_key", "not 32 bytes")


def test_a_bad_push_row_is_named(store: Store, location: str) -> None:
    store.record_pushes([PushRecord("ws-01", "jdoe", "t", frozenset(), "h", {}, "changed")])
    execute(location, "UPDATE pushes SET managed_keys = '[[\"settings\", ' WHERE host = 'ws-01'")
    for read in (lambda: store.last_push("ws-01", "jdoe"), lambda: store.last_pushes(["ws-01"])):
        with pytest.raises(StateError) as caught:
            read()
        assert_damaged(caught.value, "", "pushes row ('ws-01', 'jdoe'): managed_keys is not valid JSON")
    execute(location, "UPDATE pushes SET managed_keys = '[[1, 2]]', fingerprints = '{}' WHERE host = 'ws-01'")
    with pytest.raises(StateError, match="not a \\[section, key\\] pair"):
        store.last_push("ws-01", "jdoe")


def test_a_bad_run_row_is_named(store: Store, location: str) -> None:
    store.start_run(run_start("r1"))
    store.record_hosts("r1", [HostOutcome("ws-01", "changed", "", "", 1.0, 1, "t")])
    execute(location, "UPDATE runs SET options = 'not json' WHERE id = 'r1'")
    with pytest.raises(StateError) as caught:
        store.get_run("r1")
    assert_damaged(caught.value, "", "runs row 'r1': options is not valid JSON")
    with pytest.raises(StateError):
        store.runs()
    execute(location, "UPDATE runs SET options = '[]' WHERE id = 'r1'")
    with pytest.raises(StateError, match="options is JSON but not an object"):
        store.get_run("r1")
    assert store.run_host_names("r1") == ["ws-01"]  # the rest of the run still reads


def test_a_damaged_state_stops_a_command_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the command line: exit 2, the message, no traceback."""
    write(tmp_path / "profiles" / "base.yaml", BASE)
    write(tmp_path / "inventory.yaml", INVENTORY)
    (tmp_path / "current").mkdir()
    (tmp_path / "state.db").write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PW_JDOE", "s3cret-jdoe!")
    result = CliRunner().invoke(
        cli, ["--state", "state.db", "diff", "-i", "inventory.yaml", "--against", "current"], catch_exceptions=False
    )
    assert result.exit_code == ExitStatus.USAGE, result.output
    assert "state.db is damaged" in result.output and "Move it aside" in result.output
    assert "Traceback" not in result.output


def test_tables_of_the_same_names_in_a_shared_schema_are_left_alone(postgres_schema_url: str) -> None:
    execute(postgres_schema_url, "CREATE TABLE runs (id INTEGER, what TEXT)")
    with pytest.raises(StateError) as caught:
        open_store(postgres_schema_url)
    message = caught.value.message
    assert "tables named runs" in message and "of its own" in message and "drop" not in message
    assert execute(postgres_schema_url, "SELECT COUNT(*) FROM runs") == [(0,)]


def test_a_read_only_open_brings_a_new_database_up_to_date_then_refuses_writes(location: str, backend: str) -> None:
    """An empty database (SQLite: an empty file; a missing one stays missing, see test_state_pushes)."""
    if backend == "sqlite":
        Path(location).parent.mkdir()
        Path(location).touch()
    with open_store(location, read_only=True) as store:
        assert store.runs() == [] and len(store.fingerprint_key) == 32
        with pytest.raises(StateError, match="read-only"):
            store.start_run(run_start("r1"))
    assert version(location) == [(LATEST,)]
