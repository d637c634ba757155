"""Profiles, inventories, users CSV and env files: any text loads or is the project's own error.

Texts come two ways: data shaped like a profile or an inventory (keys a person would
write, values of every type, some too long, some with line breaks) dumped as YAML, and
YAML-ish text assembled from the syntax that breaks parsers (tags, anchors, aliases,
merge keys, flow collections, quotes, odd indentation, control characters).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from provision.errors import ConfigError
from provision.model.inventory import Connection, Host, Install, User
from provision.model.profile import Account, Audio, Hooks, Profile, Settings, Smoke
from provision.model.source import parse_yaml
from provision.model.store import ProfileStore
from provision.project import Project, prepare_inventory
from provision.secrets import read_env_file
from provision.targets import load_inventory, profile_references

from .propkit import LONG, SECRET, loads_or_refuses, written_folder

FIELDS = sorted(
    {
        name
        for model in (Profile, Settings, Account, Hooks, Audio, Smoke, Connection, Install, User, Host)
        for name in model.model_fields
    }
    | {"program", "args", "defaults", "groups", "hosts", "office", "queue", "ws-01", "ws-02", "sales", "base"}
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "button",
            "all",
            "never",
            "3.22",
            "3.21.6",
            "tls",
            "https",
            "http",
            "basic",
            "portable",
            "env:PW",
            "env:MISSING",
            "file:pw.txt",
            "base",
            "../base",
            "opus/48000/2",
            "C:\\x.exe",
            LONG,
            "a\nb",
            " pad ",
            '"quoted"',
            "0123",
            "1:30",
            "2024-01-31",
        ]
    ),
)
keys = st.one_of(st.sampled_from(FIELDS), st.text(min_size=1, max_size=8), st.just(LONG))
data = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)


def hide_passwords(value: Any) -> Any:
    """Any value written under a password key becomes a plaintext-looking secret."""
    if isinstance(value, dict):
        return {k: (SECRET if k == "password" else hide_passwords(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [hide_passwords(v) for v in value]
    return value


def dumped(top: list[str]) -> st.SearchStrategy[str]:
    mapping = st.dictionaries(st.sampled_from(top) | keys, data, max_size=6)
    return mapping.map(lambda d: yaml.safe_dump(hide_passwords(d), allow_unicode=True, sort_keys=False))


FRAGMENTS = [
    "a",
    "b",
    "settings",
    "accounts",
    "office",
    "server",
    "hosts",
    "users",
    "extends",
    "profiles",
    ": ",
    ":",
    "- ",
    "-",
    "\n",
    "\n  ",
    "\n    ",
    "\t",
    " ",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "<<: ",
    "<<",
    "!!int ",
    "!!str ",
    "!!bool ",
    "!!float ",
    "!!timestamp ",
    "!!binary ",
    "!!set ",
    "!!omap ",
    "!!python/name:os.system ",
    "!foo ",
    "! ",
    "? ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    '"',
    "#",
    "|",
    ">",
    "---",
    "...",
    "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n",
    "yes",
    "null",
    "~",
    "0x1F",
    "1e400",
    ".inf",
    "2024-01-31",
    "\\",
    "\x00",
    "\x85",
    "\ufeff",
    "é",
    "\U0001f4de",
    LONG,
]
soup = st.lists(st.sampled_from(FRAGMENTS), max_size=60).map("".join)


def alias_bomb(width: int, depth: int) -> str:
    lines = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for level in range(1, depth):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


bombs = st.builds(alias_bomb, st.integers(1, 12), st.integers(1, 12))


BASE = """
settings: {updatesInterval: never}
accounts:
  office: {server: pbx.example.com, domain: example.com}
