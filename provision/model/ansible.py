"""Ansible inventories (INI and YAML), read as provision inventories.

An admin keeps one inventory for both tools. Ansible's groups (`children`, `hosts`,
`vars`, host ranges, group_vars/ and host_vars/ beside the file) become provision's
groups; the variables that say how Ansible reaches a Windows host become each host's
`connection`, resolved with Ansible's precedence (all, then groups from the shallowest to
the deepest, ties by ansible_group_priority then name, then the host; a group_vars/ or
host_vars/ file over the inventory file's own vars); provision's own keys are written as
`provision_*` variables and layer as they do in provision's own inventories. Variables
provision does not use are reported, never silently dropped.

The result is provision's own inventory data (a Located whose origins and field names
point at the Ansible files), validated like any other inventory.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
import shlex
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import ConfigError, Problem, display_path
from provision.model.hostrange import HostRangeError, expand_host_range
from provision.model.source import FieldPath, Located, Origin, ScalarTags, parse_yaml
from provision.model.values import NAME_RULE, QUOTE_MAX, is_name, shown


class Vaulted:
    """A value encrypted with Ansible Vault (`!vault |`): provision cannot read it."""

    def __repr__(self) -> str:
        return "<encrypted>"


VAULTED = Vaulted()
#: YAML tags Ansible files use: `!vault` (encrypted) and `!unsafe` (text Ansible must not template).
ANSIBLE_TAGS: ScalarTags = {"!vault": lambda _text: VAULTED, "!unsafe": str}

#: The connection plugins that reach a host over WinRM, as provision does.
WINRM_CONNECTIONS = ("winrm", "psrp")

#: provision's own keys as Ansible variables: where each may be set and what it becomes.
PROVISION_VARS: dict[str, tuple[str, frozenset[str]]] = {
    "provision_profiles": ("profiles", frozenset({"all", "group", "host"})),
    "provision_overrides": ("overrides", frozenset({"all", "group", "host"})),
    "provision_microsip": ("microsip", frozenset({"all", "group", "host"})),
    "provision_users": ("users", frozenset({"host"})),
    "provision_canary": ("canary", frozenset({"group"})),
    "provision_description": ("description", frozenset({"group"})),
    "provision_users_csv": ("users_csv", frozenset({"all"})),
    "provision_hosts_csv": ("hosts_csv", frozenset({"all"})),
    "provision_ca_bundle": ("ca_bundle", frozenset({"all", "group", "host"})),
}
_WHERE = {"all": "the all group", "group": "a group", "host": "a host"}

# Ansible variables that set connection fields, per connection plugin.
_SCHEME = {"winrm": "ansible_winrm_scheme", "psrp": "ansible_psrp_protocol"}
_AUTH = {"winrm": "ansible_winrm_transport", "psrp": "ansible_psrp_auth"}
_CERT = {"winrm": "ansible_winrm_server_cert_validation", "psrp": "ansible_psrp_cert_validation"}
_CA = {"winrm": "ansible_winrm_ca_trust_path", "psrp": "ansible_psrp_ca_path"}
MAPPED_ANSIBLE_VARS = frozenset(
    {"ansible_host", "ansible_port", "ansible_connection", "ansible_group_priority"}
    | set(_SCHEME.values())
    | set(_AUTH.values())
    | set(_CERT.values())
    | set(_CA.values())
)
# Ansible's WinRM transports and PSRP auth names that provision speaks ('plaintext' is
# pywinrm's name for basic).
_AUTH_NAMES = {"ntlm": "ntlm", "kerberos": "kerberos", "basic": "basic", "plaintext": "basic"}
_WHY_NOT_MAPPED = {
    "ansible_user": "the WinRM account is one per run: --user or PROVISION_WINRM_USER",
    "ansible_password": "the WinRM password comes from --password-ref (an env:, file: or keyring: reference)",
    "ansible_winrm_password": "the WinRM password comes from --password-ref (an env:, file: or keyring: reference)",
    "ansible_psrp_password": "the WinRM password comes from --password-ref (an env:, file: or keyring: reference)",
    "ansible_become_password": "provision does not use become",
}


@dataclass(frozen=True)
class Var:
    """An inventory variable and where it was written (`located`/`path` give nested origins)."""

    name: str
    value: Any
    origin: Origin
    located: Located | None = None
    path: FieldPath = ()


@dataclass
class AnsibleGroup:
    name: str
    origin: Origin
    vars: dict[str, Var] = field(default_factory=dict)  # written in the inventory file
    file_vars: dict[str, Var] = field(default_factory=dict)  # from group_vars/
    children: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    parents: set[str] = field(default_factory=set)


@dataclass
class AnsibleHost:
    name: str
    origin: Origin
    vars: dict[str, Var] = field(default_factory=dict)
    file_vars: dict[str, Var] = field(default_factory=dict)  # from host_vars/
    groups: list[str] = field(default_factory=list)  # where it is listed


@dataclass
class AnsibleInventory:
    file: str
    groups: dict[str, AnsibleGroup] = field(default_factory=dict)
    hosts: dict[str, AnsibleHost] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def group(self, name: str, origin: Origin) -> AnsibleGroup:
        found = self.groups.get(name)
        if found is None:
            found = self.groups[name] = AnsibleGroup(name, origin)
        return found

    def add_child(self, parent: str, child: str) -> None:
        group = self.groups[parent]
        if child not in group.children:
            group.children.append(child)
        self.groups[child].parents.add(parent)

    def add_host(self, name: str, group: str, origin: Origin) -> AnsibleHost:
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = AnsibleHost(name, origin)
        if group not in host.groups:
            host.groups.append(group)
            self.groups[group].hosts.append(name)
        return host


# Reading: INI ------------------------------------------------------------------------------

DECLARE = "[name] or [name:children]"  # how a group is declared
_SECTION = re.compile(r"^\[([^:\[\]\s=]+)(?::(\w+))?\]\s*(?:[#;].*)?$")  # a name: no brackets, no =
_GROUP_LINE = re.compile(r"^([^:\]\s]+)\s*(?:[#;].*)?$")
_PORT = re.compile(r"^(.*[^:]):([0-9]+)$")
_SHELL_SYNTAX = re.compile(r"[\"'\\#]")
_WORD = re.compile(r"^[A-Za-z_][\w.\-]*$")  # a name: never a Python literal but True, False, None
_DECIMAL = re.compile(r"^-?(?:0|[1-9][0-9]*)$")
#: Values longer than this are kept as text rather than read as Python literals.
_LITERAL_MAX = 10_000


def looks_like_ini(path: Path, text: str) -> bool:
    """Ansible's INI format, rather than YAML: by extension, else by the first line that says."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml", ".json"):
        return False
    if suffix == ".ini":
        return True
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if _SECTION.match(line):
            return True
        return not (line.startswith(("---", "{", "%")) or line.endswith(":") or ": " in line)
    return False


