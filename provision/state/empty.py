"""The store of a read-only command when no state file exists yet: empty, and records nothing."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from provision.state.base import StateError, Store
from provision.state.records import HostOutcome, LeaseHolder, LeaseInfo, PushRecord, RunInfo, RunStart


class EmptyStore(Store):
    """Nothing was pushed, no run recorded, no lease held. Every write is refused.

    Its fingerprint key is random: any recorded fingerprint would differ, as it should when
    there is no record.
    """

    def __init__(self, location: str) -> None:
        self.location = location
        self.read_only = True
        self.fingerprint_key = secrets.token_bytes(32)

    def _refuse(self) -> StateError:
        return StateError(f"the state {self.location} was opened read-only; this command cannot record")

    def last_push(self, host: str, user: str) -> PushRecord | None:
        return None

    def last_pushes(self, hosts: Iterable[str]) -> dict[tuple[str, str], PushRecord]:
        return {}

    def record_pushes(self, records: Iterable[PushRecord]) -> None:
        raise self._refuse()

    def forget(self, pairs: Iterable[tuple[str, str]]) -> None:
        raise self._refuse()

    def prune(self, before: str | datetime) -> int:
        raise self._refuse()

    def start_run(self, run: RunStart) -> None:
        raise self._refuse()

    def record_hosts(self, run_id: str, hosts: Sequence[HostOutcome]) -> None:
        raise self._refuse()

    def finish_run(self, run_id: str, status: str, finished: str, summary: dict[str, Any]) -> None:
        raise self._refuse()

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
        return []

    def get_run(self, run_id: str) -> RunInfo | None:
        return None

    def run_hosts(self, run_id: str) -> list[HostOutcome]:
        return []

    def run_host_names(self, run_id: str, statuses: Iterable[str] | None = None) -> list[str]:
        return []

    def acquire(
        self, hosts: Sequence[str], holder: LeaseHolder, ttl_seconds: float
    ) -> tuple[list[str], dict[str, LeaseInfo]]:
        raise self._refuse()

    def renew(self, run_id: str, hosts: Iterable[str], ttl_seconds: float) -> list[str]:
        raise self._refuse()

    def release(self, run_id: str, hosts: Iterable[str] | None = None) -> None:
        raise self._refuse()

    def leases(self, hosts: Iterable[str] | None = None) -> dict[str, LeaseInfo]:
        return {}

    def close(self) -> None:
        pass
