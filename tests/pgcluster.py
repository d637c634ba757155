"""A throwaway PostgreSQL cluster on loopback, for the state tests and bench/state.py.

Made with the server binaries of this machine (initdb and pg_ctl, on PATH or under
/usr/lib/postgresql/*/bin). initdb refuses to run as root, so as root both run as the
`postgres` user (or `nobody`) through runuser. Trust authentication on 127.0.0.1 only, no
fsync: data that lives for one test session.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

SERVER_BINARIES = "usr/lib/postgresql/*/bin"
SUPERUSER = "provision_test"


class ClusterError(Exception):
    """No cluster could be started; the message says why."""


def server_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: from PATH first, else the newest Debian version."""
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(
        Path("/").glob(SERVER_BINARIES),
        key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.name)],
        reverse=True,
    )
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


class Cluster:
    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.folder = Path(tempfile.mkdtemp(prefix="provision-pg-"))
        self.data = self.folder / "data"
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise ClusterError("running as root without runuser, and initdb refuses root")
            user = "postgres" if _user_exists("postgres") else "nobody"
            entry = pwd.getpwnam(user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
            self.prefix = ["runuser", "-u", user, "--"]

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, *args], capture_output=True, text=True, check=False, timeout=120)

    def start(self) -> str:
        """Make and start the cluster; the superuser's URL."""
        init = self._run(
            str(self.binaries / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
            "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        if init.returncode != 0:
            raise ClusterError(f"initdb failed: {init.stderr.strip()}")
        problem = ""
        for _ in range(3):  # a port taken between choosing it and binding it: choose again
            port = _free_port()
            settings = (
                f"-p {port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off"
            )
            log = self.folder / "log"
            started = self._run(
                str(self.binaries / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-w", "-t", "60",
                "-o", settings, "start",
            )  # fmt: skip
            if started.returncode == 0:
                return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
            problem = log.read_text(errors="replace")[-2000:] if log.exists() else started.stderr
        raise ClusterError(f"pg_ctl start failed: {problem.strip()}")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextmanager
def bench_postgres() -> Iterator[str | None]:
    """For the benchmarks: a URL with a fresh schema of its own (PROVISION_TEST_POSTGRES_URL's
    database, or a throwaway cluster), or None when no PostgreSQL can be had."""
    import psycopg

    given = os.environ.get("PROVISION_TEST_POSTGRES_URL")
    cluster = None
    if given:
        admin = given
    else:
        binaries = server_binaries()
        if binaries is None:
            print("PostgreSQL: no server binaries and no PROVISION_TEST_POSTGRES_URL; measuring SQLite only")
            yield None
            return
        try:
            cluster = Cluster(binaries)
            admin = cluster.start()
        except ClusterError as exc:
            print(f"PostgreSQL: {exc}; measuring SQLite only")
            yield None
            return
        print("PostgreSQL: a throwaway cluster on loopback (fsync off, as in the tests)")
    schema = f"bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        yield f"{admin}{'&' if '?' in admin else '?'}options={quote(f'-csearch_path={schema}', safe='')}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        if cluster is not None:
            cluster.stop()
