"""`State`, the interface of the first releases, over a Store: kept until every caller uses Store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from provision.state.base import Store
from provision.state.location import open_store
from provision.state.records import Key, PushRecord


class State:
    """Open with `State.open(path)` to create it, or `State.read_only(path)` for diff/health."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.fingerprint_key = store.fingerprint_key

    @classmethod
    def open(cls, path: Path | str) -> State:
        return cls(open_store(path))

    @classmethod
    def read_only(cls, path: Path | str) -> State:
        """The recorded state if it exists; otherwise an empty state that records nothing."""
        return cls(open_store(path, read_only=True))

    def last_push(self, host: str, user: str) -> PushRecord | None:
        return self.store.last_push(host, user)

    def record_push(
        self,
        host: str,
        user: str,
        managed_keys: frozenset[Key],
        managed_hash: str,
        fingerprints: dict[str, str],
        result: str,
    ) -> None:
        pushed_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.store.record_pushes([PushRecord(host, user, pushed_at, managed_keys, managed_hash, fingerprints, result)])

    def forget(self, host: str, user: str) -> None:
        """Drop the record of a (host, user): after a rollback the state no longer holds what was pushed."""
        self.store.forget([(host, user)])

    def close(self) -> None:
        self.store.close()
