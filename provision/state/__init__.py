"""The controller's state: what was pushed (with keyed fingerprints of the secrets), runs
with their per-host and per-user outcomes, and per-host leases.

    from provision.state import open_store
    with open_store(".provision/state.db") as store:           # SQLite, the default
        ...
    with open_store("postgresql://provision@db.example.com/provision") as store:
        ...

docs/state.md says what is stored and how to set up PostgreSQL for several controllers.
"""

from __future__ import annotations

from provision.state.base import MOVE_ASIDE_COST, RUN_STATUSES, StateError, StateWriteError, Store
from provision.state.empty import EmptyStore
from provision.state.location import is_postgres_url, open_store, redact_url
from provision.state.records import (
    HostOutcome,
    LeaseHolder,
    LeaseInfo,
    PushRecord,
    RunInfo,
    RunStart,
    UserOutcome,
)

__all__ = [
    "MOVE_ASIDE_COST",
    "RUN_STATUSES",
    "EmptyStore",
    "HostOutcome",
    "LeaseHolder",
    "LeaseInfo",
    "PushRecord",
    "RunInfo",
    "RunStart",
    "StateError",
    "StateWriteError",
    "Store",
    "UserOutcome",
    "is_postgres_url",
    "open_store",
    "redact_url",
]
