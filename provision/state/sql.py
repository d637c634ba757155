"""The queries both SQL backends share; each backend brings its connection, transactions,
error translation, lease acquisition and clock.

Queries are written once with `?` placeholders; the PostgreSQL backend turns them into
`%s`. Reading a value back goes through rows.py, so a bad row is reported by name.
"""

from __future__ import annotations

import secrets
import threading
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from provision.state import rows
from provision.state.base import MOVE_ASIDE_COST, StateError, Store
from provision.state.migrations import COLUMNS, LATEST, V1_TABLES, VERSION_TABLE, pending
from provision.state.records import HostOutcome, LeaseHolder, LeaseInfo, PushRecord, RunInfo, RunStart

#: Values per IN (...) list: well under every SQLite build's limit on bound parameters.
CHUNK = 500


class Session(Protocol):
    """One transaction's cursor, the same for both drivers."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None: ...


class SqlStore(Store):
    dialect: ClassVar[str]
    #: How the damage message ends: how to set this store aside and start a new one.
    start_over: ClassVar[str]

    def __init__(self, location: str, read_only: bool) -> None:
        self.location = location
        self.read_only = read_only
        self.fingerprint_key = b""
        self._lock = threading.RLock()

    # -- what a backend provides -----------------------------------------------------------

    @abstractmethod
    def _session(self, what: str | None) -> AbstractContextManager[Session]:
        """A transaction, rolled back on any error: a read (`what` None), whose driver errors
        become StateError, or a write of `what`, whose driver errors become StateError or
        StateWriteError naming `what` as what could not be written."""

    def _reading(self) -> AbstractContextManager[Session]:
        return self._session(None)

    def _transaction(self, what: str) -> AbstractContextManager[Session]:
        return self._session(what)

    @abstractmethod
    def _table_columns(self, session: Session) -> dict[str, set[str]]:
        """Every table of this store's schema/file with its column names."""

    @abstractmethod
    def _migration_lock(self, session: Session) -> None:
        """Inside the migration transaction: wait until no other opener migrates."""

    @abstractmethod
    def _in(self, column: str, values: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
        """`column` is one of `values`: SQL and params, split into as many queries as needed."""

    @abstractmethod
    def _insert(
        self, session: Session, table: str, columns: rows.Columns, values: list[tuple[Any, ...]], conflict: str = ""
    ) -> None:
        """Insert many rows in one go; `conflict` an ON CONFLICT clause; `columns` (name, kind)."""

    @abstractmethod
    def _now(self) -> tuple[str, list[Any]]:
        """The lease clock's "now" as SQL and params."""

    @abstractmethod
    def _later(self, seconds: float) -> tuple[str, list[Any]]:
        """The lease clock's "now + seconds" as SQL and params."""

    @abstractmethod
    def _lease_time(self, value: Any) -> str:
        """A lease time as the database returns it, as ISO UTC."""

    # -- opening ---------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Bring the schema to LATEST (or refuse), check it, and load the fingerprint key."""
        with self._reading() as session:
            version = self._version(self._table_columns(session), session)
        if version < LATEST:
            with self._transaction(f"the schema upgrade to version {LATEST}") as session:
                self._migration_lock(session)
                version = self._version(self._table_columns(session), session)
                self._migrate(session, version)
        with self._reading() as session:
            self._check_columns(self._table_columns(session))
            key = self._key(session)
        if key is None:
            with self._transaction("the fingerprint key") as session:
                session.execute(
                    "INSERT INTO meta (name, value) VALUES ('fingerprint_key', ?) ON CONFLICT (name) DO NOTHING",
                    (_random_key(),),
                )
                key = self._key(session)
        if key is None:  # pragma: no cover - the row was just written
            raise self.damaged("meta has no fingerprint_key row")
        self.fingerprint_key = key

    def _version(self, tables: dict[str, set[str]], session: Session) -> int:
        ours = set(COLUMNS) & set(tables)
        if VERSION_TABLE in tables:
            found = session.execute(f"SELECT version FROM {VERSION_TABLE}")  # noqa: S608 - a constant
            if len(found) != 1 or not isinstance(found[0][0], int) or isinstance(found[0][0], bool):
                raise self.damaged(f"{VERSION_TABLE} should hold one whole number, holds {len(found)} rows")
            version: int = found[0][0]
            if version > LATEST:
                raise StateError(
                    f"the state {self._noun} {self.location} has schema version {version}, "
                    f"written by a newer provision; this release knows versions up to {LATEST}.\n"
                    "Upgrade provision on this controller (everyone sharing this state needs the same release)."
                )
            if version < 1:
                raise self.damaged(f"{VERSION_TABLE} holds {version}, which no release wrote")
            return version
        if ours == set(V1_TABLES):
            return 1
        if ours:
            raise self._not_ours(ours)
        self._check_foreign(set(tables))
        return 0

    def _not_ours(self, tables: set[str]) -> StateError:
        """Some of the tables provision makes, without a version table: half a schema."""
        return self.damaged(
            f"unknown schema: it has the tables {', '.join(sorted(tables))} "
            f"but no {VERSION_TABLE} table and not the tables of version 1"
        )

    def _check_foreign(self, tables: set[str]) -> None:
        """A store with tables that are not ours, and none of ours: the backend decides."""

    def _migrate(self, session: Session, version: int) -> None:
        steps = pending(version)
        if not steps:
            return
        for migration in steps:
            for statement in migration.statements(self.dialect):
                session.execute(statement)
        if version < 1 or VERSION_TABLE not in self._table_columns(session):
            session.execute(f"CREATE TABLE {VERSION_TABLE} (version INTEGER NOT NULL)")
            session.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (?)", (steps[-1].version,))  # noqa: S608
        else:
            session.execute(f"UPDATE {VERSION_TABLE} SET version = ?", (steps[-1].version,))  # noqa: S608

    def _check_columns(self, tables: dict[str, set[str]]) -> None:
        for table, columns in COLUMNS.items():
            if table not in tables:
                raise self.damaged(f"unknown schema: the table {table} is missing")
            missing = columns - tables[table]
            if missing:
                raise self.damaged(f"unknown schema: the table {table} lacks {', '.join(sorted(missing))}")

    def _key(self, session: Session) -> bytes | None:
        found = session.execute("SELECT value FROM meta WHERE name = 'fingerprint_key'")
        if not found:
            return None
        value = found[0][0]
        if not isinstance(value, bytes | bytearray | memoryview) or len(bytes(value)) != 32:
            raise self.damaged("meta row 'fingerprint_key': value is not 32 bytes")
        return bytes(value)

    # -- messages --------------------------------------------------------------------------

    @property
    def _noun(self) -> str:
        return "file" if self.dialect == "sqlite" else "database"

    def damaged(self, problem: str) -> StateError:
        return StateError(
            f"the state {self._noun} {self.location} is damaged: {problem}.\n{self.start_over}: {MOVE_ASIDE_COST}."
        )

    def _bad_row(self, error: rows.BadRowError) -> StateError:
        return self.damaged(f"a bad row: {error}")

    def _writable(self) -> None:
        if self.read_only:
            raise StateError(f"the state {self.location} was opened read-only; this command cannot record")

    # -- pushes ----------------------------------------------------------------------------

    def last_push(self, host: str, user: str) -> PushRecord | None:
        with self._reading() as session:
            found = session.execute(
                f'SELECT {rows.PUSH_COLUMNS} FROM pushes WHERE host = ? AND "user" = ?',  # noqa: S608
                (host, user.casefold()),
            )
        return self._push(found[0]) if found else None

    def last_pushes(self, hosts: Iterable[str]) -> dict[tuple[str, str], PushRecord]:
        wanted = list(dict.fromkeys(hosts))
        out: dict[tuple[str, str], PushRecord] = {}
        with self._reading() as session:
            for where, params in self._in("host", wanted):
                for row in session.execute(f"SELECT {rows.PUSH_COLUMNS} FROM pushes WHERE {where}", params):  # noqa: S608
                    record = self._push(row)
                    out[(record.host, record.user.casefold())] = record
        return out

    def _push(self, row: Sequence[Any]) -> PushRecord:
        try:
            return rows.push_record(row)
        except rows.BadRowError as exc:
            raise self._bad_row(exc) from None

    def record_pushes(self, records: Iterable[PushRecord]) -> None:
        self._writable()
        latest = {(row[0], row[1]): row for row in map(rows.push_row, records)}  # a pair twice: the last counts
        if not latest:
            return
        with self._transaction(f"the push records of {_count(len(latest), 'user')}") as session:
            self._insert(
                session,
                "pushes",
                rows.PUSH_TYPES,
                list(latest.values()),
                'ON CONFLICT (host, "user") DO UPDATE SET pushed_at = excluded.pushed_at, '
                "managed_keys = excluded.managed_keys, managed_hash = excluded.managed_hash, "
                "fingerprints = excluded.fingerprints, result = excluded.result, "
                "managed_values = excluded.managed_values",
            )

    def forget(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._writable()
        values = [(host, user.casefold()) for host, user in pairs]
        if not values:
            return
        with self._transaction(f"the removal of {_count(len(values), 'push record')}") as session:
            session.executemany('DELETE FROM pushes WHERE host = ? AND "user" = ?', values)

    # -- runs ------------------------------------------------------------------------------

    def start_run(self, run: RunStart) -> None:
        self._writable()
        names = sorted({g for groups in run.groups.values() for g in groups})
        with self._transaction(f"the start of run {run.id}") as session:
            if session.execute("SELECT 1 FROM runs WHERE id = ?", (run.id,)):
                raise StateError(f"a run {run.id} is already recorded in {self.location}")
            session.execute(
                "INSERT INTO runs (id, command, options, who, controller, started, digest, resume_of, "
                "hosts_total, shard, host_groups, status, finished, summary) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', NULL, '{}')",
                (
                    run.id,
                    run.command,
                    rows.to_json(run.options),
                    run.who,
                    run.controller,
                    run.started,
                    run.digest,
                    run.resume_of,
                    int(run.hosts_total),
                    run.shard,
                    rows.to_json(run.groups),
                ),
            )
            session.executemany("INSERT INTO run_groups (grp, run_id) VALUES (?, ?)", [(g, run.id) for g in names])

    def record_hosts(self, run_id: str, hosts: Sequence[HostOutcome]) -> None:
        self._writable()
        latest = {h.host: h for h in hosts}  # a host twice in one call: its last outcome counts
        if not latest:
            return
        with self._transaction(f"the outcomes of {_count(len(latest), 'host')} of run {run_id}") as session:
            self._existing_run(session, run_id)
            (top,) = session.execute("SELECT COALESCE(MAX(seq), 0) FROM run_hosts WHERE run_id = ?", (run_id,))
            names = list(latest)
            again: list[str] = []
            for where, params in self._in("host", names):
                again += [
                    r[0]
                    for r in session.execute(
                        f"SELECT host FROM run_hosts WHERE run_id = ? AND {where}",  # noqa: S608
                        [run_id, *params],
                    )
                ]
            if again:
                session.executemany("DELETE FROM run_users WHERE run_id = ? AND host = ?", [(run_id, h) for h in again])
            self._insert(
                session,
                "run_hosts",
                rows.HOST_TYPES,
                [rows.host_row(run_id, int(top[0]) + i + 1, h) for i, h in enumerate(latest.values())],
                "ON CONFLICT (run_id, host) DO UPDATE SET "
                "status = excluded.status, kind = excluded.kind, reason = excluded.reason, "
                "seconds = excluded.seconds, attempts = excluded.attempts, started = excluded.started",
            )
            self._insert(
                session,
                "run_users",
                rows.USER_TYPES,
                [row for h in latest.values() for row in rows.user_rows(run_id, h)],
            )

    def finish_run(self, run_id: str, status: str, finished: str, summary: dict[str, Any]) -> None:
        self._writable()
        with self._transaction(f"the end of run {run_id}") as session:
            self._existing_run(session, run_id)
            session.execute(
                "UPDATE runs SET status = ?, finished = ?, summary = ? WHERE id = ?",
                (status, finished, rows.to_json(summary), run_id),
            )

    def prune(self, before: str | datetime) -> int:
        self._writable()
        with self._transaction("the removal of old runs") as session:
            old = [r[0] for r in session.execute(
                "SELECT id FROM runs WHERE started < ? AND status <> 'running'", (_iso(before),)
            )]  # fmt: skip
            for table, column in (("run_users", "run_id"), ("run_hosts", "run_id"), ("run_groups", "run_id"),
                                  ("runs", "id")):  # fmt: skip
                for where, params in self._in(column, old):
                    session.execute(f"DELETE FROM {table} WHERE {where}", params)  # noqa: S608
        return len(old)

    def _run_recorded(self, run_id: str) -> bool:
        with self._reading() as session:
            return bool(session.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)))

    def _existing_run(self, session: Session, run_id: str) -> None:
        if not session.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)):
            raise StateError(f"no run {run_id} is recorded in {self.location}")

    def runs(
        self,
        *,
        command: str | None = None,
        status: str | None = None,
        group: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        limit: int | None = 50,
        with_groups: bool = False,
    ) -> list[RunInfo]:
        where, params = ["1 = 1"], list[Any]()
        for column, value in (("command", command), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("started >= ?")
            params.append(_iso(since))
        if until is not None:
            where.append("started < ?")
            params.append(_iso(until))
        if group is not None:
            where.append("id IN (SELECT run_id FROM run_groups WHERE grp = ?)")
            params.append(group)
        sql = f"{' AND '.join(where)} ORDER BY started DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        with self._reading() as session:
            return self._load_runs(session, sql, params, with_groups)

    def get_run(self, run_id: str) -> RunInfo | None:
        if not run_id:
            return None
        with self._reading() as session:
            found = self._load_runs(session, "id = ?", [run_id], True)
            if found:
                return found[0]
            ids = [
                r[0]
                for r in session.execute(
                    "SELECT id FROM runs WHERE substr(id, 1, ?) = ? ORDER BY id DESC LIMIT 11",
                    (len(run_id), run_id),
                )
            ]
            if len(ids) > 1:
                shown = ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "")
                raise StateError(f"the run id {run_id!r} is ambiguous: it starts {shown}; give more of it")
            return self._load_runs(session, "id = ?", [ids[0]], True)[0] if ids else None

    def _load_runs(self, session: Session, where: str, params: list[Any], with_groups: bool) -> list[RunInfo]:
        columns = rows.RUN_COLUMNS + (", host_groups" if with_groups else "")
        found = session.execute(f"SELECT {columns} FROM runs WHERE {where}", params)  # noqa: S608
        ids = [r[0] for r in found]
        counts: dict[str, dict[str, int]] = {i: {} for i in ids}
        names: dict[str, list[str]] = {i: [] for i in ids}
        for clause, values in self._in("run_id", ids):
            for run_id, status, n in session.execute(
                f"SELECT run_id, status, COUNT(*) FROM run_hosts WHERE {clause} GROUP BY run_id, status",  # noqa: S608
                values,
            ):
                counts[run_id][status] = int(n)
            for run_id, name in session.execute(
                f"SELECT run_id, grp FROM run_groups WHERE {clause} ORDER BY grp",  # noqa: S608
                values,
            ):
                names[run_id].append(name)
        try:
            return [rows.run_info(r, r[13] if with_groups else None, counts[r[0]], tuple(names[r[0]])) for r in found]
        except rows.BadRowError as exc:
            raise self._bad_row(exc) from None

    def run_hosts(self, run_id: str) -> list[HostOutcome]:
        with self._reading() as session:
            hosts = session.execute(
                f"SELECT {rows.HOST_COLUMNS} FROM run_hosts WHERE run_id = ? ORDER BY seq",  # noqa: S608
                (run_id,),
            )
            users = session.execute(
                f"SELECT {rows.USER_COLUMNS} FROM run_users WHERE run_id = ? ORDER BY host, position",  # noqa: S608
                (run_id,),
            )
        try:
            by_host: dict[str, list[Any]] = {}
            for row in users:
                by_host.setdefault(row[0], []).append(rows.user_outcome(run_id, row))
            return [rows.host_outcome(run_id, row, tuple(by_host.get(row[0], ()))) for row in hosts]
        except rows.BadRowError as exc:
            raise self._bad_row(exc) from None

    def run_host_names(self, run_id: str, statuses: Iterable[str] | None = None) -> list[str]:
        sql, params = "SELECT host FROM run_hosts WHERE run_id = ?", [run_id]
        if statuses is not None:
            wanted = list(dict.fromkeys(statuses))
            if not wanted:
                return []
            sql += f" AND status IN ({', '.join('?' * len(wanted))})"
            params += wanted
        with self._reading() as session:
            return [r[0] for r in session.execute(sql + " ORDER BY seq", params)]

    # -- leases ----------------------------------------------------------------------------

    @abstractmethod
    def _acquire(self, session: Session, hosts: list[str], holder: LeaseHolder, ttl: float) -> set[str]:
        """Inside a write transaction: take every free, expired or own lease; the hosts granted."""

    def acquire(
        self, hosts: Sequence[str], holder: LeaseHolder, ttl_seconds: float
    ) -> tuple[list[str], dict[str, LeaseInfo]]:
        self._writable()
        ttl = _ttl(ttl_seconds)
        wanted = sorted(set(hosts))  # one order for everyone: concurrent acquirers never deadlock
        if not wanted:
            return [], {}
        with self._transaction(f"the leases on {_count(len(wanted), 'host')} for run {holder.run_id}") as session:
            granted = self._acquire(session, wanted, holder, ttl)
            refused = self._lease_rows(session, [h for h in wanted if h not in granted], expired_too=True)
        order = {h: i for i, h in enumerate(hosts)}
        return sorted(granted, key=order.__getitem__), refused

    def renew(self, run_id: str, hosts: Iterable[str], ttl_seconds: float) -> list[str]:
        self._writable()
        ttl = _ttl(ttl_seconds)
        wanted = sorted(set(hosts))
        if not wanted:
            return []
        later, later_params = self._later(ttl)
        held: list[str] = []
        with self._transaction(f"the renewal of leases on {_count(len(wanted), 'host')}") as session:
            for where, params in self._in("host", wanted):
                session.execute(
                    f"UPDATE leases SET expires = {later} WHERE run_id = ? AND {where}",  # noqa: S608
                    [*later_params, run_id, *params],
                )
                held += [
                    r[0]
                    for r in session.execute(
                        f"SELECT host FROM leases WHERE run_id = ? AND {where}",  # noqa: S608
                        [run_id, *params],
                    )
                ]
        return sorted(held)

    def release(self, run_id: str, hosts: Iterable[str] | None = None) -> None:
        self._writable()
        with self._transaction(f"the release of the leases of run {run_id}") as session:
            if hosts is None:
                session.execute("DELETE FROM leases WHERE run_id = ?", (run_id,))
                return
            for where, params in self._in("host", sorted(set(hosts))):
                session.execute(f"DELETE FROM leases WHERE run_id = ? AND {where}", [run_id, *params])  # noqa: S608

    def leases(self, hosts: Iterable[str] | None = None) -> dict[str, LeaseInfo]:
        with self._reading() as session:
            if hosts is None:
                return self._lease_rows(session, None, expired_too=False)
            return self._lease_rows(session, sorted(set(hosts)), expired_too=False)

    def _lease_rows(self, session: Session, hosts: list[str] | None, *, expired_too: bool) -> dict[str, LeaseInfo]:
        base = "SELECT host, run_id, who, controller, expires FROM leases WHERE 1 = 1"
        order = " ORDER BY host"
        extra: list[Any] = []
        if not expired_too:
            now, extra = self._now()
            base += f" AND expires > {now}"
        if hosts is None:
            queries = [(base + order, extra)]
        else:
            queries = [(f"{base} AND {w}{order}", extra + p) for w, p in self._in("host", hosts)]
        out: dict[str, LeaseInfo] = {}
        for sql, params in queries:
            for host, run_id, who, controller, expires in session.execute(sql, params):
                out[host] = LeaseInfo(host, run_id, who, controller, self._lease_time(expires))
        return out


def _random_key() -> bytes:
    return secrets.token_bytes(32)


def _ttl(seconds: float) -> float:
    ttl = float(seconds)
    if not ttl > 0:
        raise ValueError(f"a lease needs a positive time to live, not {seconds!r}")
    return ttl


def _iso(value: str | datetime) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
