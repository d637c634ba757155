"""Ansible inventories, host ranges, hosts CSV and --limit patterns: any input loads or is the project's own error.

Texts are assembled from the syntax that breaks INI and pattern parsers (sections, ranges,
quotes, '=', ':', brackets, Python literals, Jinja2, Vault), and Ansible YAML inventories
are generated as data. Whatever comes in, the result is an inventory or a ConfigError
whose problems name a file and a line within it, quote values short, and never show a
password; a --limit pattern selects hosts or is a ConfigError.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from provision.errors import ConfigError
from provision.model.inventory_source import inventory_names
from provision.targets import LoadedInventory, load_inventory, select_hosts

from .propkit import LONG, SECRET, loads_or_refuses, written_folder

INI_FRAGMENTS = [
    "[sales]",
    "[sales:children]",
    "[sales:vars]",
    "[all:vars]",
    "[lyon]",
    "[lyon:children]",
    "[bad section]",
    "[x:y]",
    "[",
    "]",
    "ws-01",
    "ws-[01:03]",
    "ws-[a:c]",
    "ws-[3:1]",
    "ws-[0:99999999]",
    "ws-02:5986",
    "10.0.0.1",
    "sales",
    "lyon",
    " ",
    "\n",
    "\t",
    "=",
    "ansible_host=10.0.0.9",
    "ansible_port=abc",
    "ansible_port=5985",
    "ansible_connection=winrm",
    "ansible_connection=ssh",
    "ansible_winrm_transport=basic",
    "ansible_winrm_scheme=http",
    "ansible_winrm_server_cert_validation=ignore",
    "ansible_user=admin",
    f"ansible_password={SECRET}",
    "provision_profiles=base",
    "provision_profiles=\"['base', '../x']\"",
    "provision_users=\"[{'name': 'jdoe', 'extension': '2101'}]\"",
    f"provision_users=\"[{{'name': 'ann', 'password': '{SECRET}'}}]\"",
    "provision_users=\"[{'name': 'a/b'}]\"",
    "provision_canary=True",
    "provision_profile=base",
    "provision_overrides=\"{'settings': {'sourcePort': 5070}}\"",
    "provision_microsip=\"{'mode': 'portable'}\"",
    'x="{{ inventory_hostname }}"',
    "'",
    '"',
    "#",
    ";",
    "\\",
    "(" * 50,
    "[" * 50,
    "1e400",
    LONG,
    "\x00",
    "é",
]
ini_text = st.lists(st.sampled_from(INI_FRAGMENTS), max_size=40).map("".join)

names = st.sampled_from(["ws-01", "ws-[01:03]", "ws-[x:1]", "10.0.0.2", "bad host", LONG])
variables = st.dictionaries(
    st.sampled_from(
        [
            "ansible_host",
            "ansible_port",
            "ansible_connection",
            "ansible_winrm_transport",
            "ansible_winrm_scheme",
            "ansible_user",
            "provision_profiles",
            "provision_users",
            "provision_canary",
            "provision_overides",
            "ntp",
        ]
    ),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-1, 70000),
        st.sampled_from(["winrm", "psrp", "ssh", "basic", "http", "base", "{{ x }}", LONG, "a\nb"]),
        st.lists(st.sampled_from(["base", "../x", {"name": "jdoe"}, {"name": "a", "password": SECRET}]), max_size=2),
    ),
    max_size=4,
).map(lambda found: {**found, "ansible_password": SECRET} if "ntp" in found else found)
group = st.deferred(
    lambda: (
        st.none()
        | st.fixed_dictionaries(
            {},
            optional={
                "hosts": st.dictionaries(names, st.none() | variables, max_size=3),
                "vars": variables,
                "children": st.dictionaries(st.sampled_from(["sales", "lyon", "all", "b.c"]), group, max_size=2),
                "host": st.just({"ws-09": None}),
            },
        )
    )
)
ansible_yaml = st.dictionaries(st.sampled_from(["all", "sales", "lyon", "plugin"]), group, min_size=1, max_size=3).map(
    lambda d: yaml.safe_dump(d, allow_unicode=True, sort_keys=False)
)


def folder(**files: str | bytes) -> contextlib.AbstractContextManager[Path]:
    return written_folder(files)


def check_lines(result: object, files: dict[str, str]) -> None:
    if isinstance(result, ConfigError):
        for problem in result.problems:
            name = Path(problem.file).name
            if problem.line is not None and name in files:
                assert problem.line <= files[name].count("\n") + 1, problem


@given(ini_text, st.sampled_from(["hosts", "inv.ini"]), st.booleans())
@example("[" * 50 + f"ansible_password={SECRET}[sales:vars]", "hosts", False)  # a password in a 'group name'
def test_any_ini_inventory_loads_or_is_a_config_error(text: str, name: str, with_vars: bool) -> None:
    extra = {"group_vars__sales.yml": "provision_profiles: [base]\nansible_port: x\n"} if with_vars else {}
    with folder(**{name: text}, **extra) as root:
        result = loads_or_refuses(load_inventory, root / name)
        check_lines(result, {name: text})
        with contextlib.suppress(Exception):  # completion reads the same files and must merely not hang or blow up
            inventory_names(root / name)


@given(ansible_yaml)
def test_any_ansible_yaml_inventory_loads_or_is_a_config_error(text: str) -> None:
    with folder(**{"inv.yml": text}) as root:
        check_lines(loads_or_refuses(load_inventory, root / "inv.yml"), {"inv.yml": text})


CSV_CELLS = ["ws-01", "ws-[02:03]", "ws-[9:1]", "sales;lyon", "sales lyon", "5986", "99999", "abc", "https", "ftp", ""]
csv_rows = st.lists(st.lists(st.sampled_from([*CSV_CELLS, LONG, '"', "\n"]), min_size=4, max_size=5), max_size=5)


@given(st.sampled_from(["host,groups,port,scheme", "host,group,port,scheme", "groups,port,scheme,auth"]), csv_rows)
def test_any_hosts_csv_loads_or_is_a_config_error(header: str, rows: list[list[str]]) -> None:
    text = header + "\n" + "\n".join(",".join(r) for r in rows) + "\n"
    inventory = "groups: {sales: {}, lyon: {}}\nhosts_csv: [hosts.csv]\nhosts:\n  ws-01: {}\n"
    with folder(**{"inv.yaml": inventory, "hosts.csv": text}) as root:
        loads_or_refuses(load_inventory, root / "inv.yaml")


PATTERN_FRAGMENTS = [
    "sales", "lyon", "support", "all", "*", "ws-sales-0", "ws-*", "~", "~ws-(", "~ws-sales", "[", "]", "[0]",
    "[-1]", "[1:2]", "[9:]", "[01:03]", "[a:c]", ":", ",", "&", "!", "@", "@missing", "?", " ", "é", LONG,
]  # fmt: skip
patterns = st.lists(st.sampled_from(PATTERN_FRAGMENTS), max_size=12).map("".join)
EXAMPLE: LoadedInventory = load_inventory(Path(__file__).resolve().parents[2] / "profiles/inventory/example.yaml")


@given(patterns)
def test_any_limit_selects_hosts_or_is_a_config_error(pattern: str) -> None:
    result = loads_or_refuses(select_hosts, EXAMPLE.model, pattern)
    if isinstance(result, list):
        assert result and set(result) <= set(EXAMPLE.model.hosts)
        assert result == [h for h in EXAMPLE.model.hosts if h in result]  # inventory order
