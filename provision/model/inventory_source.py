"""Inventory files as admins have them, read into provision's own inventory data.

Three formats are read, told apart by the file itself:

- provision's own YAML (`defaults`, `groups`, `hosts`, `users_csv`, `hosts_csv`);
- an Ansible YAML inventory (top-level groups with `hosts`, `children`, `vars`);
- an Ansible INI inventory (`[group]`, `[group:children]`, `[group:vars]`): a file ending
  in .ini, or any file but .yaml/.yml/.json whose first line is a section or a host line.

Then host ranges in names (`ws-[01:50]`) are expanded and the hosts of `hosts_csv` files
joined. Every value keeps the file and line it was written at, so validation errors
point into the file the admin wrote, whichever it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import ConfigError, Problem
from provision.model.ansible import (
    ANSIBLE_TAGS,
    AnsibleInventory,
    ansible_names,
    is_ansible_yaml,
    looks_like_ini,
    parse_ansible_yaml,
    parse_ini,
    read_ansible,
)
from provision.model.hostrange import HostRangeError, expand_host_range, has_range
from provision.model.hosts_csv import load_hosts_csv
from provision.model.source import FieldPath, Located, Origin, parse_yaml, read_text
from provision.model.values import shown

#: Top-level keys of provision's own inventory.
PROVISION_KEYS = frozenset({"defaults", "groups", "hosts", "users_csv", "hosts_csv"})


@dataclass
class InventorySource:
    located: Located  # provision's own inventory data, whatever the file was
    kind: str  # "provision", "ansible-ini" or "ansible-yaml"
    warnings: list[Problem] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _parse(path: Path, *, checked: bool = True) -> tuple[str, AnsibleInventory | Located]:
    """The file's format ("ansible-ini", "ansible-yaml" or "provision") and what it holds:
    an Ansible inventory, or provision's own YAML (`checked`: where Ansible's tags are refused)."""
    text, name = read_text(path)
    if looks_like_ini(path, text):
        return "ansible-ini", parse_ini(text, name)
    located = parse_yaml(text, name, ANSIBLE_TAGS)
    if _ansible_yaml(located.data):
        return "ansible-yaml", parse_ansible_yaml(located)
    if checked and ("!vault" in text or "!unsafe" in text):
        located = parse_yaml(text, name)  # Ansible's tags mean nothing in provision's own format
    return "provision", located


def read_inventory(path: Path) -> InventorySource:
    """The inventory at `path` as provision's data, with every problem found (not yet validated)."""
    kind, parsed = _parse(path)
    if isinstance(parsed, AnsibleInventory):
        converted = read_ansible(parsed, path.parent)
        source = InventorySource(converted.located, kind, converted.warnings, converted.problems)
    else:
        source = InventorySource(parsed, kind)
    located = source.located
    if located.data is None:
        located.data = {}
    if not isinstance(located.data, dict):
        raise ConfigError([located.problem((), "an inventory must be a mapping of keys")])
    if source.kind == "provision":
        source.problems += expand_host_ranges(located)
    source.problems += join_hosts_csv(located, path.parent)
    return source


def _ansible_yaml(data: Any) -> bool:
    return is_ansible_yaml(data) and not (set(data) & PROVISION_KEYS)


def expand_host_ranges(located: Located) -> list[Problem]:
    """`hosts: {ws-[01:50]: {...}}` becomes fifty hosts with the same settings and origins."""
    hosts = located.data.get("hosts")
    if not isinstance(hosts, dict) or not any(has_range(name) for name in hosts):
        return []
    problems: list[Problem] = []
    expanded: dict[str, list[str]] = {}  # written key -> the names it gives
    for key in hosts:
        if has_range(key):
            try:
                expanded[key] = expand_host_range(key)
            except HostRangeError as exc:
                problems.append(located.problem(("hosts", key), f"host {shown(key)}: {exc}"))
    by_key: dict[str, list[tuple[FieldPath, Origin]]] = {key: [] for key in expanded}
    for path, origin in located.origins.items():
        if len(path) >= 2 and path[0] == "hosts" and path[1] in by_key:
            by_key[str(path[1])].append((path[2:], origin))
    out: dict[str, Any] = {}
    where: dict[str, str] = {}  # host -> the key it came from
    for key, value in hosts.items():
        if has_range(key) and key not in expanded:
            continue
        for name in expanded.get(key, [key]):
            if name in out:
                earlier = located.origin(("hosts", where[name]))
                problems.append(
                    located.problem(("hosts", key), f"host {shown(name)} is listed twice (also at {earlier})")
                )
                continue
            out[name] = value
            where[name] = key
            for rest, origin in by_key.get(key, ()):
                located.origins[("hosts", name, *rest)] = origin
    located.data["hosts"] = out
    return problems


def join_hosts_csv(located: Located, folder: Path) -> list[Problem]:
    """The hosts of every `hosts_csv` file, added after the inventory's own hosts."""
    files = located.data.get("hosts_csv")
    if not isinstance(files, list) or not files:
        return []
    hosts = located.data.get("hosts")
    if hosts is None:
        hosts = located.data["hosts"] = {}
    if not isinstance(hosts, dict):
        return []
    problems: list[Problem] = []
    for index, name in enumerate(files):
        if not isinstance(name, str):
            continue  # the model says what is wrong with it
        path = folder / name
        if not path.is_file():
            problems.append(located.problem(("hosts_csv", index), f"{name}: file not found"))
            continue
        try:
            rows, invalid = load_hosts_csv(path)
        except ConfigError as exc:
            problems += exc.problems
            continue
        problems += invalid
        for row in rows:
            here = row.origins[()]
            if row.name in hosts:
                earlier = located.origin(("hosts", row.name))
                problems.append(
                    Problem(here.file, here.line, "host", f"{shown(row.name)} is already in the inventory ({earlier})")
                )
                continue
            hosts[row.name] = row.data
            for rest, origin in row.origins.items():
                located.origins[("hosts", row.name, *rest)] = origin
            for rest, column in row.names.items():
                located.names[("hosts", row.name, *rest)] = column
            located.names[("hosts", row.name)] = row.name
    return problems


def inventory_names(path: Path) -> tuple[list[str], list[str]]:
    """Host and group names, read quickly and without checks (for shell completion).

    Raises whatever reading raises: the caller decides what a failure means."""
    _, parsed = _parse(path, checked=False)
    if isinstance(parsed, AnsibleInventory):
        return ansible_names(parsed)
    located = parsed
    data = located.data
    if not isinstance(data, dict):
        return [], []
    expand_host_ranges(located)
    join_hosts_csv(located, path.parent)
    hosts: dict[str, Any] = data["hosts"] if isinstance(data.get("hosts"), dict) else {}
    groups = dict.fromkeys(str(g) for g in data["groups"]) if isinstance(data.get("groups"), dict) else {}
    for host in hosts.values():
        if isinstance(host, dict) and isinstance(host.get("groups"), list):
            groups.update(dict.fromkeys(str(g) for g in host["groups"]))
    return [str(h) for h in hosts], list(groups)
