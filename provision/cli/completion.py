"""Shell completion of host, group and profile names (bash, zsh, fish and PowerShell via click).

Completion must be quick and must never fail: the inventory (provision's YAML or an Ansible
INI or YAML inventory) is read for its names only, without validation, and anything
unreadable simply completes nothing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import click
from click.shell_completion import CompletionItem

from provision.model.inventory_source import inventory_names


def _inventory_path(ctx: click.Context) -> Path | None:
    for context in (ctx, *_parents(ctx)):
        value = context.params.get("inventory")
        if value:
            return Path(value)
    found = ctx.lookup_default("inventory") or os.environ.get("PROVISION_INVENTORY")
    return Path(found) if found else None


def _parents(ctx: click.Context) -> list[click.Context]:
    out = []
    while ctx.parent is not None:
        ctx = ctx.parent
        out.append(ctx)
    return out


def _names(ctx: click.Context) -> tuple[list[str], list[str]]:
    """Host and group names of the inventory: provision's own, or an Ansible one (INI or YAML)."""
    path = _inventory_path(ctx)
    if path is None or not path.is_file():
        return [], []
    key = str(path.resolve())
    if key not in _CACHE:
        try:
            _CACHE[key] = inventory_names(path)
        except Exception:  # noqa: BLE001 - completing must never fail: an unreadable inventory completes nothing
            _CACHE[key] = ([], [])
    return _CACHE[key]


_CACHE: dict[str, tuple[list[str], list[str]]] = {}


def host_names(ctx: click.Context) -> list[str]:
    return _names(ctx)[0]


def group_names(ctx: click.Context) -> list[str]:
    return sorted(_names(ctx)[1])


def profile_names(ctx: click.Context) -> list[str]:
    root = ctx.find_root()
    folder = Path(root.params.get("profiles_dir") or "profiles")
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def complete_hosts(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(h) for h in host_names(ctx) if h.startswith(incomplete)]


def complete_groups(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(g) for g in group_names(ctx) if g.startswith(incomplete)]


def complete_profiles(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(p) for p in profile_names(ctx) if p.startswith(incomplete)]


_TERM_START = re.compile(r"^(.*[,:&!~])?(.*)$")


def complete_pattern(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """A --limit pattern: the term being typed after ',', ':', '&' or '!' completes to a host or
    group; '@' completes to a file (a retry file)."""
    match = _TERM_START.match(incomplete)
    head, term = (match.group(1) or "", match.group(2)) if match else ("", incomplete)
    if term.startswith("@"):
        return [CompletionItem(head + "@" + p) for p in _files(term[1:])]
    names = ["all", *group_names(ctx), *host_names(ctx)]
    return [CompletionItem(head + n) for n in dict.fromkeys(names) if n.startswith(term)]


def _files(prefix: str) -> list[str]:
    folder, _, start = prefix.rpartition("/")
    base = Path(folder or ".")
    try:
        entries = sorted(base.iterdir()) if base.is_dir() else []
    except OSError:
        return []
    out = []
    for entry in entries:
        if entry.name.startswith(start) and not entry.name.startswith("."):
            name = f"{folder}/{entry.name}" if folder else entry.name
            out.append(name + ("/" if entry.is_dir() else ""))
    return out
