"""Every state test runs on both stores, SQLite and PostgreSQL (the `location` fixture of
tests/conftest.py), through these helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from provision.state import Store, open_store

from conftest import with_options

__all__ = ["OpenStore", "execute", "with_options"]

OpenStore = Callable[..., Store]


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
