"""What every command receives: the project and the reporter."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console

from provision.project import Project
from provision.report import Reporter


@dataclass
class App:
    project: Project
    reporter: Reporter


def make_reporter() -> Reporter:
    return Reporter(
        out=Console(highlight=False, soft_wrap=True),
        err=Console(stderr=True, highlight=False, soft_wrap=True),
    )
