"""Every state test runs on both stores: SQLite and PostgreSQL.

PostgreSQL comes from PROVISION_TEST_POSTGRES_URL (a role that may create schemas in its
database), or else from a throwaway cluster started here for the session from the server
binaries of this machine (initdb and pg_ctl, on PATH or under /usr/lib/postgresql/*/bin;
as root they run as the `postgres` user, since initdb refuses root). Without either the
PostgreSQL half is skipped with the reason, unless PROVISION_REQUIRE_POSTGRES=1, which
makes it a failure. Each test gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from provision.state import Store, open_store

SERVER_BINARIES = "/usr/lib/postgresql/*/bin"

OpenStore = Callable[..., Store]


def _require() -> bool:
    return os.environ.get("PROVISION_REQUIRE_POSTGRES", "") not in ("", "0")


def _no_postgres(reason: str) -> None:
    if _require():
        pytest.fail(f"PROVISION_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _server_binaries() -> Path | None:
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(
        Path("/").glob(SERVER_BINARIES.lstrip("/")),
        key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.name)],
        reverse=True,
    )
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Cluster:
    """A throwaway PostgreSQL cluster on loopback, trust authentication, no fsync."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.folder = Path(tempfile.mkdtemp(prefix="provision-pg-"))
        self.data = self.folder / "data"
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            user = "postgres" if _user_exists("postgres") else "nobody"
            entry = pwd.getpwnam(user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
            self.prefix = ["runuser", "-u", user, "--"]

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, *args], capture_output=True, text=True, check=False, timeout=120)

    def start(self) -> str:
        init = self._run(
            str(self.binaries / "initdb"), "-D", str(self.data), "-U", "provision_test", "-A", "trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip()}")
        problem = ""
        for _ in range(3):  # a port taken between choosing it and binding it: choose again
            port = _free_port()
            settings = (
                f"-p {port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off"
            )
            started = self._run(
                str(self.binaries / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-t", "60",
                "-o", settings, "start",
            )  # fmt: skip
            if started.returncode == 0:
                return f"postgresql://provision_test@127.0.0.1:{port}/postgres"
            log = self.folder / "log"
            problem = log.read_text(errors="replace")[-2000:] if log.exists() else started.stderr
        raise RuntimeError(f"pg_ctl start failed: {problem.strip()}")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """An admin URL of a PostgreSQL database in which the tests may create schemas."""
    given = os.environ.get("PROVISION_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _no_postgres("psycopg is not installed")
    binaries = _server_binaries()
    if binaries is None:
        _no_postgres("no PostgreSQL: set PROVISION_TEST_POSTGRES_URL or install the server (initdb, pg_ctl)")
    assert binaries is not None
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        _no_postgres("running as root without runuser, and initdb refuses root")
    cluster = _Cluster(binaries)
    try:
        try:
            url = cluster.start()
        except RuntimeError as exc:
            _no_postgres(f"could not start a PostgreSQL cluster: {exc}")
        yield url
    finally:
        cluster.stop()


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema of its own, dropped after the test."""
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    yield with_options(postgres_url, f"-csearch_path={schema}")
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def with_options(url: str, options: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options={quote(options, safe='')}"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def location(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh store lives: a SQLite path (folder not made yet) or a PostgreSQL URL."""
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres_schema_url"))
    return str(tmp_path / ".provision" / "state.db")


@pytest.fixture
def open_at(location: str) -> Iterator[OpenStore]:
    """open_at(**kw) opens the test's store (again); everything opened is closed afterwards."""
    opened: list[Store] = []

    def make(at: str | None = None, **kw: Any) -> Store:
        store = open_store(at or location, **kw)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_at: OpenStore) -> Store:
    return open_at()


def execute(location: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run SQL on a store's database behind its back (to damage it, age it, inspect it)."""
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []
    import sqlite3

    db = sqlite3.connect(location, isolation_level=None)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()
