"""From an inventory and profiles to targets: one (host, Windows user) pair each, fully resolved.

A target carries everything the renderer needs and nothing it must look up again:
the layered profile, the SIP accounts with the user's identity filled in, and where
each secret reference was written (for error messages).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import ConfigError, Problem
from provision.model.inventory import Connection, Install, Inventory, User
from provision.model.inventory_source import read_inventory
from provision.model.layering import Layer
from provision.model.patterns import HostIndex, parse_pattern, read_pattern_file, select
from provision.model.source import FieldPath, Located, paused_gc
from provision.model.store import ProfileStore, Reference, ResolvedProfile
from provision.model.users_csv import load_users_csv
from provision.model.validation import validate
from provision.model.values import shown

# Account keys that identify the user rather than the service.
_IDENTITY = {
    "username": "username",
    "auth_id": "authID",
    "display_name": "displayName",
    "label": "label",
}


@dataclass(frozen=True)
class SecretUse:
    """A secret reference and where it was written."""

    ref: str
    where: str


@dataclass(frozen=True)
class ResolvedAccount:
    name: str
    section: str
    values: dict[str, Any]
    password: SecretUse | None


@dataclass(frozen=True)
class Target:
    host: str
    user: str
    connection: Connection
    install: Install
    resolved: ResolvedProfile
    accounts: tuple[ResolvedAccount, ...]
    active_index: int
    user_model: User = field(repr=False)

    @property
    def id(self) -> str:
        return f"{self.host}/{self.user}"


@dataclass
class LoadedInventory:
    path: Path
    located: Located  # provision's own inventory data, whatever format the file was in
    model: Inventory
    # Where each host's users were written: (Located, path of the user mapping).
    user_sources: dict[str, list[tuple[Located, FieldPath]]]
    #: Things in the file provision does not use (an Ansible inventory's other variables).
    warnings: list[Problem] = field(default_factory=list)
    kind: str = "provision"  # or "ansible-ini", "ansible-yaml"


def load_inventory(path: Path) -> LoadedInventory:
    """Read and check an inventory: provision's YAML or an Ansible one (INI or YAML), with host
    ranges, hosts_csv and users_csv. Every problem at once as a ConfigError."""
    source = read_inventory(path)
    located = source.located
    problems = list(source.problems)
    with paused_gc():
        model, invalid = validate(Inventory, located)
    problems += invalid
    if model is None:
        raise ConfigError(problems)
    sources: dict[str, list[tuple[Located, FieldPath]]] = {
        name: [(located, ("hosts", name, "users", i)) for i in range(len(host.users))]
        for name, host in model.hosts.items()
    }
    hosts = dict(model.hosts)
    for index, csv_name in enumerate(model.users_csv):
        csv_path = path.parent / csv_name
        if not csv_path.is_file():
            problems.append(located.problem(("users_csv", index), f"{csv_name}: file not found"))
            continue
        try:
            rows = load_users_csv(csv_path)
        except ConfigError as exc:
            problems += exc.problems
            continue
        for host_name, row in rows:
            host = hosts.get(host_name)
            if host is None:
                problems.append(row.problem((), f"host {shown(host_name)} is not in the inventory"))
                continue
            user, invalid = validate(User, row)
            problems += invalid
            if user is None:
                continue
            if any(u.name.casefold() == user.name.casefold() for u in host.users):
                problems.append(row.problem(("name",), f"user {shown(user.name)} is already listed for {host_name}"))
                continue
            hosts[host_name] = host.model_copy(update={"users": [*host.users, user]})
            sources[host_name].append((row, ()))
    if problems:
        raise ConfigError(problems)
    model = model.model_copy(update={"hosts": hosts})
    return LoadedInventory(path, located, model, sources, source.warnings, source.kind)


def select_hosts(inventory: Inventory, limit: str | None = None, hosts: Sequence[str] = ()) -> list[str]:
    """Hosts chosen by --host names and a --limit pattern with Ansible's grammar
    ('sales:&lyon:!ws-lyon-03', '~ws-0[1-5]', 'sales[0:2]', '@retry.txt'; see model/patterns.py)."""
    names = list(inventory.hosts)
    unknown = [h for h in hosts if h not in inventory.hosts]
    if unknown:
        raise ConfigError([Problem("--host", None, "", f"{shown(h)} is not in the inventory") for h in unknown])
    chosen = [h for h in names if h in hosts] if hosts else names
    if not limit:
        return chosen
    index = HostIndex(names, {name: host.groups for name, host in inventory.hosts.items()}, list(inventory.groups))
    terms, problems = parse_pattern(limit, read_pattern_file)
    picked = set(select(index, terms, problems))
    result = [h for h in chosen if h in picked]
    if not result:
        among = " among the --host names" if hosts else ""
        raise ConfigError([Problem("--limit", None, "", f"{shown(limit)} selects no host{among}")])
    return result


@dataclass
class HostList:
    """The hosts a selection chooses, for `provision list-hosts`."""

    inventory: LoadedInventory
    chosen: list[str]

    @property
    def warnings(self) -> list[Problem]:
        return self.inventory.warnings


def list_hosts(path: Path, limit: str | None = None, hosts: Sequence[str] = ()) -> HostList:
    inventory = load_inventory(path)
    return HostList(inventory, select_hosts(inventory.model, limit, hosts))


def profile_references(store: ProfileStore, inventory: LoadedInventory) -> list[Problem]:
    """Every profile the inventory names, used by a host or not, must exist (with its parents)."""
    model, located = inventory.model, inventory.located
    lists: list[tuple[FieldPath, list[str]]] = [(("defaults", "profiles"), model.defaults.profiles)]
    lists += [(("groups", name, "profiles"), group.profiles) for name, group in model.groups.items()]
    lists += [(("hosts", name, "profiles"), host.profiles) for name, host in model.hosts.items()]
    problems: list[Problem] = []
    seen: set[str] = set()
    for path, names in lists:
        for index, name in enumerate(names):
            if name in seen:
                continue
            try:
                store.chain([(name, Reference(located, (*path, index)))])
                seen.add(name)
            except ConfigError as exc:
                problems += exc.problems
    return problems


def resolve_targets(store: ProfileStore, inventory: LoadedInventory, hosts: Iterable[str]) -> list[Target]:
    """Every (host, user) target of the chosen hosts; all problems at once as a ConfigError."""
    targets: list[Target] = []
    problems: list[Problem] = []
    for host_name in hosts:
        try:
            targets += _host_targets(store, inventory, host_name)
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return targets


def _host_targets(store: ProfileStore, inv: LoadedInventory, host_name: str) -> list[Target]:
    model, located = inv.model, inv.located
    host = model.hosts[host_name]
    host_path: FieldPath = ("hosts", host_name)
    refs: list[tuple[str, Reference | None]] = [
        (n, Reference(located, ("defaults", "profiles", i))) for i, n in enumerate(model.defaults.profiles)
    ]
    fragments = [Layer(located, ("defaults", "overrides"))] if model.defaults.overrides else []
    connection = model.defaults.connection
    # Where each connection field was last set, for rules that span layers.
    set_at: dict[str, FieldPath] = {f: ("defaults", "connection", f) for f in _set_fields(connection)}
    install = model.defaults.microsip
    for i, group_name in enumerate(host.groups):
        group = model.groups.get(group_name)
        if group is None:
            known = ", ".join(model.groups) or "none"
            raise ConfigError(
                [located.problem((*host_path, "groups", i), f"no group {shown(group_name)} (groups: {known})")]
            )
        group_path: FieldPath = ("groups", group_name)
        refs += [(n, Reference(located, (*group_path, "profiles", j))) for j, n in enumerate(group.profiles)]
        if group.overrides:
            fragments.append(Layer(located, (*group_path, "overrides")))
        connection = connection.merged(group.connection)
        set_at.update({f: (*group_path, "connection", f) for f in _set_fields(group.connection)})
        install = install.merged(group.microsip)
    refs += [(n, Reference(located, (*host_path, "profiles", i))) for i, n in enumerate(host.profiles)]
    if host.overrides:
        fragments.append(Layer(located, (*host_path, "overrides")))
    connection = connection.merged(host.connection)
    set_at.update({f: (*host_path, "connection", f) for f in _set_fields(host.connection)})
    install = install.merged(host.microsip)
    if connection.auth == "basic" and connection.scheme == "http":
        # Each layer alone may be fine; the result would send the password in clear text.
        scheme_at = located.origin(set_at["scheme"])
        raise ConfigError(
            [
                located.problem(
                    set_at["auth"],
                    "basic auth sends the password in clear text; it is allowed only with scheme: https "
                    f"(scheme: http is set at {scheme_at or located.file})",
                )
            ]
        )
    if install.mode == "portable" and not install.exe:
        raise ConfigError(
            [located.problem((*host_path, "microsip"), "portable MicroSIP needs microsip.exe (the exe path)")]
        )
    if not refs:
        raise ConfigError(
            [
                located.problem(
                    host_path,
                    "has no profile (set profiles on the host, a group or defaults; "
                    "provision_profiles in an Ansible inventory)",
                )
            ]
        )
    chain = store.chain(refs)
    targets = []
    problems: list[Problem] = []
    for user, (user_located, user_path) in zip(host.users, inv.user_sources[host_name], strict=True):
        user_fragments = list(fragments)
        if user.overrides:
            user_fragments.append(Layer(user_located, (*user_path, "overrides")))
        try:
            resolved = store.resolve(chain, user_fragments)
            targets.append(_target(host_name, user, resolved, connection, install, user_located, user_path))
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return targets


def _set_fields(connection: Connection) -> set[str]:
    return {f for f in connection.model_fields_set if getattr(connection, f) is not None}


def _target(
    host_name: str,
    user: User,
    resolved: ResolvedProfile,
    connection: Connection,
    install: Install,
    user_located: Located,
    user_path: FieldPath,
) -> Target:
    profile, merged = resolved.profile, resolved.located
    problems: list[Problem] = []

    def where(path: FieldPath) -> str:
        origin = user_located.origin((*user_path, *path))
        return f"{origin}" if origin else user_located.file

    if not profile.accounts:
        problems.append(merged.problem(("accounts",), f"{host_name}/{user.name}: the profile defines no SIP account"))
    for name in user.accounts:
        if name not in profile.accounts:
            problems.append(user_located.problem((*user_path, "accounts", name), "names no account of the profile"))
    accounts = []
    for index, (name, account) in enumerate(profile.accounts.items()):
        values = account.model_dump(exclude_none=True)
        ref = account.password
        ref_where = str(merged.origin(("accounts", name, "password")) or merged.file)
        if index == 0:
            own = {
                "username": user.username or user.extension,
                "auth_id": user.auth_id,
                "display_name": user.display_name,
            }
            values.update({_IDENTITY[k]: v for k, v in own.items() if v})
            if user.password:
                ref, ref_where = user.password, where(("password",))
        extra = user.accounts.get(name)
        if extra is not None:
            values.update({_IDENTITY[k]: v for k, v in extra.model_dump(exclude_none=True).items() if k in _IDENTITY})
            if extra.password:
                ref, ref_where = extra.password, where(("accounts", name, "password"))
        values.pop("password", None)
        for required in ("server", "domain"):
            if not values.get(required):
                problems.append(merged.problem(("accounts", name), f"has no {required} once all layers are applied"))
        if not values.get("username"):
            problems.append(
                user_located.problem(
                    user_path,
                    f"account {name!r} has no username (give the user an extension or username); "
                    "MicroSIP would pop up its account dialog",
                )
            )
        password = SecretUse(ref, ref_where) if ref else None
        accounts.append(ResolvedAccount(name, f"Account{index + 1}", values, password))
    if problems:
        raise ConfigError(problems)
    active = list(profile.accounts).index(profile.active_account) + 1 if profile.active_account else 1
    return Target(host_name, user.name, connection, install, resolved, tuple(accounts), active, user)


SMOKE_USER = "provision-smoke"


def smoke_target(store: ProfileStore, host: Target, profile_name: str) -> Target:
    """The test instance's target on a host: the smoke profile alone, with the host's connection.

    The smoke profile must give everything itself (its account's username included), turn
    logging on (the checks read the log) and set a sourcePort of its own, so the test copy
    never competes with the user's MicroSIP for a port."""
    resolved = store.resolve(store.chain([(profile_name, None)]))
    located = resolved.located
    settings = resolved.profile.settings
    problems = []
    if settings.enableLog is not True:
        problems.append(located.problem(("settings", "enableLog"), "a smoke profile must set enableLog: true"))
    if not settings.sourcePort:
        problems.append(located.problem(("settings", "sourcePort"), "a smoke profile must set a sourcePort of its own"))
    if settings.updatesInterval not in (None, "never"):
        problems.append(
            located.problem(("settings", "updatesInterval"), "a smoke profile must not prompt for updates (never)")
        )
    if problems:
        raise ConfigError(problems)
    user = User(name=SMOKE_USER)
    return _target(host.host, user, resolved, host.connection, host.install, located, ())
