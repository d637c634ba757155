"""The controller's record of what it pushed, per (host, user), in a local SQLite file.

Passwords cannot be compared on the workstation (MicroSIP encrypts them at start), so the
record keeps a keyed fingerprint of each secret pushed; the key never leaves this file.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from provision.errors import ProvisionError, display_path
from provision.ini import Key

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pushes (
    host TEXT NOT NULL,
    user TEXT NOT NULL,
    pushed_at TEXT NOT NULL,
    managed_keys TEXT NOT NULL,
    managed_hash TEXT NOT NULL,
    fingerprints TEXT NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (host, user)
);
"""


@dataclass(frozen=True)
class PushRecord:
    host: str
    user: str
    pushed_at: str
    managed_keys: frozenset[Key]
    managed_hash: str
    fingerprints: dict[str, str]  # account section (lower case) -> secret fingerprint
    result: str


class State:
    """Open with `State.open(path)` to create it, or `State.read_only(path)` for diff/health."""

    def __init__(self, connection: sqlite3.Connection | None, key: bytes) -> None:
        self._db = connection
        self.fingerprint_key = key

    @classmethod
    def open(cls, path: Path) -> State:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fresh = not path.exists()
            db = sqlite3.connect(path)
            if fresh:
                os.chmod(path, 0o600)
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE name = 'fingerprint_key'").fetchone()
            if row is None:
                key = secrets.token_bytes(32)
                db.execute("INSERT INTO meta VALUES ('fingerprint_key', ?)", (key,))
                db.commit()
            else:
                key = bytes(row[0])
        except (OSError, sqlite3.Error) as exc:
            raise ProvisionError(f"cannot open the state file {display_path(path)}: {exc}") from None
        return cls(db, key)

    @classmethod
    def read_only(cls, path: Path) -> State:
        """The recorded state if the file exists; otherwise an empty state that records nothing."""
        if not path.exists():
            return cls(None, secrets.token_bytes(32))
        return cls.open(path)

    def last_push(self, host: str, user: str) -> PushRecord | None:
        if self._db is None:
            return None
        row = self._db.execute(
            "SELECT host, user, pushed_at, managed_keys, managed_hash, fingerprints, result "
            "FROM pushes WHERE host = ? AND user = ?",
            (host, user.casefold()),
        ).fetchone()
        if row is None:
            return None
        keys = frozenset((s, k) for s, k in json.loads(row[3]))
        return PushRecord(row[0], row[1], row[2], keys, row[4], json.loads(row[5]), row[6])

    def record_push(
        self,
        host: str,
        user: str,
        managed_keys: frozenset[Key],
        managed_hash: str,
        fingerprints: dict[str, str],
        result: str,
    ) -> None:
        if self._db is None:
            raise ProvisionError("the state is read-only")
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO pushes VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    host,
                    user.casefold(),
                    datetime.now(UTC).isoformat(timespec="seconds"),
                    json.dumps(sorted(managed_keys)),
                    managed_hash,
                    json.dumps(fingerprints, sort_keys=True),
                    result,
                ),
            )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def forget(self, host: str, user: str) -> None:
        """Drop the record of a (host, user): after a rollback the file no longer holds what was pushed."""
        if self._db is None:
            raise ProvisionError("the state is read-only")
        with self._db:
            self._db.execute("DELETE FROM pushes WHERE host = ? AND user = ?", (host, user.casefold()))
