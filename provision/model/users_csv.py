"""Importing users from CSV (an export from a directory or HR system).

Columns: host, user, extension, display_name, password, username, auth_id. The first
row names the columns; host and user are required, password is a secret reference.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from provision.errors import ConfigError, Problem, display_path
from provision.model.source import FieldPath, Located, Origin, dotted

COLUMNS = ("host", "user", "extension", "display_name", "password", "username", "auth_id")
_FIELD = {"user": "name"}


def load_users_csv(path: Path) -> list[tuple[str, Located]]:
    """Rows as (host name, Located user mapping) pairs, each cell with its line."""
    name = display_path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(name, None, "", f"cannot read: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Spreadsheet exports on Windows are often in the ANSI code page.
        text = raw.decode("cp1252", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = list(reader)
    except csv.Error as exc:  # a cell over the csv module's limit (128 KiB), a stray NUL...
        raise ConfigError([Problem(name, reader.line_num, "", f"not readable as CSV: {exc}")]) from None
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    problems = [
        Problem(name, 1, dotted([column]), f"unknown column; columns are {', '.join(COLUMNS)}")
        for column in header
        if column not in COLUMNS
    ]
    problems += [Problem(name, 1, c, "required column is missing") for c in ("host", "user") if c not in header]
    if problems:
        raise ConfigError(problems)
    out: list[tuple[str, Located]] = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(Problem(name, line, "", f"has {len(row)} cells, the header has {len(header)}"))
            continue
        cells = {column: cell.strip() for column, cell in zip(header, row, strict=True)}
        host = cells.pop("host")
        if not host:
            problems.append(Problem(name, line, "host", "is empty"))
            continue
        user = {_FIELD.get(c, c): v for c, v in cells.items() if v}
        origins: dict[FieldPath, Origin] = {(field,): Origin(name, line) for field in user}
        origins[()] = Origin(name, line)
        out.append((host, Located(data=user, origins=origins, file=name)))
    if problems:
        raise ConfigError(problems)
    return out
