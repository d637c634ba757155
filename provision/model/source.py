"""Loading YAML while remembering where every value came from.

Errors must name file, line and field, and `profiles show --resolved` tells which file
set each value, so YAML is composed into nodes and turned into plain data by hand,
recording the line of every mapping key and list item on the way.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provision.errors import ConfigError, Problem, display_path

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Origin:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Located:
    """Plain data (dicts, lists, scalars) and the origin of each path inside it."""

    data: Any
    origins: dict[FieldPath, Origin] = field(default_factory=dict)
    file: str = ""

    def origin(self, path: Iterable[str | int]) -> Origin | None:
        """The origin of `path`, or of its closest ancestor that has one."""
        parts = tuple(path)
        while True:
            found = self.origins.get(parts)
            if found is not None or not parts:
                return found
            parts = parts[:-1]

    def problem(self, path: Iterable[str | int], message: str) -> Problem:
        parts = tuple(path)
        origin = self.origin(parts)
        return Problem(
            file=origin.file if origin else self.file,
            line=origin.line if origin else None,
            field=dotted(parts),
            message=message,
        )


def dotted(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_yaml(path: Path) -> Located:
    """Read a YAML file into plain data with origins. Bad YAML is a ConfigError."""
    name = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(name, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([Problem(name, None, "", f"cannot read: {reason}")]) from None
    return parse_yaml(text, name)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building a large tree of fresh objects.

    Loading creates no reference cycles worth collecting mid-way, but the collector keeps
    re-walking the growing heap: on a 10,000-user inventory it made loading super-linear
    (1.8 s instead of 0.7 s, bench/render.py).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_yaml(text: str, name: str) -> Located:
    with paused_gc():
        return _parse_yaml(text, name)


def _parse_yaml(text: str, name: str) -> Located:
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        detail = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([Problem(name, line, "", f"invalid YAML: {detail}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(name, None, "", f"invalid YAML: {exc}")]) from None
    located = Located(data=None, file=name)
    if node is not None:
        converter = _Converter(name, located.origins)
        located.origins[()] = Origin(name, node.start_mark.line + 1)
        located.data = converter.convert(node, ())
        if converter.problems:
            raise ConfigError(converter.problems)
    return located


# libyaml's composer is several times faster on large inventories; fall back to pure Python.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_NUMBER = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?$")


class _Converter:
    def __init__(self, name: str, origins: dict[FieldPath, Origin]) -> None:
        self.name = name
        self.origins = origins
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")

    def convert(self, node: yaml.Node, path: FieldPath) -> Any:
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.origins[(*path, index)] = Origin(self.name, item.start_mark.line + 1)
                items.append(self.convert(item, (*path, index)))
            return items
        value = self._constructor.construct_object(node, deep=True)
        if isinstance(value, int | float) and not isinstance(value, bool) and not _PLAIN_NUMBER.match(node.value):
            # YAML 1.1 reads 0123 as octal 83 and 1:30 as 90: an extension or a time would
            # change silently. Anything but a plain decimal number stays text.
            return node.value
        return value

    def _mapping(self, node: yaml.MappingNode, path: FieldPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                self._problem(line, path, "YAML merge keys (<<) are not supported; use extends:")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(line, path, "a key must be a plain string")
                continue
            key = self._constructor.construct_object(key_node)
            if isinstance(key, bool) or key is None:
                # `yes:`, `on:`, `null:` as keys are YAML 1.1 traps; say so.
                self._problem(line, path, f"key {key_node.value!r} is read as {key!r}; quote it")
                continue
            key = str(key)
            if key in out:
                self._problem(line, (*path, key), "duplicate key (already set above)")
                continue
            self.origins[(*path, key)] = Origin(self.name, line)
            out[key] = self.convert(value_node, (*path, key))
        return out

    def _problem(self, line: int, path: FieldPath, message: str) -> None:
        self.problems.append(Problem(self.name, line, dotted(path), message))
