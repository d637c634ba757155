"""Shared fixtures: small projects written into a temporary folder, and the shipped examples."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from provision.project import Project
from provision.secrets import read_env_file

if TYPE_CHECKING:
    from labkit import Lab

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "profiles"
EXAMPLE_INVENTORY = EXAMPLES / "inventory" / "example.yaml"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

BASE = """
    settings:
      updatesInterval: never
    accounts:
      office:
        server: pbx.example.com
        domain: example.com
        transport: tls
"""

INVENTORY = """
    defaults:
      profiles: [base]
    hosts:
      ws-01:
        users:
          - {name: jdoe, extension: "2101", display_name: Jane Doe, password: env:PW_JDOE}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


MakeProject = Callable[..., Project]


@pytest.fixture
def make_project(tmp_path: Path) -> MakeProject:
    """make_project(profiles={name: yaml}, inventory=yaml, environ={...}, templates={name: text})."""

    def make(
        profiles: dict[str, str] | None = None,
        inventory: str | None = INVENTORY,
        environ: dict[str, str] | None = None,
        templates: dict[str, str] | None = None,
    ) -> Project:
        for name, text in (profiles if profiles is not None else {"base": BASE}).items():
            write(tmp_path / "profiles" / f"{name}.yaml", text)
        (tmp_path / "profiles").mkdir(exist_ok=True)
        if inventory is not None:
            write(tmp_path / "inventory.yaml", inventory)
        templates_dir = None
        if templates:
            templates_dir = tmp_path / "templates"
            for name, text in templates.items():
                write(templates_dir / name, text)
        return Project(
            profiles_dir=tmp_path / "profiles",
            templates_dir=templates_dir,
            state_path=tmp_path / ".provision" / "state.db",
            environ={"PW_JDOE": "s3cret-jdoe!"} if environ is None else environ,
            base_dir=tmp_path,
        )

    return make


@pytest.fixture
def examples() -> Project:
    return Project(
        profiles_dir=EXAMPLES,
        templates_dir=ROOT / "templates",
        state_path=Path("/nonexistent/state.db"),
        environ=read_env_file(EXAMPLES / "inventory" / "demo.env"),
        base_dir=ROOT,
    )


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """Four simulated workstations with two users each, on loopback, for one test."""
    from labkit import running_lab

    with running_lab(tmp_path, EXAMPLES) as running:
        yield running
