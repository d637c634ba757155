"""State locations: a PostgreSQL URL or a SQLite path, opened as a store; URLs fit to show."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from provision.errors import display_path
from provision.state.base import StateError, Store
from provision.state.empty import EmptyStore
from provision.state.sqlite import SqliteStore

SCHEMES = ("postgresql://", "postgres://")


def open_store(location: str | Path, *, read_only: bool = False) -> Store:
    """The store at `location`: a postgresql:// (or postgres://) URL, or else a SQLite file path.

    Opening upgrades an older schema in place, refuses a newer one, and checks the file
    (SQLite: `PRAGMA quick_check`), so a damaged state is a StateError before any host is
    contacted. `read_only` refuses every write, and for a SQLite file that does not exist
    yet gives an empty store instead of creating it.
    """
    text = str(location)
    if is_postgres_url(text):
        try:
            from provision.state.postgres import PostgresStore
        except ImportError:
            raise StateError(
                f"the state {redact_url(text)} is a PostgreSQL database, which needs psycopg: "
                "pip install 'provision[postgresql]'"
            ) from None
        return PostgresStore(text, read_only)
    if isinstance(location, Path) and text.lower().startswith(("postgresql:/", "postgres:/")):
        # Not shown: without its '//' the URL's password cannot be told from the rest.
        raise StateError("the state location is a PostgreSQL URL that lost its '//' as a file path: pass it as text")
    path = Path(location)
    if read_only and not path.exists():
        return EmptyStore(display_path(path))
    return SqliteStore(path, read_only)


def is_postgres_url(location: str) -> bool:
    return location.lower().startswith(SCHEMES)


def redact_url(url: str) -> str:
    """The URL without its password (user info and `password=` query parameters)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "a PostgreSQL URL that cannot be parsed"
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo.split(':', 1)[0]}@{hosts}" if at else hosts
    query = "&".join(p for p in parts.query.split("&") if p and unquote(p.split("=", 1)[0]) != "password")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """Every form in which the URL's password could show up in a driver's message."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]  # cannot tell where the password is: hide the whole URL
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    for p in parts.query.split("&"):
        name, _, value = p.partition("=")
        if unquote(name) == "password":
            found.append(value)
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
