"""Hosts from CSV (an export from an asset database), listed in the inventory's `hosts_csv`.

Columns (the first row names them, in any order): `host` (required; a name or a range
such as ws-[01:50]), `groups` and `profiles` (names separated by ';', ',' or spaces),
`address`, `port`, `scheme`, `auth`, `ca_bundle` (the host's connection). Empty cells
are not set. A row becomes a host exactly as if it were written under `hosts:`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import Problem
from provision.model.csvfile import read_csv
from provision.model.hostrange import HostRangeError, expand_host_range
from provision.model.source import FieldPath, Origin
from provision.model.values import shown

COLUMNS = ("host", "groups", "profiles", "address", "port", "scheme", "auth", "ca_bundle")
_LISTS = ("groups", "profiles")
_CONNECTION = ("address", "port", "scheme", "auth", "ca_bundle")
_SEPARATORS = re.compile(r"[;,\s]+")


@dataclass
class CsvHost:
    name: str
    data: dict[str, Any]
    origins: dict[FieldPath, Origin]  # relative to the host's mapping
    names: dict[FieldPath, str] = field(default_factory=dict)  # the column each field came from


def load_hosts_csv(path: Path) -> tuple[list[CsvHost], list[Problem]]:
    """Each row's hosts (a range gives several), with the line of every cell, and the rows'
    problems. A file that cannot be read as CSV, or a bad header, is a ConfigError."""
    name, rows = read_csv(path, COLUMNS, ("host",))
    problems: list[Problem] = []
    out: list[CsvHost] = []
    for row in rows:
        cells = row.cells
        here = Origin(name, row.line)
        pattern = cells.get("host", "")
        if not pattern:
            problems.append(Problem(name, row.line, "host", "is empty"))
            continue
        try:
            hosts = expand_host_range(pattern)
        except HostRangeError as exc:
            problems.append(Problem(name, row.line, "host", f"{shown(pattern)}: {exc}"))
            continue
        data: dict[str, Any] = {}
        origins: dict[FieldPath, Origin] = {(): here}
        names: dict[FieldPath, str] = {}
        for column in _LISTS:
            if column in cells:
                data[column] = [part for part in _SEPARATORS.split(cells[column]) if part]
                origins[(column,)] = here
                names[(column,)] = column
        connection: dict[str, Any] = {c: cells[c] for c in _CONNECTION if c in cells}
        if "port" in connection and connection["port"].isdigit():
            connection["port"] = int(connection["port"])
        if connection:
            data["connection"] = connection
            origins[("connection",)] = here
            for column in connection:
                origins[("connection", column)] = here
                names[("connection", column)] = column
        out += [CsvHost(host, data, origins, names) for host in hosts]
    return out, problems
