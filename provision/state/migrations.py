"""The state's schema, as numbered migrations with the SQL for each dialect.

Version 1 is the schema of the first releases (meta + pushes, no version table): a file
they wrote is recognised by its tables and upgraded in place. A `schema_version` table
with one row holds the version from then on. Every migration a store needs runs in one
transaction, under a lock that keeps a second opener waiting until it is done.

To change the schema: append a Migration with the next number and both dialects' SQL,
extend COLUMNS, and add a test that opens a file of the previous version.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    title: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, dialect: str) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgresql


_RUNS = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    options TEXT NOT NULL,
    who TEXT NOT NULL,
    controller TEXT NOT NULL,
    started TEXT NOT NULL,
    digest TEXT,
    resume_of TEXT,
    hosts_total INTEGER NOT NULL,
    shard TEXT,
    host_groups TEXT NOT NULL,
    status TEXT NOT NULL,
    finished TEXT,
    summary TEXT NOT NULL
)"""

_RUN_GROUPS = """
CREATE TABLE run_groups (
    grp TEXT NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    PRIMARY KEY (grp, run_id)
)"""

_RUN_HOSTS = """
CREATE TABLE run_hosts (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    host TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    seconds {real} NOT NULL,
    attempts INTEGER NOT NULL,
    started TEXT NOT NULL,
    PRIMARY KEY (run_id, host)
)"""

_RUN_USERS = """
CREATE TABLE run_users (
    run_id TEXT NOT NULL,
    host TEXT NOT NULL,
    position INTEGER NOT NULL,
    "user" TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    backup TEXT,
    restarted {boolean},
    changed_keys INTEGER NOT NULL,
    PRIMARY KEY (run_id, host, position),
    FOREIGN KEY (run_id, host) REFERENCES run_hosts (run_id, host) ON DELETE CASCADE
)"""

# Lease times: seconds since the epoch on the controller's clock (SQLite), the server's
# clock (PostgreSQL), so that controllers sharing a server agree on what has expired.
_LEASES = """
CREATE TABLE leases (
    host TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    who TEXT NOT NULL,
    controller TEXT NOT NULL,
    acquired {time} NOT NULL,
    expires {time} NOT NULL
)"""

_V2_INDEXES = (
    "CREATE INDEX runs_by_start ON runs (started)",
    "CREATE INDEX run_hosts_by_seq ON run_hosts (run_id, seq)",
    "CREATE INDEX run_hosts_by_status ON run_hosts (run_id, status)",
    "CREATE INDEX leases_by_run ON leases (run_id)",
)


def _v2(real: str, boolean: str, time: str) -> tuple[str, ...]:
    return (
        _RUNS,
        _RUN_GROUPS,
        _RUN_HOSTS.format(real=real),
        _RUN_USERS.format(boolean=boolean),
        _LEASES.format(time=time),
        *_V2_INDEXES,
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "fingerprint key and the last push per (host, user)",
        sqlite=(
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
            """CREATE TABLE pushes (
                host TEXT NOT NULL,
                user TEXT NOT NULL,
                pushed_at TEXT NOT NULL,
                managed_keys TEXT NOT NULL,
                managed_hash TEXT NOT NULL,
                fingerprints TEXT NOT NULL,
                result TEXT NOT NULL,
                PRIMARY KEY (host, user)
            )""",
        ),
        postgresql=(
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL)",
            """CREATE TABLE pushes (
                host TEXT NOT NULL,
                "user" TEXT NOT NULL,
                pushed_at TEXT NOT NULL,
                managed_keys TEXT NOT NULL,
                managed_hash TEXT NOT NULL,
                fingerprints TEXT NOT NULL,
                result TEXT NOT NULL,
                PRIMARY KEY (host, "user")
            )""",
        ),
    ),
    Migration(
        2,
        "runs with per-host and per-user outcomes, and per-host leases",
        sqlite=_v2("REAL", "INTEGER", "REAL"),
        postgresql=_v2("DOUBLE PRECISION", "BOOLEAN", "TIMESTAMPTZ"),
    ),
    Migration(
        3,
        "the values pushed (passwords only by fingerprint), so health tells drift from a pending change",
        sqlite=("ALTER TABLE pushes ADD COLUMN managed_values TEXT",),
        postgresql=("ALTER TABLE pushes ADD COLUMN managed_values TEXT",),
    ),
)

LATEST = MIGRATIONS[-1].version

VERSION_TABLE = "schema_version"

#: The columns each table has at LATEST; opening checks them, so an unknown schema is
#: reported when the store opens rather than halfway through a run.
COLUMNS: dict[str, frozenset[str]] = {
    "meta": frozenset({"name", "value"}),
    "pushes": frozenset(
        {"host", "user", "pushed_at", "managed_keys", "managed_hash", "fingerprints", "result", "managed_values"}
    ),
    "runs": frozenset(
        {
            "id",
            "command",
            "options",
            "who",
            "controller",
            "started",
            "digest",
            "resume_of",
            "hosts_total",
            "shard",
            "host_groups",
            "status",
            "finished",
            "summary",
        }
    ),
    "run_groups": frozenset({"grp", "run_id"}),
    "run_hosts": frozenset({"run_id", "host", "seq", "status", "kind", "reason", "seconds", "attempts", "started"}),
    "run_users": frozenset(
        {"run_id", "host", "position", "user", "status", "reason", "backup", "restarted", "changed_keys"}
    ),
    "leases": frozenset({"host", "run_id", "who", "controller", "acquired", "expires"}),
    VERSION_TABLE: frozenset({"version"}),
}

#: The tables of version 1, which had no version table.
V1_TABLES = ("meta", "pushes")


def pending(version: int) -> tuple[Migration, ...]:
    """The migrations a store at `version` (0: empty) needs, in order."""
    return tuple(m for m in MIGRATIONS if m.version > version)
