"""Records to table rows and back. Reading checks every value, so a bad row is named, not a crash."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from provision.state.records import HostOutcome, PushRecord, RunInfo, UserOutcome


class BadRowError(Exception):
    """A row whose value cannot be read back (internal: the store turns it into a StateError)."""

    def __init__(self, table: str, key: str, column: str, problem: str) -> None:
        super().__init__(f"{table} row {key}: {column} {problem}")
        self.table, self.key, self.column, self.problem = table, key, column, problem


#: A table's columns as (name, kind), kind one of text, int, real, bool: in the order of its rows.
Columns = tuple[tuple[str, str], ...]

PUSH_COLUMNS = 'host, "user", pushed_at, managed_keys, managed_hash, fingerprints, result, managed_values'
PUSH_TYPES: Columns = tuple((c.strip(), "text") for c in PUSH_COLUMNS.split(","))
HOST_TYPES: Columns = (
    ("run_id", "text"), ("host", "text"), ("seq", "int"), ("status", "text"), ("kind", "text"),
    ("reason", "text"), ("seconds", "real"), ("attempts", "int"), ("started", "text"),
)  # fmt: skip
USER_TYPES: Columns = (
    ("run_id", "text"), ("host", "text"), ("position", "int"), ('"user"', "text"), ("status", "text"),
    ("reason", "text"), ("backup", "text"), ("restarted", "bool"), ("changed_keys", "int"),
)  # fmt: skip
RUN_COLUMNS = (
    "id, command, options, who, controller, started, digest, resume_of, hosts_total, shard, status, finished, summary"
)
HOST_COLUMNS = "host, status, kind, reason, seconds, attempts, started"
USER_COLUMNS = 'host, "user", status, reason, backup, restarted, changed_keys'


def to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)


def text(value: str) -> str:
    """Free text as a database keeps it: PostgreSQL text cannot hold NUL characters."""
    return value.replace("\x00", "\ufffd")


def push_row(record: PushRecord) -> tuple[Any, ...]:
    return (
        record.host,
        record.user.casefold(),
        record.pushed_at,
        to_json(sorted(record.managed_keys)),
        record.managed_hash,
        to_json(record.fingerprints),
        record.result,
        None
        if record.managed_values is None
        else to_json(sorted([s, k, v] for (s, k), v in record.managed_values.items())),
    )


def push_record(row: Sequence[Any]) -> PushRecord:
    """`row` in PUSH_COLUMNS order. Kept quick: a command reads every user's record before it
    contacts any host (40,000 rows for 20,000 hosts), and most rows share their managed keys."""
    host, user, pushed_at, keys, managed_hash, fingerprints, result, values = row
    if not type(host) is type(user) is type(pushed_at) is type(managed_hash) is type(result) is str:
        cell = _Cells("pushes", row)
        for column, value in (("host", host), ("user", user), ("pushed_at", pushed_at)):
            cell.string(column, value)
        cell.string("managed_hash", managed_hash)
        cell.string("result", result)
    try:
        managed = _managed_keys(keys)
    except ValueError as exc:
        raise _Cells("pushes", row).bad("managed_keys", str(exc)) from None
    try:
        prints = json.loads(fingerprints) if type(fingerprints) is str else None
    except ValueError as exc:
        raise _Cells("pushes", row).bad("fingerprints", f"is not valid JSON ({exc})") from None
    if type(prints) is not dict or not all(type(v) is str for v in prints.values()):
        raise _Cells("pushes", row).bad("fingerprints", "is not a JSON object of text values")
    pushed = None
    if values is not None:
        try:
            triples = json.loads(values) if type(values) is str else None
            if type(triples) is not list or not all(
                type(t) is list and len(t) == 3 and all(type(p) is str for p in t) for t in triples
            ):
                raise ValueError("not a JSON list of [section, key, value]")
        except ValueError as exc:
            raise _Cells("pushes", row).bad("managed_values", str(exc)) from None
        pushed = {(s, k): v for s, k, v in triples}
    return PushRecord(host, user, pushed_at, managed, managed_hash, prints, result, pushed)


@lru_cache(maxsize=4096)
def _managed_keys(text: Any) -> frozenset[tuple[str, str]]:
    if type(text) is not str:
        raise ValueError(f"is {type(text).__name__}, not JSON text")
    try:
        keys = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"is not valid JSON ({exc})") from None
    if type(keys) is not list:
        raise ValueError("is JSON but not a list")
    pairs: set[tuple[str, str]] = set()
    for pair in keys:
        if not (type(pair) is list and len(pair) == 2 and type(pair[0]) is str and type(pair[1]) is str):
            raise ValueError("holds an entry that is not a [section, key] pair")
        pairs.add((pair[0], pair[1]))
    return frozenset(pairs)


def run_info(
    row: Sequence[Any],
    groups: Any,
    counts: dict[str, int],
    group_names: tuple[str, ...],
) -> RunInfo:
    """`row` in RUN_COLUMNS order; `groups` the host_groups text, or None when not loaded."""
    cell = _Cells("runs", repr(row[0]))
    host_groups: dict[str, list[str]] = {}
    if groups is not None:
        loaded = cell.json_of("host_groups", groups, dict)
        for host, names in loaded.items():
            if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                raise cell.bad("host_groups", f"gives {host!r} something other than a list of group names")
            host_groups[host] = names
    return RunInfo(
        id=cell.string("id", row[0]),
        command=cell.string("command", row[1]),
        options=cell.json_of("options", row[2], dict),
        who=cell.string("who", row[3]),
        controller=cell.string("controller", row[4]),
        started=cell.string("started", row[5]),
        digest=cell.optional_string("digest", row[6]),
        resume_of=cell.optional_string("resume_of", row[7]),
        hosts_total=cell.whole("hosts_total", row[8]),
        shard=cell.optional_string("shard", row[9]),
        groups=host_groups,
        status=cell.string("status", row[10]),
        finished=cell.optional_string("finished", row[11]),
        summary=cell.json_of("summary", row[12], dict),
        counts=counts,
        group_names=group_names,
    )


def host_row(run_id: str, seq: int, host: HostOutcome) -> tuple[Any, ...]:
    seconds = float(host.seconds)
    return (
        run_id,
        host.host,
        seq,
        text(host.status),
        text(host.kind),
        text(host.reason),
        seconds if math.isfinite(seconds) else 0.0,
        int(host.attempts),
        host.started,
    )


def user_rows(run_id: str, host: HostOutcome) -> list[tuple[Any, ...]]:
    return [
        (
            run_id,
            host.host,
            position,
            u.user,
            text(u.status),
            text(u.reason),
            u.backup,
            u.restarted,
            int(u.changed_keys),
        )
        for position, u in enumerate(host.users)
    ]


def host_outcome(run_id: str, row: Sequence[Any], users: tuple[UserOutcome, ...]) -> HostOutcome:
    cell = _Cells("run_hosts", f"({run_id!r}, {row[0]!r})")
    seconds = row[4]
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        raise cell.bad("seconds", "is not a number")
    return HostOutcome(
        cell.string("host", row[0]),
        cell.string("status", row[1]),
        cell.string("kind", row[2]),
        cell.string("reason", row[3]),
        float(seconds),
        cell.whole("attempts", row[5]),
        cell.string("started", row[6]),
        users,
    )


def user_outcome(run_id: str, row: Sequence[Any]) -> UserOutcome:
    """`row` in USER_COLUMNS order."""
    cell = _Cells("run_users", f"({run_id!r}, {row[0]!r}, {row[1]!r})")
    restarted = row[5]
    if restarted is not None and restarted not in (0, 1):  # SQLite keeps booleans as 0/1
        raise cell.bad("restarted", "is neither true, false nor empty")
    return UserOutcome(
        cell.string("user", row[1]),
        cell.string("status", row[2]),
        cell.string("reason", row[3]),
        cell.optional_string("backup", row[4]),
        None if restarted is None else bool(restarted),
        cell.whole("changed_keys", row[6]),
    )


class _Cells:
    """Typed reads of one row's values; a wrong type or bad JSON is a BadRowError naming the column.

    `key` names the row: text, or the row itself, whose first two values then name it.
    """

    def __init__(self, table: str, key: str | Sequence[Any]) -> None:
        self.table, self._key = table, key

    @property
    def key(self) -> str:
        return self._key if isinstance(self._key, str) else f"({self._key[0]!r}, {self._key[1]!r})"

    def bad(self, column: str, problem: str) -> BadRowError:
        return BadRowError(self.table, self.key, column, problem)

    def string(self, column: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.bad(column, f"is {type(value).__name__}, not text")
        return value

    def optional_string(self, column: str, value: Any) -> str | None:
        return None if value is None else self.string(column, value)

    def whole(self, column: str, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.bad(column, f"is {type(value).__name__}, not a whole number")
        return value

    def json_of(self, column: str, value: Any, kind: type[Any]) -> Any:
        if not isinstance(value, str):
            raise self.bad(column, f"is {type(value).__name__}, not JSON text")
        try:
            loaded = json.loads(value)
        except ValueError as exc:
            raise self.bad(column, f"is not valid JSON ({exc})") from None
        if not isinstance(loaded, kind):
            expected = "an object" if kind is dict else "a list"
            raise self.bad(column, f"is JSON but not {expected}")
        return loaded
