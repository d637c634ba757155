"""The SQLite backend: one file on the controller, embedded, nothing to set up.

The file is made 0600 in a 0700 folder (it holds the key of the secret fingerprints). It
runs in WAL mode with a busy timeout, so two provision processes on one machine can share
it: readers never wait, a writer waits up to BUSY_SECONDS for the other's transaction.
Leases use this machine's clock.

Opening runs `PRAGMA quick_check` (every page and b-tree, not the indexes against their
tables): about 0.1 s for a 10 MB file and a second for 100 MB, paid once per command, so a
damaged file is found before any host is contacted rather than in the middle of a run.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provision.errors import display_path
from provision.state.base import StateError, StateWriteError
from provision.state.records import LeaseHolder
from provision.state.rows import Columns
from provision.state.sql import CHUNK, Session, SqlStore

#: How long a write waits for another process's transaction on the same file.
BUSY_SECONDS = 30.0

# The primary result codes (the low byte of an extended code) that mean "cannot write here".
_WRITE_FAILURES = {
    sqlite3.SQLITE_FULL: "the disk or quota is full",
    sqlite3.SQLITE_IOERR: "the disk refused the write (full, over quota, or failing)",
    sqlite3.SQLITE_READONLY: "the file or its filesystem is read-only",
    sqlite3.SQLITE_CANTOPEN: "the file cannot be opened for writing",
    sqlite3.SQLITE_PERM: "permission denied",
    sqlite3.SQLITE_BUSY: f"another process kept it locked for {BUSY_SECONDS:.0f} s",
    sqlite3.SQLITE_LOCKED: f"another process kept it locked for {BUSY_SECONDS:.0f} s",
}
_DAMAGE = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


class SqliteStore(SqlStore):
    dialect = "sqlite"
    start_over = "Move it aside (with its -wal and -shm files, if any) to start a new one"

    def __init__(self, path: Path, read_only: bool = False) -> None:
        super().__init__(display_path(path), read_only)
        self.path = path
        # Openers of a new file race to make it (WAL, the schema): SQLite answers a loser "locked"
        # at once, without waiting, where waiting would have been safe. Opening waits and tries again.
        deadline = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                self._open(read_only)
                return
            except (StateError, StateWriteError) as exc:
                if not getattr(exc, "busy", False) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _open(self, read_only: bool) -> None:
        self._db = self._connect()
        try:
            self._quick_check()
            self._prepare()
            if read_only:
                self._db.execute("PRAGMA query_only = ON")
        except BaseException:
            self._db.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        if sqlite3.sqlite_version_info < (3, 24, 0):
            raise StateError(f"the state needs SQLite 3.24 or later; this Python has {sqlite3.sqlite_version}")
        if self.path.is_dir():
            raise StateError(f"the state file {self.location} is a folder; give the path of a file")
        try:
            if not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, mode=0o700)
                os.chmod(self.path.parent, 0o700)
            # Made 0600 before SQLite opens it: never readable by others, not even for a moment.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        except OSError as exc:
            raise StateWriteError(
                f"cannot create the state file {self.location}: {exc.strerror or exc}", "the state file"
            ) from None
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the state file {self.location}: {exc}") from None
        try:
            db.execute("PRAGMA foreign_keys = ON")
            if not self.read_only:
                db.execute("PRAGMA journal_mode = WAL")
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            db.close()
            raise self._read_error(exc) from None
        return db

    def _quick_check(self) -> None:
        try:
            problems = [r[0] for r in self._db.execute("PRAGMA quick_check(5)").fetchall()]
        except sqlite3.Error as exc:
            raise self._read_error(exc) from None
        if problems != ["ok"]:
            raise self.damaged("; ".join(str(p) for p in problems))

    # -- the backend's part ----------------------------------------------------------------

    @contextmanager
    def _session(self, what: str | None) -> Iterator[Session]:
        """A transaction: a read (`what` None) or a write of `what`, which takes the write
        lock at once (BEGIN IMMEDIATE: no upgrade deadlock later)."""
        with self._lock:
            try:
                self._db.execute("BEGIN" if what is None else "BEGIN IMMEDIATE")
                yield _Session(self._db)
                self._db.execute("COMMIT")
            except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
                self._rollback()
                raise
            except sqlite3.Error as exc:
                self._rollback()
                raise (self._read_error(exc) if what is None else self._write_error(exc, what)) from None
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite has already rolled back (disk full, I/O error); nothing is half-written

    def _read_error(self, exc: sqlite3.Error) -> Exception:
        code = _primary(exc)
        if code in _DAMAGE or _schema_problem(exc):
            return self.damaged(str(exc))
        if code in _WRITE_FAILURES:
            error = StateError(f"cannot read the state file {self.location}: {_WRITE_FAILURES[code]} ({exc})")
            error.busy = code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)  # type: ignore[attr-defined]
            return error
        return exc  # anything else is a bug in provision: keep its traceback

    def _write_error(self, exc: sqlite3.Error, what: str) -> Exception:
        code = _primary(exc)
        if code in _WRITE_FAILURES:
            error = StateWriteError(
                f"could not write {what} to the state file {self.location}: {_WRITE_FAILURES[code]} ({exc})", what
            )
            error.busy = code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)  # type: ignore[attr-defined]
            return error
        if code in _DAMAGE or _schema_problem(exc):
            return self.damaged(str(exc))
        if isinstance(exc, sqlite3.IntegrityError):
            return StateError(f"could not write {what} to the state file {self.location}: {exc}")
        return exc

    def _table_columns(self, session: Session) -> dict[str, set[str]]:
        tables: dict[str, set[str]] = {}
        for table, column in session.execute(
            "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p WHERE m.type = 'table'"
        ):
            tables.setdefault(table, set()).add(column)
        return tables

    def _check_foreign(self, tables: set[str]) -> None:
        other = tables - {"sqlite_sequence", "sqlite_stat1"}
        if other:
            raise StateError(
                f"{self.location} is not a provision state file: it holds the tables {', '.join(sorted(other))}.\n"
                "Give the state a path of its own (--state)."
            )

    def _migration_lock(self, session: Session) -> None:
        """BEGIN IMMEDIATE already holds the file's write lock: a second opener waits for it."""

    def _in(self, column: str, values: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
        for start in range(0, len(values), CHUNK):
            chunk = list(values[start : start + CHUNK])
            yield f"{column} IN ({', '.join('?' * len(chunk))})", chunk

    def _insert(
        self, session: Session, table: str, columns: Columns, values: list[tuple[Any, ...]], conflict: str = ""
    ) -> None:
        names = ", ".join(name for name, _ in columns)
        marks = ", ".join("?" * len(columns))
        session.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks}) {conflict}", values)  # noqa: S608

    def _now(self) -> tuple[str, list[Any]]:
        return "?", [time.time()]

    def _later(self, seconds: float) -> tuple[str, list[Any]]:
        return "?", [time.time() + seconds]

    def _lease_time(self, value: Any) -> str:
        return datetime.fromtimestamp(float(value), UTC).isoformat(timespec="seconds")

    def _acquire(self, session: Session, hosts: list[str], holder: LeaseHolder, ttl: float) -> set[str]:
        now = time.time()
        session.executemany(
            "INSERT INTO leases (host, run_id, who, controller, acquired, expires) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (host) DO UPDATE SET "
            "acquired = CASE WHEN leases.run_id = excluded.run_id THEN leases.acquired ELSE excluded.acquired END, "
            "run_id = excluded.run_id, who = excluded.who, controller = excluded.controller, "
            "expires = excluded.expires "
            "WHERE leases.expires <= ? OR leases.run_id = excluded.run_id",
            [(h, holder.run_id, holder.who, holder.controller, now, now + ttl, now) for h in hosts],
        )
        granted: set[str] = set()
        for where, params in self._in("host", hosts):
            granted.update(
                r[0]
                for r in session.execute(
                    f"SELECT host FROM leases WHERE run_id = ? AND {where}",  # noqa: S608
                    [holder.run_id, *params],
                )
            )
        return granted

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Session:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, params).fetchall()

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        self._db.executemany(sql, params)


def _schema_problem(exc: sqlite3.Error) -> bool:
    """A table or column the schema check did not expect to miss (changed by hand since)."""
    return _primary(exc) == sqlite3.SQLITE_ERROR and str(exc).startswith(("no such table", "no such column"))


def _primary(exc: sqlite3.Error) -> int:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else -1