def parse_ini(text: str, name: str) -> AnsibleInventory:
    """An Ansible INI inventory: [group], [group:children], [group:vars], host lines."""
    inv = AnsibleInventory(name)
    inv.group("all", Origin(name, 1))
    inv.group("ungrouped", Origin(name, 1))
    inv.add_child("all", "ungrouped")
    declared: set[str] = {"all", "ungrouped"}
    vars_only: dict[str, int] = {}  # [g:vars] of a group not declared (yet)
    wanted: dict[str, list[tuple[str, int]]] = {}  # [p:children] naming a group not declared (yet)
    group, state = "ungrouped", "hosts"
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        here = Origin(name, number)
        section = _SECTION.match(line)
        if section:
            group, state = section.group(1), section.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                inv.problems.append(
                    Problem(
                        name,
                        number,
                        "",
                        f"section [{shown(group)}:{shown(state)}]: the type must be hosts, children or vars",
                    )
                )
                state = "skip"
                continue
            inv.group(group, here)
            if state == "vars":
                if group not in declared:
                    vars_only.setdefault(group, number)
            else:
                declared.add(group)
            continue
        if line.startswith("["):
            inv.problems.append(
                Problem(
                    name,
                    number,
                    "",
                    "not a section header: write [group], [group:children] or [group:vars], with no spaces",
                )
            )
            state = "skip"
            continue
        if state == "hosts":
            _ini_hosts(inv, line, group, here)
        elif state == "vars":
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                inv.problems.append(Problem(name, number, "", f"expected name=value in [{group}:vars]"))
                continue
            key = key.strip()
            inv.groups[group].vars[key] = Var(key, _ini_value(value.strip()), here)
        elif state == "children":
            child = _GROUP_LINE.match(line)
            if child is None:
                inv.problems.append(Problem(name, number, "", f"expected a group name in [{group}:children]"))
                continue
            inv.group(child.group(1), here)
            if child.group(1) not in declared:
                wanted.setdefault(child.group(1), []).append((group, number))
            inv.add_child(group, child.group(1))
    for missing, places in wanted.items():
        if missing not in declared:
            for parent, number in places:
                inv.problems.append(
                    Problem(
                        name,
                        number,
                        "",
                        f"[{parent}:children] names group {shown(missing)}, "
                        "which is declared nowhere ([name] or [name:children])",
                    )
                )
    for missing, number in vars_only.items():
        if missing not in declared:
            group_name = missing if len(missing) <= QUOTE_MAX else shown(missing)
            problem = f"[{group_name}:vars] for a group declared nowhere ({DECLARE})"
            inv.problems.append(Problem(name, number, "", problem))
    return inv


