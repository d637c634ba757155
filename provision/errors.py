"""The exception hierarchy and the documented exit codes.

Everything a person can cause or fix (a bad profile, a missing secret, an unreadable
file) is a `ProvisionError`: the CLI prints its message on one screen and exits with
its code. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path


class ExitStatus(IntEnum):
    """Exit codes; docs/exit-codes.md lists them for scripts."""

    OK = 0
    #: At least one target failed (render, push or check).
    FAILED = 1
    #: Bad input: command line, profile, inventory, template or secret.
    USAGE = 2
    #: Nothing failed, but something would change: `push --check --exit-code`, `diff --exit-code`,
    #: and `health` when the profiles changed since the last push (pending).
    CHANGES = 3
    #: `health`: a workstation's ini no longer holds what was pushed to it (drift); nothing failed.
    DRIFT = 4
    #: A bug in provision; the traceback is printed.
    INTERNAL = 70
    INTERRUPTED = 130


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the input, located as precisely as we can."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ProvisionError(Exception):
    """An error meant for a person: the message says what is wrong and how to fix it."""

    exit_status = ExitStatus.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ProvisionError):
    """Profiles, inventory, templates or secrets are invalid. Holds every problem found."""

    exit_status = ExitStatus.USAGE

    def __init__(self, problems: list[Problem], summary: str | None = None) -> None:
        self.problems = sorted(set(problems), key=_problem_order)
        count = len(self.problems)
        head = summary or f"{count} problem{'s' if count != 1 else ''} found"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


def _problem_order(problem: Problem) -> tuple[str, int, str, str]:
    return (problem.file, problem.line or 0, problem.field, problem.message)


class SecretError(ProvisionError):
    """A secret reference could not be resolved. Never carries the secret itself."""

    exit_status = ExitStatus.USAGE


class TemplateError(ProvisionError):
    exit_status = ExitStatus.USAGE


class IniError(ProvisionError):
    """An existing ini cannot be merged safely (for example a duplicated section)."""


class UnreadableIniError(IniError):
    """An existing ini that cannot be read safely: bad encoding, NUL characters, a line no
    ini reader agrees on. The message reads "unreadable ini: line N: what"; `line` is N
    (None when the whole file is at fault). The file must be left as it is."""

    def __init__(self, line: int | None, what: str) -> None:
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"unreadable ini: {where}{what}")
        self.line = line


def display_path(path: Path | str) -> str:
    """A path as a person expects to see it: relative to the working directory if inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)
