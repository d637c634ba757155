"""The store interface every state backend implements, and the two errors it raises.

A store is used from one thread at a time (the fleet runner's controller thread); the
backends serialize calls on their one connection, so a stray call from another thread
waits rather than corrupts, but nothing here is meant for parallel use.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from provision.errors import ExitStatus, ProvisionError
from provision.state.records import HostOutcome, LeaseHolder, LeaseInfo, PushRecord, RunInfo, RunStart

#: What moving a damaged state aside costs, said in every damage message.
MOVE_ASIDE_COST = "the next push re-sends every password once and the run history is lost"

#: The run statuses the fleet runner writes.
RUN_STATUSES = ("running", "finished", "stopped", "interrupted", "failed")


class StateError(ProvisionError):
    """The state cannot be used: damaged, written by a newer provision, unreachable, misused.

    Raised before any host is contacted when it comes from opening the store.
    """

    exit_status = ExitStatus.USAGE


class StateWriteError(ProvisionError):
    """Something could not be written (disk full, quota, read-only filesystem, lost server).

    The store stays open for reads; the caller keeps reporting the hosts it has done.
    """

    exit_status = ExitStatus.FAILED

    def __init__(self, message: str, what: str) -> None:
        super().__init__(message)
        self.what = what


class Store(ABC):
    """The controller's state: fingerprints of pushed secrets, runs, and per-host leases."""

    #: Where the state lives, fit to show a person (a path, or a URL without its password).
    location: str
    read_only: bool
    #: 32 random bytes made on first use; keys the fingerprints of pushed secrets.
    fingerprint_key: bytes

    # -- pushes ----------------------------------------------------------------------------

    @abstractmethod
    def last_push(self, host: str, user: str) -> PushRecord | None:
        """The last push to (host, user); users compare case-insensitively."""

    @abstractmethod
    def last_pushes(self, hosts: Iterable[str]) -> dict[tuple[str, str], PushRecord]:
        """Every user's last push on these hosts, keyed (host, user.casefold())."""

    @abstractmethod
    def record_pushes(self, records: Iterable[PushRecord]) -> None:
        """Replace the records of these (host, user) pairs, all in one transaction."""

    @abstractmethod
    def forget(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Drop the records of these (host, user) pairs (after a rollback, for instance)."""

    # -- runs ------------------------------------------------------------------------------

    def new_run_id(self) -> str:
        """A run id: UTC start second, then 24 random bits ("20261129T083200-3f9a1c").

        Ids sort by time; the random part keeps controllers that start in the same second
        apart, and an id this store gave out or finds recorded is never given again.
        """
        issued: set[str] = self.__dict__.setdefault("_issued_run_ids", set())
        while True:
            candidate = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
            if candidate not in issued and not self._run_recorded(candidate):
                issued.add(candidate)
                return candidate

    def _run_recorded(self, run_id: str) -> bool:
        return False

    @abstractmethod
    def start_run(self, run: RunStart) -> None:
        """Record a new run with status "running". An id already recorded is a StateError."""

    @abstractmethod
    def record_hosts(self, run_id: str, hosts: Sequence[HostOutcome]) -> None:
        """Record finished hosts of a run, with their users, in one transaction.

        A host recorded again for the same run replaces its earlier outcome.
        """

    @abstractmethod
    def finish_run(self, run_id: str, status: str, finished: str, summary: dict[str, Any]) -> None:
        """Set how a run ended."""

    @abstractmethod
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
        """Recorded runs, newest first. `since <= started < until` (ISO strings or datetimes);
        `group` keeps runs that targeted at least one host of that inventory group."""

    @abstractmethod
    def prune(self, before: str | datetime) -> int:
        """Delete the runs that started before `before` (not running ones), with their hosts and
        users; the push records and leases stay. Returns how many runs went."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunInfo | None:
        """The run with this id, or with this unique id prefix; an ambiguous prefix is a StateError."""

    @abstractmethod
    def run_hosts(self, run_id: str) -> list[HostOutcome]:
        """A run's recorded hosts with their users, in the order they were recorded."""

    @abstractmethod
    def run_host_names(self, run_id: str, statuses: Iterable[str] | None = None) -> list[str]:
        """The hosts a run recorded (with one of `statuses`, if given), in recording order."""

    # -- leases ----------------------------------------------------------------------------

    @abstractmethod
    def acquire(
        self, hosts: Sequence[str], holder: LeaseHolder, ttl_seconds: float
    ) -> tuple[list[str], dict[str, LeaseInfo]]:
        """Lease each host to `holder` for `ttl_seconds`: (granted, refused host -> its holder).

        Each host on its own and atomically: a host leased to nobody, to an expired lease, or
        already to this run is granted; a host another run holds is refused.
        """

    @abstractmethod
    def renew(self, run_id: str, hosts: Iterable[str], ttl_seconds: float) -> list[str]:
        """Extend this run's leases on these hosts; returns the hosts it still held."""

    @abstractmethod
    def release(self, run_id: str, hosts: Iterable[str] | None = None) -> None:
        """Give up this run's leases on these hosts (all of the run's leases if None)."""

    @abstractmethod
    def leases(self, hosts: Iterable[str] | None = None) -> dict[str, LeaseInfo]:
        """The leases in force (not expired), on these hosts or on all."""

    # -- lifetime --------------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Close the connection; closing twice is harmless."""

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