def _ini_hosts(inv: AnsibleInventory, line: str, group: str, here: Origin) -> None:
    if _SHELL_SYNTAX.search(line) is None:
        tokens = line.split()  # what shlex gives for a line with no quotes, escapes or comment (5 times faster)
    else:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            inv.problems.append(Problem(here.file, here.line, "", f"cannot read the host line: {exc}"))
            return
    if not tokens:
        return
    if "=" in tokens[0]:
        # A variable where a host name belongs; never quote it (it may be a password).
        variable = tokens[0].partition("=")[0]
        message = (
            f"a host line starts with the host's name, not a variable ({shown(variable)}=...): "
            "variables go after it or in [group:vars]"
        )
        inv.problems.append(Problem(here.file, here.line, "", message))
        return
    pattern, port = tokens[0], None
    found = _PORT.match(pattern)
    if found:
        pattern, port = found.group(1), int(found.group(2))
    variables: dict[str, Var] = {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep or not key:
            message = f"expected name=value after the host, got {shown(token)}"
            inv.problems.append(Problem(here.file, here.line, "", message))
            return
        variables[key] = Var(key, _ini_value(value), here)
    if port is not None:
        variables["ansible_port"] = Var("ansible_port", port, here)
    for host_name in _expand(inv, pattern, here):
        host = inv.add_host(host_name, group, here)
        host.vars.update(variables)


def _expand(inv: AnsibleInventory, pattern: str, here: Origin) -> list[str]:
    try:
        return expand_host_range(pattern)
    except HostRangeError as exc:
        inv.problems.append(Problem(here.file, here.line, "", f"host {shown(pattern)}: {exc}"))
        return []


def _ini_value(text: str) -> Any:
    """A value as Ansible's INI reader takes it: a Python literal if it is one, else the text."""
    if len(text) > _LITERAL_MAX or (_WORD.match(text) and text not in ("True", "False", "None")):
        return text
    if _DECIMAL.match(text):
        return int(text)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _plain(value) if _is_plain(value) else text


def _is_plain(value: Any) -> bool:
    if isinstance(value, str | bool | int | float) or value is None:
        return True
    if isinstance(value, list | tuple | set):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# Reading: YAML ----------------------------------------------------------------------------

_GROUP_KEYS = ("hosts", "children", "vars")


def is_ansible_yaml(data: Any) -> bool:
    """A YAML document shaped as Ansible's inventory: groups of hosts, children and vars."""
    if not isinstance(data, dict) or not data:
        return False
    if "all" in data or "plugin" in data:
        return True
    return all(v is None or isinstance(v, dict) for v in data.values()) and any(
        isinstance(v, dict) and any(k in v for k in _GROUP_KEYS) for v in data.values()
    )


def parse_ansible_yaml(located: Located) -> AnsibleInventory:
    """An Ansible YAML inventory: top-level groups, each with hosts, children and vars."""
    inv = AnsibleInventory(located.file)
    top = located.origin(()) or Origin(located.file, 1)
    inv.group("all", top)
    inv.group("ungrouped", top)
    inv.add_child("all", "ungrouped")
    if "plugin" in located.data:
        inv.problems.append(
            located.problem(("plugin",), "an inventory plugin's configuration: provision reads static inventories")
        )
        return inv
    for name, body in located.data.items():
        _yaml_group(inv, located, name, body, (name,), None if name == "all" else "all")
    return inv


def _yaml_group(
    inv: AnsibleInventory, located: Located, name: str, body: Any, path: FieldPath, parent: str | None
) -> None:
    origin = located.origin(path) or Origin(located.file, 1)
    inv.group(name, origin)
    if parent is not None:
        if name == "all":
            inv.problems.append(located.problem(path, "the all group cannot be the child of another group"))
            return
        inv.add_child(parent, name)
    if body is None:
        return
    if not isinstance(body, dict):
        inv.problems.append(located.problem(path, "a group must be a mapping of hosts, children and vars"))
        return
    for key, value in body.items():
        here: FieldPath = (*path, key)
        if key == "vars":
            for var, var_path in _mapping(inv, located, value, here, "vars"):
                inv.groups[name].vars[var] = Var(
                    var, located_value(located, var_path), _at(located, var_path), located, var_path
                )
        elif key == "hosts":
            for pattern, host_path in _mapping(inv, located, value, here, "hosts"):
                host_vars = located_value(located, host_path)
                pairs = list(_mapping(inv, located, host_vars, host_path, "host variables"))
                for host_name in _expand(inv, pattern, _at(located, host_path)):
                    host = inv.add_host(host_name, name, _at(located, host_path))
                    for var, var_path in pairs:
                        host.vars[var] = Var(
                            var, located_value(located, var_path), _at(located, var_path), located, var_path
                        )
        elif key == "children":
            for child, child_path in _mapping(inv, located, value, here, "children"):
                _yaml_group(inv, located, child, located_value(located, child_path), child_path, name)
        else:
            close = difflib.get_close_matches(key, _GROUP_KEYS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            inv.problems.append(
                located.problem(here, f"unknown key in group {shown(name)}: a group has hosts, children and vars{hint}")
            )


def _mapping(
    inv: AnsibleInventory, located: Located, value: Any, path: FieldPath, what: str
) -> Iterator[tuple[str, FieldPath]]:
    if value is None:
        return
    if not isinstance(value, dict):
        inv.problems.append(located.problem(path, f"{what} must be a mapping"))
        return
    for key in value:
        yield key, (*path, key)


def located_value(located: Located, path: FieldPath) -> Any:
    node = located.data
    for part in path:
        node = node[part]
    return node


def _at(located: Located, path: FieldPath) -> Origin:
    return located.origin(path) or Origin(located.file, 1)


# group_vars/ and host_vars/ ---------------------------------------------------------------

_VAR_SUFFIXES = ("", ".yml", ".yaml", ".json")


def read_var_folders(inv: AnsibleInventory, folder: Path) -> None:
    """Variables from group_vars/NAME[.yml|.yaml|.json] and host_vars/NAME (or a folder of such
    files, read in name order), beside the inventory file; later files win."""
    for kind, entities in (("group_vars", inv.groups), ("host_vars", inv.hosts)):
        base = folder / kind
        try:
            entries = sorted(os.listdir(base))
        except OSError:
            continue
        by_name: dict[str, list[Path]] = {}
        for entry in entries:
            if entry.startswith("."):
                continue
            stem, suffix = os.path.splitext(entry)
            if suffix.lower() in _VAR_SUFFIXES[1:]:
                by_name.setdefault(stem, []).append(base / entry)
            else:
                by_name.setdefault(entry, []).append(base / entry)
        for name, entity in entities.items():
            for path in by_name.get(name, []):
                for file in _var_files(path):
                    entity.file_vars.update(_read_var_file(inv, file))


def _var_files(path: Path) -> Iterable[Path]:
    if path.is_dir():
        found = [
            p
            for p in path.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
            and p.suffix.lower() in _VAR_SUFFIXES
        ]
        return sorted(found)
    return [path] if path.is_file() else []


def _read_var_file(inv: AnsibleInventory, path: Path) -> dict[str, Var]:
    name = display_path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        inv.problems.append(Problem(name, None, "", f"cannot read: {reason}"))
        return {}
    if text.lstrip().startswith("$ANSIBLE_VAULT;"):
        inv.warnings.append(Problem(name, 1, "", "encrypted with Ansible Vault: not read by provision"))
        return {}
    try:
        located = parse_yaml(text, name, ANSIBLE_TAGS)
    except ConfigError as exc:
        inv.problems += exc.problems
        return {}
    if located.data is None:
        return {}
    if not isinstance(located.data, dict):
        inv.problems.append(located.problem((), "a vars file must be a mapping of variables"))
        return {}
    return {k: Var(k, v, _at(located, (k,)), located, (k,)) for k, v in located.data.items()}


# Ansible -> provision ---------------------------------------------------------------------


def _ancestors(inv: AnsibleInventory) -> dict[str, list[str]]:
    """Host -> its groups and theirs, without all, in precedence order."""
    depth: dict[str, int] = {"all": 0}
    for name, group in inv.groups.items():
        if name != "all" and not group.parents:
            inv.add_child("all", name)
    _report_cycles(inv)

    # Depth: the longest path from all (a group listed under two parents takes the deeper).
    def visit(name: str, trail: tuple[str, ...]) -> None:
        for child in inv.groups[name].children:
            if child not in trail and depth.get(child, -1) < len(trail):
                depth[child] = len(trail)
                visit(child, (*trail, child))

    visit("all", ("all",))
    for name in inv.groups:
        depth.setdefault(name, 1)
    priority = {name: _priority(group) for name, group in inv.groups.items()}
    parents_memo: dict[str, set[str]] = {}

    def lineage(name: str) -> set[str]:
        known = parents_memo.get(name)
        if known is None:
            parents_memo[name] = set()  # a cycle ends here
            known = {name}
            for parent in inv.groups[name].parents:
                known |= lineage(parent)
            parents_memo[name] = known
        return known

    ancestors: dict[str, list[str]] = {}
    for host in inv.hosts.values():
        listed = [g for g in host.groups if g not in ("all", "ungrouped")] or ["ungrouped"]
        found = set().union(*(lineage(g) for g in listed)) - {"all"}
        ancestors[host.name] = sorted(found, key=lambda g: (depth[g], priority[g], g))
    return ancestors


def _report_cycles(inv: AnsibleInventory) -> None:
    """A group among its own children (a -> b -> a) is an error, said once per cycle."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in inv.groups:
        if start in state:
            continue
        path = [start]
        state[start] = 1
        stack = [iter(inv.groups[start].children)]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            seen = state.get(child)
            if seen == 1:
                cycle = [*path[path.index(child) :], child]
                origin = inv.groups[child].origin
                message = f"group {shown(child)} is its own ancestor ({' -> '.join(cycle)})"
                inv.problems.append(Problem(origin.file, origin.line, "", message))
            elif seen is None:
                state[child] = 1
                path.append(child)
                stack.append(iter(inv.groups[child].children))


def _priority(group: AnsibleGroup) -> int:
    var = group.file_vars.get("ansible_group_priority") or group.vars.get("ansible_group_priority")
    try:
        return int(var.value) if var is not None and not isinstance(var.value, bool) else 1
    except (TypeError, ValueError):
        return 1


@dataclass
class Converted:
    located: Located
    warnings: list[Problem]
    problems: list[Problem]


def to_provision(inv: AnsibleInventory) -> Converted:
    """Provision's inventory data for an Ansible inventory; problems and warnings located."""
    builder = _Builder(inv)
    builder.build()
    return Converted(builder.located, builder.warnings, builder.problems)


class _Builder:
    def __init__(self, inv: AnsibleInventory) -> None:
        self.inv = inv
        self.data: dict[str, Any] = {"defaults": {}, "groups": {}, "hosts": {}}
        self.located = Located(self.data, {(): Origin(inv.file, 1)}, inv.file)
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self._unmapped: dict[str, set[Origin]] = {}
        self._playbook: dict[str, Origin] = {}
        self._seen: set[Problem] = set()  # a problem met for every host is said once

    # The steps -----------------------------------------------------------------------------

    def build(self) -> None:
        inv = self.inv
        ancestors = _ancestors(inv)
        for problem in inv.problems:
            self._fail(problem)
        for warning in inv.warnings:
            self._warn(warning)
        scopes = self._scopes(ancestors)
        # When some hosts are marked as reached over WinRM, the others are not provision's.
        layers = [layer for g in inv.groups.values() for layer in (g.vars, g.file_vars)]
        layers += [layer for h in inv.hosts.values() for layer in (h.vars, h.file_vars)]
        filtering = any(layer.get("ansible_connection", _NONE).value in WINRM_CONNECTIONS for layer in layers)
        kept: list[str] = []
        left_out: list[tuple[str, str]] = []
        for host in inv.hosts.values():
            effective = _effective(scopes[host.name])
            connection = effective.get("ansible_connection")
            found = self._set(connection)
            plugin = str(found.value) if found is not None else None
            if (plugin is not None and plugin not in WINRM_CONNECTIONS) or (filtering and plugin is None):
                how = f"{plugin}, {connection.origin}" if connection is not None else "Ansible's default, ssh"
                left_out.append((host.name, how))
                continue
            if self._bad_groups(ancestors[host.name]):
                continue
            kept.append(host.name)
            self._host(host.name, ancestors[host.name], effective, plugin or "winrm")
        self._defaults(inv.groups["all"])
        used = {g for h in kept for g in ancestors[h]}
        for name, group in inv.groups.items():
            own = any(v.startswith("provision_") for v in (*group.vars, *group.file_vars))
            if name != "all" and (name in used or own) and is_name(name):
                self._group(group)  # groups of hosts provision leaves out are not its business
        self._classify(inv.groups["all"].vars, inv.groups["all"].file_vars)
        for name in sorted(used):
            self._classify(inv.groups[name].vars, inv.groups[name].file_vars)
        for name in kept:
            self._classify(inv.hosts[name].vars, inv.hosts[name].file_vars)
        if left_out:
            names = ", ".join(f"{h} ({how})" for h, how in left_out[:5])
            more = f" and {len(left_out) - 5} more" if len(left_out) > 5 else ""
            self._warn(
                Problem(
                    inv.file,
                    None,
                    "",
                    f"{len(left_out)} host(s) left out, reached by Ansible with another "
                    f"connection than winrm or psrp: {names}{more}",
                )
            )
        self._report_unmapped()

    def _bad_groups(self, groups: list[str]) -> bool:
        """Group names provision cannot take (Ansible allows '.', for one): said once per group."""
        bad = [g for g in groups if not is_name(g)]
        for name in bad:
            origin = self.inv.groups[name].origin
            self._fail(
                Problem(
                    origin.file, origin.line, "", f"group name {shown(name)}: provision's group names are {NAME_RULE}"
                )
            )
        return bool(bad)

    def _fail(self, problem: Problem) -> None:
        if problem not in self._seen:
            self._seen.add(problem)
            self.problems.append(problem)

    def _warn(self, problem: Problem) -> None:
        if problem not in self._seen:
            self._seen.add(problem)
            self.warnings.append(problem)

    def _scopes(self, ancestors: dict[str, list[str]]) -> dict[str, list[dict[str, Var]]]:
        """Each host's variable layers in Ansible's precedence, lowest first."""
        inv = self.inv
        all_group = inv.groups["all"]
        out: dict[str, list[dict[str, Var]]] = {}
        for host in inv.hosts.values():
            groups = [inv.groups[g] for g in ancestors[host.name]]
            out[host.name] = [
                all_group.vars,
                all_group.file_vars,
                *(g.vars for g in groups),
                *(g.file_vars for g in groups),
                host.vars,
                host.file_vars,
            ]
        return out

    def _defaults(self, group: AnsibleGroup) -> None:
        self._provision_vars({**group.vars, **group.file_vars}, "all", ("defaults",))

    def _group(self, group: AnsibleGroup) -> None:
        path: FieldPath = ("groups", group.name)
        self.data["groups"][group.name] = {}
        self.located.origins[path] = group.origin
        self._provision_vars({**group.vars, **group.file_vars}, "group", path)

    def _host(self, name: str, groups: list[str], effective: dict[str, Var], plugin: str) -> None:
        inv = self.inv
        host = inv.hosts[name]
        path: FieldPath = ("hosts", name)
        entry: dict[str, Any] = {"groups": list(groups)}
        self.data["hosts"][name] = entry
        self.located.origins[path] = host.origin
        self.located.origins[(*path, "groups")] = host.origin
        self.located.names[path] = name
        self._provision_vars({**host.vars, **host.file_vars}, "host", path)
        connection = self._connection(name, effective, plugin)
        if connection:
            entry["connection"] = connection

    # Connection ----------------------------------------------------------------------------

    def _connection(self, host: str, effective: dict[str, Var], plugin: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        base: FieldPath = ("hosts", host, "connection")

        def put(key: str, var: Var, value: Any) -> None:
            out[key] = value
            self.located.origins[(*base, key)] = var.origin
            self.located.names[(*base, key)] = var.name

        address = self._set(effective.get("ansible_host"))
        if address is not None:
            put("address", address, address.value)
        port = self._set(effective.get("ansible_port"))
        if port is not None:
            put("port", port, _number(port.value))
        scheme = self._set(effective.get(_SCHEME[plugin]))
        if scheme is not None:
            put("scheme", scheme, scheme.value.lower() if isinstance(scheme.value, str) else scheme.value)
        elif port is not None and _number(port.value) == 5985:
            put("scheme", port, "http")  # Ansible's rule: port 5985 without a scheme means http
        auth = self._set(effective.get(_AUTH[plugin]))
        if auth is not None:
            var, value = auth, auth.value
            names = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
            first = str(names[0]).strip().lower() if names else ""
            chosen = _AUTH_NAMES.get(first)
            if chosen is None:
                # Ansible tries its transports in order; provision speaks one, chosen here.
                self._warn(
                    self._problem(
                        var,
                        f"{shown(value)}: provision authenticates with ntlm, kerberos or "
                        "basic; it uses ntlm, its default, for these hosts",
                    )
                )
            elif chosen == "basic" and out.get("scheme") == "http":
                where = self.located.origins[(*base, "scheme")]
                self._fail(
                    self._problem(
                        var,
                        "basic auth sends the password in clear text; it is allowed only "
                        f"over https (http is set at {where})",
                    )
                )
            else:
                put("auth", var, chosen)
        check = self._set(effective.get(_CERT[plugin]))
        if check is not None and str(check.value).lower() != "validate":
            self._warn(
                self._problem(
                    check,
                    f"{shown(check.value)} is not followed: provision always checks the "
                    f"certificates (trust your CA with {_CA[plugin]} or provision_ca_bundle; only "
                    "push --no-verify-tls turns checking off, for one run)",
                )
            )
        ca = self._set(effective.get("provision_ca_bundle") or effective.get(_CA[plugin]))
        if ca is not None:
            put("ca_bundle", ca, ca.value)
        return out

    def _set(self, var: Var | None) -> Var | None:
        """The variable when it is set (null is Ansible's "not set") and its value usable."""
        if var is None or var.value is None or not self._usable(var):
            return None
        return var

    def _usable(self, var: Var) -> bool:
        """A value provision can use: not encrypted, not a template."""
        if isinstance(var.value, Vaulted):
            self._fail(self._problem(var, "is encrypted with Ansible Vault; provision cannot read it"))
            return False
        if _templated(var.value):
            self._fail(
                self._problem(var, "is a Jinja2 template; provision does not evaluate templates: write the value")
            )
            return False
        return True

    # provision_* variables -----------------------------------------------------------------

    def _provision_vars(self, variables: dict[str, Var], scope: str, path: FieldPath) -> None:
        target = self._at(path)
        for name, var in variables.items():
            if not name.startswith("provision_"):
                continue
            known = PROVISION_VARS.get(name)
            if known is None:
                close = difflib.get_close_matches(name, PROVISION_VARS, n=1, cutoff=0.75)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                known_list = ", ".join(PROVISION_VARS)
                self._fail(self._problem(var, f"not a provision variable ({known_list}){hint}"))
                continue
            key, scopes = known
            if key == "ca_bundle":
                continue  # a connection setting, resolved per host with the others
            if scope not in scopes:
                where = " or ".join(_WHERE[s] for s in sorted(scopes))
                self._fail(self._problem(var, f"is set on {_WHERE[scope]}; it belongs to {where}"))
                continue
            if not self._usable(var):
                continue
            value = var.value
            if key == "profiles" and isinstance(value, str):
                value = [p for p in re.split(r"[,\s]+", value) if p]  # a name, or names separated by commas
            if key in ("users_csv", "hosts_csv"):
                value = [value] if isinstance(value, str) else value
                self.data[key] = value
                self._place((key,), var)
                continue
            target[key] = value
            self._place((*path, key), var)

    def _at(self, path: FieldPath) -> dict[str, Any]:
        node: Any = self.data
        for part in path:
            node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
        return node  # type: ignore[no-any-return]

    def _place(self, path: FieldPath, var: Var) -> None:
        """Origins and names for a value placed at `path`, from where the variable was written."""
        self.located.origins[path] = var.origin
        self.located.names[path] = var.name
        if var.located is None:
            return
        source, prefix = var.located, var.path
        stack: list[tuple[FieldPath, Any]] = [((), var.value)]
        while stack:
            relative, node = stack.pop()
            if relative:
                found = source.origins.get((*prefix, *relative))
                if found is not None:
                    self.located.origins[(*path, *relative)] = found
            if isinstance(node, dict):
                stack.extend(((*relative, k), v) for k, v in node.items())
            elif isinstance(node, list):
                stack.extend(((*relative, i), v) for i, v in enumerate(node))

    # Reporting what is not used ------------------------------------------------------------

    def _classify(self, *layers: dict[str, Var]) -> None:
        for layer in layers:
            for var in layer.values():
                if var.name.startswith("provision_") or var.name in MAPPED_ANSIBLE_VARS:
                    continue
                if var.name.startswith("ansible_"):
                    self._unmapped.setdefault(var.name, set()).add(var.origin)
                else:
                    self._playbook.setdefault(var.name, var.origin)

    def _report_unmapped(self) -> None:
        for name, origins in sorted(self._unmapped.items()):
            first = min(origins, key=lambda o: (o.file, o.line))
            why = _WHY_NOT_MAPPED.get(name, "not used by provision")
            more = f" (also set in {len(origins) - 1} other place(s))" if len(origins) > 1 else ""
            self._warn(Problem(first.file, first.line, name, f"{why}{more}"))
        if self._playbook:
            listed = sorted(self._playbook.items(), key=lambda item: (item[1].file, item[1].line))
            names = ", ".join(f"{name} ({origin})" for name, origin in listed[:6])
            more = f" and {len(listed) - 6} more" if len(listed) > 6 else ""
            self._warn(
                Problem(
                    self.inv.file,
                    None,
                    "",
                    f"{len(listed)} variable(s) for playbooks, not used by provision: {names}{more}",
                )
            )

    def _problem(self, var: Var, message: str) -> Problem:
        return Problem(var.origin.file, var.origin.line, var.name, message)


_NONE = Var("", None, Origin("", 0))


def _effective(layers: list[dict[str, Var]]) -> dict[str, Var]:
    out: dict[str, Var] = {}
    for layer in layers:
        out.update(layer)
    return out


def _number(value: Any) -> Any:
    """A port written as text in an INI file ("5986") is the number."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


def _templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, list):
        return any(_templated(v) for v in value)
    if isinstance(value, dict):
        return any(_templated(v) for v in value.values())
    return False


# Reading an Ansible inventory whole -------------------------------------------------------


def read_ansible(inv: AnsibleInventory, folder: Path) -> Converted:
    """group_vars/ and host_vars/ beside the file, then the conversion."""
    read_var_folders(inv, folder)
    return to_provision(inv)


def ansible_names(inv: AnsibleInventory) -> tuple[list[str], list[str]]:
    """Host and group names, for shell completion (no conversion, no checks)."""
    groups = [g for g in inv.groups if g != "all" and (g != "ungrouped" or inv.groups[g].hosts)]
    return list(inv.hosts), groups
