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
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from provision.state import Store, open_store

from .pgcluster import Cluster, ClusterError, server_binaries

OpenStore = Callable[..., Store]


def _require() -> bool:
    return os.environ.get("PROVISION_REQUIRE_POSTGRES", "") not in ("", "0")


def _no_postgres(reason: str) -> None:
    if _require():
        pytest.fail(f"PROVISION_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


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
    binaries = server_binaries()
    if binaries is None:
        _no_postgres("no PostgreSQL: set PROVISION_TEST_POSTGRES_URL or install the server (initdb, pg_ctl)")
    assert binaries is not None
    cluster = None
    try:
        try:
            cluster = Cluster(binaries)
            url = cluster.start()
        except ClusterError as exc:
            _no_postgres(f"could not start a PostgreSQL cluster: {exc}")
        yield url
    finally:
        if cluster is not None:
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
