"""Reading a CSV file exported from a directory, an asset database or a spreadsheet.

The first row names the columns (any order, any case); every error names the file and
the line a row starts on (a quoted cell may span lines). UTF-8, with or without BOM, and
Windows ANSI exports are both read.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from provision.errors import ConfigError, Problem, display_path
from provision.model.source import dotted


@dataclass(frozen=True)
class Row:
    line: int
    cells: dict[str, str]  # column -> stripped text; empty cells left out


def read_csv(path: Path, columns: Sequence[str], required: Sequence[str]) -> tuple[str, list[Row]]:
    """The file's name as messages show it, and its rows. Bad headers and ragged rows are a ConfigError."""
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
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:  # a cell over the csv module's limit (128 KiB), a stray NUL...
        raise ConfigError([Problem(name, reader.line_num, "", f"not readable as CSV: {exc}")]) from None
    if not rows:
        return name, []
    header = [h.strip().lower() for h in rows[0][1]]
    problems = [
        Problem(name, 1, dotted([column]), f"unknown column; columns are {', '.join(columns)}")
        for column in header
        if column not in columns
    ]
    problems += [Problem(name, 1, c, "required column is missing") for c in required if c not in header]
    problems += [
        Problem(name, 1, dotted([c]), "column given twice") for i, c in enumerate(header) if c in header[:i] and c
    ]
    if problems:
        raise ConfigError(problems)
    out: list[Row] = []
    for line, row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(Problem(name, line, "", f"has {len(row)} cells, the header has {len(header)}"))
            continue
        cells = {column: cell.strip() for column, cell in zip(header, row, strict=True) if cell.strip()}
        out.append(Row(line, cells))
    if problems:
        raise ConfigError(problems)
    return name, out