"""
INVENTORY_TOP = ["defaults", "groups", "hosts", "users_csv"]
PROFILE_TOP = [*Profile.model_fields]


def folder(**files: str | bytes) -> contextlib.AbstractContextManager[Path]:
    """A fresh config folder with profiles/base.yaml and the given files."""
    return written_folder({"profiles/base.yaml": BASE, **files})


def project(root: Path) -> Project:
    environ = {"PW": "pw-1", "PW_JDOE": "pw-2"}
    return Project(root / "profiles", None, root / "state.db", environ, root)


@given(st.one_of(soup, dumped(PROFILE_TOP), bombs))
def test_any_yaml_text_parses_or_is_a_config_error(text: str) -> None:
    result = loads_or_refuses(parse_yaml, text, "f.yaml")
    if isinstance(result, ConfigError):
        assert all(p.file == "f.yaml" for p in result.problems)


@given(st.one_of(soup, dumped(PROFILE_TOP)))
def test_any_profile_resolves_or_is_a_config_error(text: str) -> None:
    with folder(profiles__p=text) as root:
        (root / "profiles" / "p").rename(root / "profiles" / "p.yaml")
        store = ProfileStore(root / "profiles")
        loads_or_refuses(lambda: store.resolve(store.chain([("p", None)])))


def inventory_data() -> st.SearchStrategy[str]:
    user = st.fixed_dictionaries(
        {"name": st.sampled_from(["jdoe", "ann", "JDOE", "a/b", LONG, ""])},
        optional={
            "extension": scalars,
            "password": st.sampled_from(["env:PW", "env:PW_JDOE", "env:MISSING", SECRET]),
            "display_name": scalars,
            "overrides": data,
            "accounts": data,
        },
    )
    connection = st.fixed_dictionaries(
        {},
        optional={
            "scheme": st.sampled_from(["http", "https", "ftp"]),
            "auth": st.sampled_from(["basic", "ntlm", "kerberos", "x"]),
            "port": scalars,
        },
    )
    host = st.fixed_dictionaries(
        {},
        optional={
            "groups": st.lists(st.sampled_from(["sales", "nope", "../x"]), max_size=2),
            "profiles": st.lists(st.sampled_from(["base", "nope", "../base", LONG]), max_size=2),
            "users": st.lists(user, max_size=3),
            "connection": connection,
            "overrides": data,
            "microsip": data,
        },
    )
    inventory = st.fixed_dictionaries(
        {},
        optional={
            "defaults": st.fixed_dictionaries(
                {}, optional={"profiles": st.just(["base"]), "connection": connection, "overrides": data}
            ),
            "groups": st.dictionaries(
                st.sampled_from(["sales", "support", "bad name"]),
                st.fixed_dictionaries(
                    {}, optional={"profiles": st.lists(st.sampled_from(["base", "nope"])), "connection": connection}
                ),
                max_size=2,
            ),
            "hosts": st.dictionaries(st.sampled_from(["ws-01", "ws-02", "bad host", "ws-01\n"]), host, max_size=3),
            "users_csv": st.lists(st.sampled_from(["users.csv", "missing.csv"]), max_size=1),
        },
    )
    return inventory.map(lambda d: yaml.safe_dump(hide_passwords(d), allow_unicode=True, sort_keys=False))


def prepared(root: Path) -> object:
    loaded = load_inventory(root / "inventory.yaml")
    problems = profile_references(ProfileStore(root / "profiles"), loaded)
    if problems:
        raise ConfigError(problems)
    return prepare_inventory(project(root), loaded)


@given(st.one_of(inventory_data(), soup, dumped(INVENTORY_TOP)))
def test_any_inventory_prepares_or_is_a_config_error(text: str) -> None:
    with folder(**{"inventory.yaml": text}) as root:
        loads_or_refuses(prepared, root)


CELLS = [
    "ws-01",
    "ws-02",
    "jdoe",
    "ann",
    "2101",
    "env:PW",
    "",
    "b" * 140_000,
    " ",
    '"',
    '""',
    "a,b",
    LONG,
    "\n",
    "\x00",
    "é",
]
csv_text = st.lists(st.lists(st.sampled_from(CELLS) | st.text(max_size=6), max_size=8).map(",".join), max_size=6).map(
    "\n".join
)
headers = st.sampled_from(
    ["host,user,extension,password", "host,user", "user,host,display_name", "host,nope", "", "HOST, User"]
)


@given(headers, csv_text, st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16", "latin-1"]))
def test_any_users_csv_loads_or_is_a_config_error(header: str, body: str, encoding: str) -> None:
    inventory = "hosts:\n  ws-01: {profiles: [base]}\n  ws-02: {profiles: [base]}\nusers_csv: [users.csv]\n"
    content = (header + "\n" + body).encode(encoding, errors="replace")
    with folder(**{"inventory.yaml": inventory, "users.csv": content}) as root:
        loads_or_refuses(prepared, root)


ENV_FRAGMENTS = ["A", "PW", "export ", "=", "'", '"', "\\", "\n", " ", "\t", "#", "$", "${A}", "1", "-", ".", "\r"]
env_text = st.lists(st.sampled_from(ENV_FRAGMENTS) | st.text(max_size=4), max_size=40).map("".join)


@given(env_text)
def test_any_env_file_reads_or_is_a_config_error_naming_lines_not_text(text: str) -> None:
    with folder(**{"demo.env": text}) as root:
        result = loads_or_refuses(read_env_file, root / "demo.env")
    if isinstance(result, dict):
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.items())
    else:
        assert isinstance(result, ConfigError)
        lines = text.count("\n") + text.count("\r") + 1
        assert all(p.line is None or p.line <= lines for p in result.problems)
        assert all(p.message.startswith(("expected NAME=VALUE", "NAME must", "cannot read")) for p in result.problems)
