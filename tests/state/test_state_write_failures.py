"""Write failures: a full disk or a lost/read-only server is StateWriteError (exit 1) naming what
could not be written; what was written before stays, the store still reads, and writes again
once the cause is gone. Secrets in a PostgreSQL URL never show in any message."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from provision.errors import ExitStatus
from provision.state import PushRecord, StateError, StateWriteError, open_store, redact_url
from provision.state.location import scrub, url_secrets

from .conftest import execute, with_options

# A controller whose file size limit (RLIMIT_FSIZE, as a quota would) stops the state growing:
# the kernel refuses the write, SQLite reports SQLITE_FULL. Run apart, so the limit binds only it.
FULL_DISK = """
import json, resource, signal, sys
from provision.state import HostOutcome, PushRecord, RunStart, StateWriteError, UserOutcome, open_store

def push(i):
    return PushRecord(f"ws-{i:05d}", "jdoe", "t", frozenset({("settings", "a")}), "h" * 40, {"a": "f" * 64}, "c")

def host(i):
    user = UserOutcome("jdoe", "changed", "", None, True, 3)
    return HostOutcome(f"ws-{i:05d}", "changed", "", "x" * 200, 1.0, 1, "t", (user,))

out = {}
with open_store(sys.argv[1]) as store:
    store.record_pushes([push(i) for i in range(100)])
    store.start_run(RunStart("r1", "push", {}, "jdoe", "ctl", "t", None, None, 20000, None, {}))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write returns an error instead of killing us
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 1024 * 1024, hard))
    for start in range(0, 20000, 500):
        try:
            store.record_hosts("r1", [host(i) for i in range(start, start + 500)])
            store.record_pushes([push(i) for i in range(start, start + 500)])
        except StateWriteError as exc:
            out.update(message=exc.message, what=exc.what, status=int(exc.exit_status), failed_at=start)
            break
    out["hosts_kept"] = len(store.run_host_names("r1"))
    out["pushes_kept"] = len(store.last_pushes([f"ws-{i:05d}" for i in range(20000)]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    store.record_hosts("r1", [host(19999)])  # room again: it writes
    out["after"] = len(store.run_host_names("r1"))
print(json.dumps(out))
"""


def test_a_full_disk_is_a_write_error_and_the_store_still_reads(tmp_path: Path) -> None:
    path = tmp_path / ".provision" / "state.db"
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == ExitStatus.FAILED
    assert out["failed_at"] > 0  # it wrote batches before the disk filled
    assert "could not write" in out["message"] and str(path) in out["message"]
    assert "full" in out["message"]
    assert out["what"] in (
        "the outcomes of 500 hosts of run r1",
        "the push records of 500 users",
    )
    # Every batch before the failing one is kept whole, none of the failing one.
    assert out["hosts_kept"] in (out["failed_at"], out["failed_at"] + 500)
    assert out["pushes_kept"] in (max(out["failed_at"], 100), out["failed_at"] + 500)
    assert out["after"] == out["hosts_kept"] + 1
    with open_store(path) as store:  # and the file is sound
        assert len(store.run_host_names("r1")) == out["after"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a disk that really fills (needs root and a kernel that lets us mount)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(folder)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_disk_that_fills_up_is_a_write_error(small_disk: Path) -> None:
    """ENOSPC from a real filesystem: SQLITE_FULL."""
    path = small_disk / "state.db"
    with open_store(path) as store:
        with pytest.raises(StateWriteError) as caught:
            for start in range(0, 100_000, 500):
                store.record_pushes(
                    PushRecord(f"ws-{i:06d}", "jdoe", "t", frozenset({("s", "k" * 50)}), "h" * 40, {"a": "f" * 64}, "c")
                    for i in range(start, start + 500)
                )
        assert caught.value.exit_status == ExitStatus.FAILED
        assert f"could not write the push records of 500 users to the state file {path}" in caught.value.message
        assert "the disk or quota is full (database or disk is full)" in caught.value.message
        kept = store.last_pushes(f"ws-{i:06d}" for i in range(100_000))
        assert len(kept) % 500 == 0 and len(kept) > 0  # whole batches only
    with open_store(path) as again:  # and the file is sound
        assert len(again.last_pushes(f"ws-{i:06d}" for i in range(100_000))) == len(kept)


def record(host: str) -> PushRecord:
    return PushRecord(host, "jdoe", "t", frozenset(), "h", {}, "changed")


def test_a_lost_session_is_replaced_and_a_read_only_server_is_a_write_error(
    postgres_schema_url: str, postgres_url: str
) -> None:
    """PostgreSQL: the server ends the store's session (restart, fail-over): the next call
    opens a new one. It comes back read-only (a standby after a fail-over; here the role's
    default): each write fails on its own, reads go on, writes work again once it is writable."""
    name = f"provision-test-{secrets.token_hex(4)}"
    kill = f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{name}'"
    with open_store(f"{postgres_schema_url}&application_name={name}") as store:
        store.record_pushes([record("ws-01")])
        execute(postgres_url, kill)
        store.record_pushes([record("ws-02")])
        execute(postgres_url, kill)
        assert set(store.last_pushes(["ws-01", "ws-02"])) == {("ws-01", "jdoe"), ("ws-02", "jdoe")}
        execute(postgres_url, "ALTER ROLE CURRENT_USER SET default_transaction_read_only = on")
        try:
            execute(postgres_url, kill)
            for _ in range(2):
                with pytest.raises(StateWriteError) as caught:
                    store.record_pushes([record("ws-03")])
                assert caught.value.exit_status == ExitStatus.FAILED
                assert "could not write the push records of 1 user" in caught.value.message
                assert "read-only" in caught.value.message
                assert caught.value.what == "the push records of 1 user"
                assert store.last_push("ws-01", "jdoe") is not None
        finally:
            execute(with_options(postgres_url, "-cdefault_transaction_read_only=off"),
                    "ALTER ROLE CURRENT_USER RESET default_transaction_read_only")  # fmt: skip
        execute(postgres_url, kill)
        store.record_pushes([record("ws-03")])
        assert store.last_push("ws-03", "jdoe") is not None


# -- secrets in URLs -------------------------------------------------------------------------


def test_redact_url_drops_every_password() -> None:
    assert redact_url("postgresql://admin:s3cr%40t@db.example.com:5432/provision?sslmode=require") == (
        "postgresql://admin@db.example.com:5432/provision?sslmode=require"
    )
    assert redact_url("postgres://db/provision?password=s3cret&sslmode=verify-full") == (
        "postgres://db/provision?sslmode=verify-full"
    )
    assert redact_url("postgresql://a:b@h1:5432,h2:5433/x") == "postgresql://a@h1:5432,h2:5433/x"
    assert url_secrets("postgresql://u:p%40ss@h/d?password=q") == ["p%40ss", "p@ss", "q"]
    assert scrub('invalid token: "p%40ss"', url_secrets("postgresql://u:p%40ss@h/d")) == 'invalid token: "***"'


def test_no_password_in_any_message(postgres_url: str) -> None:
    """A role that does not exist, a bad URL, an unreachable server: the password shows nowhere."""
    secret = "Zq8-sup3r-s3cret"
    server = urlsplit(postgres_url).netloc.rpartition("@")[2]
    cases = [
        f"postgresql://nobody-here:{secret}@{server}/postgres",
        f"postgresql://u:{secret}%zz@{server}/postgres",  # bad percent-encoding, which the driver quotes
        f"postgresql://u:{secret}@127.0.0.1:1/db?connect_timeout=2",  # nothing listens
        f"postgresql://u@127.0.0.1:1/db?password={secret}&connect_timeout=2",
    ]
    for url in cases:
        with pytest.raises(StateError) as caught:
            open_store(url)
        message = caught.value.message
        assert secret not in message and "%zz" not in message, message
        assert caught.value.exit_status == ExitStatus.USAGE
        assert "postgresql://u" in message or "postgresql://nobody-here@" in message


def test_a_url_given_as_a_path_is_refused_not_made_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StateError, match="lost its '//'") as caught:
        open_store(Path("postgresql://admin:pw@db.example.com/provision"))
    assert "pw" not in caught.value.message
    assert list(tmp_path.iterdir()) == []


def test_a_folder_as_the_state_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="is a folder") as caught:
        open_store(tmp_path)
    assert caught.value.exit_status == ExitStatus.USAGE
