"""Importing users from CSV (an export from a directory or HR system).

Columns: host, user, extension, display_name, password, username, auth_id. The first
row names the columns; host and user are required, password is a secret reference.
"""

from __future__ import annotations

from pathlib import Path

from provision.errors import ConfigError, Problem
from provision.model.csvfile import read_csv
from provision.model.source import FieldPath, Located, Origin

COLUMNS = ("host", "user", "extension", "display_name", "password", "username", "auth_id")
_FIELD = {"user": "name"}


def load_users_csv(path: Path) -> list[tuple[str, Located]]:
    """Rows as (host name, Located user mapping) pairs, each cell with its line."""
    name, rows = read_csv(path, COLUMNS, ("host", "user"))
    problems: list[Problem] = []
    out: list[tuple[str, Located]] = []
    for row in rows:
        cells = dict(row.cells)
        host = cells.pop("host", "")
        if not host:
            problems.append(Problem(name, row.line, "host", "is empty"))
            continue
        user = {_FIELD.get(c, c): v for c, v in cells.items()}
        origins: dict[FieldPath, Origin] = {(field,): Origin(name, row.line) for field in user}
        origins[()] = Origin(name, row.line)
        out.append((host, Located(data=user, origins=origins, file=name)))
    if problems:
        raise ConfigError(problems)
    return out
