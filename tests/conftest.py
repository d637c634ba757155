"""Shared fixtures: small projects written into a temporary folder, the shipped examples, the lab,
and a state store on each backend.

PostgreSQL comes from PROVISION_TEST_POSTGRES_URL (a role that may create schemas in its
database), or else from a throwaway cluster started here for the session from the server
binaries of this machine (initdb and pg_ctl, on PATH or under /usr/lib/postgresql/*/bin;
as root they run as the `postgres` user, since initdb refuses root). Without either the
PostgreSQL half is skipped with the reason, unless PROVISION_REQUIRE_POSTGRES=1, which
makes it a failure. Each test gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from provision.project import Project
from provision.secrets import read_env_file

from pgcluster import Cluster, ClusterError, server_binaries

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


FLEET_HOSTS = 24  # the `fleet` fixture's hosts, lab-001 to lab-024


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Lab]:
    """24 simulated workstations with one user each: enough for batches, canaries and runs."""
    from labkit import running_lab

    with running_lab(tmp_path, EXAMPLES, hosts=FLEET_HOSTS, users=1) as running:
        yield running


# State stores: SQLite and PostgreSQL ---------------------------------------------------------


def _require() -> bool:
    return os.environ.get("PROVISION_REQUIRE_POSTGRES", "") not in ("", "0")


def _no_postgres(reason: str) -> None:
    if _require():
        pytest.fail(f"PROVISION_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """An admin URL of a PostgreSQL database in which the tests may create schemas."""
    given = os.environ.get("PROVISION_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _no_postgres("psycopg is not installed")
    binaries = server_binaries()
    if binaries is None:
        _no_postgres("no PostgreSQL: set PROVISION_TEST_POSTGRES_URL or install the server (initdb, pg_ctl)")
    assert binaries is not None
    cluster = None
    try:
        try:
            cluster = Cluster(binaries)
            url = cluster.start()
        except ClusterError as exc:
            _no_postgres(f"could not start a PostgreSQL cluster: {exc}")
        yield url
    finally:
        if cluster is not None:
            cluster.stop()


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema of its own, dropped after the test."""
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    yield with_options(postgres_url, f"-csearch_path={schema}")
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def with_options(url: str, options: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options={quote(options, safe='')}"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def location(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh store lives: a SQLite path (folder not made yet) or a PostgreSQL URL."""
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres_schema_url"))
    return str(tmp_path / ".provision" / "state.db")
