"""The profile and inventory reference (docs/profile-reference.md), generated from the models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from provision.model.inventory import (
    Connection,
    Defaults,
    Group,
    Host,
    Install,
    Inventory,
    User,
    UserAccount,
)
from provision.model.profile import Account, Audio, Hook, Hooks, Profile, Settings, Smoke

PROFILE_MODELS: list[tuple[str, type[BaseModel]]] = [
    ("Profile file", Profile),
    ("settings", Settings),
    ("accounts.NAME", Account),
    ("hooks", Hooks),
    ("Hook", Hook),
    ("audio", Audio),
    ("smoke", Smoke),
]
INVENTORY_MODELS: list[tuple[str, type[BaseModel]]] = [
    ("Inventory file", Inventory),
    ("defaults", Defaults),
    ("groups.NAME", Group),
    ("hosts.NAME", Host),
    ("users[]", User),
    ("users[].accounts.NAME", UserAccount),
    ("connection", Connection),
    ("microsip", Install),
]
_ANCHORS = {model.__name__: title for title, model in PROFILE_MODELS + INVENTORY_MODELS}

HEADER = """# Profile and inventory reference

Generated from provision's models by `provision profiles reference`; do not edit by hand.
A key no layer sets is not managed: whatever the workstation has for it is kept.
"Versions" gives the MicroSIP versions that read a key; a profile whose
`microsip_version` is outside that range is rejected.
"""


def reference_markdown() -> str:
    parts = [HEADER, "\n## Profiles\n"]
    parts += [_section(title, model) for title, model in PROFILE_MODELS]
    parts.append("\n## Inventory\n")
    parts += [_section(title, model) for title, model in INVENTORY_MODELS]
    return "\n".join(parts).rstrip() + "\n"


def _section(title: str, model: type[BaseModel]) -> str:
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    lines = [f"### `{title}`", "", (model.__doc__ or "").strip().split("\n\n")[0], ""]
    lines += ["| key | values | versions | meaning |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        prop = schema["properties"][name]
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        versions = _versions(extra)
        required = " (required)" if info.is_required() else ""
        description = (info.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}`{required} | {_describe(prop)} | {versions} | {description} |")
    return "\n".join(lines) + "\n"


def _versions(extra: dict[str, Any]) -> str:
    since, until = extra.get("since"), extra.get("until")
    if since and until:
        return f"{since}-{until}"
    if since:
        return f"{since}+"
    if until:
        return f"up to {until}"
    return "all"


def _describe(prop: dict[str, Any]) -> str:
    if "anyOf" in prop:
        options = [p for p in prop["anyOf"] if p.get("type") != "null"]
        return " or ".join(_describe(p) for p in options)
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        title = _ANCHORS.get(name, name)
        return f"[{name}](#{_slug(title)})"
    if "enum" in prop or "const" in prop:
        values = prop.get("enum", [prop.get("const")])
        return ", ".join("`''`" if v == "" else f"`{_yaml(v)}`" for v in values)
    kind = prop.get("type")
    if kind == "boolean":
        return "true, false"
    if kind == "integer":
        low, high = prop.get("minimum"), prop.get("maximum")
        return f"{low}-{high}" if low is not None and high is not None else "integer"
    if kind == "string":
        limit = prop.get("maxLength")
        return f"text (up to {limit})" if limit else "text"
    if kind == "array":
        return f"list of {_describe(prop.get('items', {}))}"
    if kind == "object":
        inner = prop.get("additionalProperties") or next(iter(prop.get("patternProperties", {}).values()), None)
        return f"mapping of name to {_describe(inner)}" if isinstance(inner, dict) and inner else "mapping"
    return "any"


def _yaml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _slug(title: str) -> str:
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c == "-")
