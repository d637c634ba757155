"""The PostgreSQL backend: one database (or schema) shared by every admin and controller.

One connection per store object, in autocommit mode with an explicit transaction per call;
the store serializes its calls on it (see base.py: one thread at a time). A connection the
server dropped is made again on the next call. Leases use the server's clock (now()), so
controllers whose clocks disagree still agree on what has expired.

Everything the store says names the URL without its password; driver messages are
scrubbed of it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
from psycopg import conninfo

from provision.state.base import StateError, StateWriteError
from provision.state.location import redact_url, scrub, url_secrets
from provision.state.records import LeaseHolder, LeaseInfo, PushRecord
from provision.state.rows import Columns
from provision.state.sql import Session, SqlStore

#: Seconds to wait for the server when connecting, unless the URL says (connect_timeout=).
CONNECT_TIMEOUT = 10
#: Tries of a transaction the server aborted to break a deadlock between controllers.
RETRIES = 5

T = TypeVar("T")

_ARRAY_TYPES = {"text": "text[]", "int": "bigint[]", "real": "double precision[]", "bool": "boolean[]"}


class _ConflictError(StateWriteError):
    """The server aborted the transaction (deadlock, serialization): trying again is safe."""


class PostgresStore(SqlStore):
    dialect = "postgresql"
    start_over = (
        "Point the state at an empty database or schema to start a new one "
        "(or drop provision's tables there, see docs/state.md)"
    )

    def __init__(self, url: str, read_only: bool = False) -> None:
        super().__init__(redact_url(url), read_only)
        self._url = url
        self._secrets = url_secrets(url)
        self._guarded = False  # read-only sessions: only once the schema is up to date
        self._conn = self._connect()
        try:
            self._prepare()
            self._guarded = read_only
            if read_only:
                self._guard(self._conn)
        except BaseException:
            self._conn.close()
            raise

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            given = conninfo.conninfo_to_dict(self._url)
        except psycopg.Error as exc:
            raise StateError(f"the state URL {self.location} is not valid: {self._say(exc)}") from None
        options: dict[str, Any] = {}
        if "connect_timeout" not in given:
            options["connect_timeout"] = CONNECT_TIMEOUT
        if "application_name" not in given:
            options["application_name"] = "provision"
        try:
            conn = psycopg.connect(self._url, autocommit=True, **options)
        except psycopg.Error as exc:
            raise StateError(f"cannot connect to the state database {self.location}: {self._say(exc)}") from None
        if self._guarded:
            self._guard(conn)
        return conn

    def _guard(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        """A read-only store's session refuses writes on the server too."""
        try:
            conn.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            conn.close()
            raise StateError(f"cannot use the state database {self.location}: {self._say(exc)}") from None

    def _live(self, what: str | None) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn.closed or self._conn.broken:
            try:
                self._conn = self._connect()
            except StateError as exc:
                if what is None:
                    raise
                raise StateWriteError(f"could not write {what}: {exc.message}", what) from None
        return self._conn

    def _say(self, exc: BaseException) -> str:
        return scrub(str(exc).strip(), self._secrets)

    # -- the backend's part ----------------------------------------------------------------

    @contextmanager
    def _session(self, what: str | None) -> Iterator[Session]:
        """A transaction: a read (`what` None) or a write of `what`."""
        with self._lock:
            try:
                with self._begin(what) as session:
                    yield session
            except psycopg.Error as exc:
                raise self._translate(exc, what) from None

    @contextmanager
    def _begin(self, what: str | None) -> Iterator[Session]:
        """A transaction; a session the server ended since the last call (restart, fail-over,
        idle timeout) shows at BEGIN, before anything is sent, and is replaced once."""
        conn = self._live(what)
        with ExitStack() as stack:
            try:
                stack.enter_context(conn.transaction())
            except psycopg.OperationalError:
                if not (conn.broken or conn.closed):
                    raise
                conn = self._live(what)
                stack.enter_context(conn.transaction())
            yield _Session(stack.enter_context(conn.cursor()))

    def _translate(self, exc: psycopg.Error, what: str | None) -> Exception:
        """A driver error as the user's error; None for `what` while reading."""
        code = exc.sqlstate or ""
        message = self._say(exc)
        doing = f"could not write {what} to" if what else "cannot read"
        if code in ("40P01", "40001") and what:
            return _ConflictError(f"{doing} the state database {self.location}: {message}", what)
        if code.startswith(("08", "53", "57")) or code == "25006" or (not code and _lost(exc)):
            # connection lost, disk full or out of resources, server shutting down, read-only server
            if what:
                return StateWriteError(f"{doing} the state database {self.location}: {message}", what)
            return StateError(f"{doing} the state database {self.location}: {message}")
        if code == "42501":
            return StateError(
                f"{doing} the state database {self.location}: {message}\n"
                "The role in the URL needs to own provision's tables (see docs/state.md)."
            )
        if code == "3F000":
            return StateError(f"the state database {self.location} has no schema to use: {message}")
        if code in ("42P01", "42703", "42804", "22P02", "XX001", "XX002"):
            return self.damaged(message)
        if code.startswith("23"):
            return StateError(f"{doing} the state database {self.location}: {message}")
        return exc  # anything else is a bug in provision: keep its traceback

    def _not_ours(self, tables: set[str]) -> StateError:
        # A shared schema may hold another application's tables of these names: never advise
        # dropping them.
        return StateError(
            f"the state database {self.location} has tables named {', '.join(sorted(tables))} but no "
            "provision schema: if they are not provision's, give provision a database or schema of its own "
            "(docs/state.md); if they are, the state is damaged"
        )

    def _table_columns(self, session: Session) -> dict[str, set[str]]:
        tables: dict[str, set[str]] = {}
        for table, column in session.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        ):
            tables.setdefault(table, set()).add(column)
        return tables

    def _migration_lock(self, session: Session) -> None:
        # Held to the end of the transaction: a second controller opening the same database
        # waits here, then finds the schema up to date.
        session.execute("SELECT pg_advisory_xact_lock(hashtext('provision state ' || COALESCE(current_schema(), '')))")

    def _in(self, column: str, values: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
        if values:
            yield f"{column} = ANY(?)", [list(values)]

    def _insert(
        self, session: Session, table: str, columns: Columns, values: list[tuple[Any, ...]], conflict: str = ""
    ) -> None:
        # One statement with one array per column: a statement per row costs the client more
        # than the server's whole insert.
        if not values:
            return
        names = ", ".join(name for name, _ in columns)
        arrays = ", ".join(f"?::{_ARRAY_TYPES[kind]}" for _, kind in columns)
        session.execute(
            f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {conflict}",  # noqa: S608
            [list(column) for column in zip(*values, strict=True)],
        )

    def _now(self) -> tuple[str, list[Any]]:
        return "now()", []

    def _later(self, seconds: float) -> tuple[str, list[Any]]:
        return "now() + make_interval(secs => ?)", [seconds]

    def _lease_time(self, value: Any) -> str:
        if not isinstance(value, datetime):
            raise self.damaged(f"a lease time is {type(value).__name__}, not a timestamp")
        return value.astimezone(UTC).isoformat(timespec="seconds")

    def _acquire(self, session: Session, hosts: list[str], holder: LeaseHolder, ttl: float) -> set[str]:
        # A conflicting row is locked even when the WHERE below keeps it: the refused holders
        # read next in this transaction are the ones that refused us. Sorted: no deadlock
        # between acquirers.
        found = session.execute(
            "INSERT INTO leases (host, run_id, who, controller, acquired, expires) "
            "SELECT h, ?, ?, ?, now(), now() + make_interval(secs => ?) FROM unnest(?::text[]) AS t (h) ORDER BY h "
            "ON CONFLICT (host) DO UPDATE SET "
            "acquired = CASE WHEN leases.run_id = excluded.run_id THEN leases.acquired ELSE excluded.acquired END, "
            "run_id = excluded.run_id, who = excluded.who, controller = excluded.controller, "
            "expires = excluded.expires "
            "WHERE leases.expires <= now() OR leases.run_id = excluded.run_id "
            "RETURNING host",
            (holder.run_id, holder.who, holder.controller, ttl, hosts),
        )
        return {r[0] for r in found}

    # Lease and push writes can meet another controller's on the same rows; the server then
    # aborts one transaction to break the deadlock, and it is simply tried again.

    def acquire(
        self, hosts: Sequence[str], holder: LeaseHolder, ttl_seconds: float
    ) -> tuple[list[str], dict[str, LeaseInfo]]:
        return _retry(lambda: super(PostgresStore, self).acquire(hosts, holder, ttl_seconds))

    def renew(self, run_id: str, hosts: Iterable[str], ttl_seconds: float) -> list[str]:
        wanted = list(hosts)
        return _retry(lambda: super(PostgresStore, self).renew(run_id, wanted, ttl_seconds))

    def release(self, run_id: str, hosts: Iterable[str] | None = None) -> None:
        wanted = None if hosts is None else list(hosts)
        _retry(lambda: super(PostgresStore, self).release(run_id, wanted))

    def record_pushes(self, records: Iterable[PushRecord]) -> None:
        ordered = sorted(records, key=lambda r: (r.host, r.user.casefold()))
        _retry(lambda: super(PostgresStore, self).record_pushes(ordered))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _retry(work: Callable[[], T]) -> T:
    for _ in range(RETRIES - 1):
        try:
            return work()
        except _ConflictError:
            continue
    return work()


def _lost(exc: psycopg.Error) -> bool:
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


class _Session:
    def __init__(self, cursor: psycopg.Cursor[tuple[Any, ...]]) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(_placeholders(sql), params)
        return self._cursor.fetchall() if self._cursor.description else []

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        values = list(params)
        if values:
            self._cursor.executemany(_placeholders(sql), values)


@lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    """The shared queries' `?` as psycopg's `%s` (no query has a literal `?` or `%`)."""
    return sql.replace("?", "%s")
