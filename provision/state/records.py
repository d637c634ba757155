"""What the state holds: push records, runs with their per-host and per-user outcomes, leases.

Plain frozen values, the same for every backend. Times are ISO 8601 strings in UTC
("2026-11-29T08:32:00+00:00"), as the rest of provision writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Key = tuple[str, str]  # (section, key), both lower case: provision.ini.Key


@dataclass(frozen=True)
class PushRecord:
    """The last push to one (host, user): what provision manages there and how it looked."""

    host: str
    user: str
    pushed_at: str
    managed_keys: frozenset[Key]
    managed_hash: str
    fingerprints: dict[str, str]  # account section (lower case) -> keyed fingerprint of its secret
    result: str
    # The raw values pushed (section, key) -> value, passwords left out (they are in fingerprints);
    # None for a record made before they were kept.
    managed_values: dict[Key, str] | None = None


@dataclass(frozen=True)
class RunStart:
    """What is known when a run starts."""

    id: str
    command: str  # push, rollback, health, smoke
    options: dict[str, Any]  # the run's options, as JSON
    who: str  # login name of the person (or job) that ran it
    controller: str  # host name of the machine it ran from
    started: str
    digest: str | None  # profile/template digest the run applied
    resume_of: str | None  # the run this one finishes
    hosts_total: int
    shard: str | None  # "K/N" when the inventory was split
    groups: dict[str, list[str]]  # host -> inventory groups, for per-group summaries


@dataclass(frozen=True, kw_only=True)
class RunInfo(RunStart):
    """A recorded run: its start, how it ended, and how many hosts ended in each status.

    `Store.runs()` leaves `groups` empty unless asked (`with_groups=True`): a listing of many
    large runs would otherwise load every host name; `group_names` is always filled.
    """

    status: str  # running, finished, stopped, interrupted, failed
    finished: str | None
    summary: dict[str, Any]
    counts: dict[str, int]  # host status -> number of hosts recorded with it
    group_names: tuple[str, ...] = ()

    @property
    def hosts_done(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class UserOutcome:
    user: str
    status: str
    reason: str
    backup: str | None  # the backup the run made of this user's ini, if any
    restarted: bool | None  # MicroSIP restarted for this user (None: not applicable)
    changed_keys: int


@dataclass(frozen=True)
class HostOutcome:
    host: str
    status: str
    kind: str  # what kind of outcome (unreachable, auth, ...); "" when none
    reason: str
    seconds: float
    attempts: int
    started: str
    users: tuple[UserOutcome, ...] = ()


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a lease on a host: a run, the person who started it, and where it runs."""

    run_id: str
    who: str
    controller: str


@dataclass(frozen=True)
class LeaseInfo:
    """A lease someone else holds: whose it is and until when (ISO UTC)."""

    host: str
    run_id: str
    who: str
    controller: str
    until: str
