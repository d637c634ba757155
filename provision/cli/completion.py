"""Shell completion of host, group and profile names (bash, zsh, fish and PowerShell via click).

Completion must be quick and must never fail: the inventory is read as plain YAML, without
validation, and anything unreadable simply completes nothing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click
import yaml
from click.shell_completion import CompletionItem


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


def _inventory(ctx: click.Context) -> dict[str, Any]:
    path = _inventory_path(ctx)
    if path is None or not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def host_names(ctx: click.Context) -> list[str]:
    hosts = _inventory(ctx).get("hosts")
    return [str(h) for h in hosts] if isinstance(hosts, dict) else []


def group_names(ctx: click.Context) -> list[str]:
    data = _inventory(ctx)
    groups = data.get("groups")
    names = {str(g) for g in groups} if isinstance(groups, dict) else set()
    for host in (data.get("hosts") or {}).values() if isinstance(data.get("hosts"), dict) else []:
        if isinstance(host, dict) and isinstance(host.get("groups"), list):
            names.update(str(g) for g in host["groups"])
    return sorted(names)


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


_TERM_START = re.compile(r"^(.*[,:&!])?(.*)$")


def complete_pattern(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """A --limit pattern: the term being typed after ',', ':', '&' or '!' completes to a host or group."""
    match = _TERM_START.match(incomplete)
    head, term = (match.group(1) or "", match.group(2)) if match else ("", incomplete)
    names = ["all", *group_names(ctx), *host_names(ctx)]
    return [CompletionItem(head + n) for n in dict.fromkeys(names) if n.startswith(term)]
