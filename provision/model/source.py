"""Loading YAML while remembering where every value came from.

Errors must name file, line and field, and `profiles show --resolved` tells which file
set each value, so YAML is composed into nodes and turned into plain data by hand,
recording the line of every mapping key and list item on the way.

Only plain data comes out: text, numbers, true/false, null, lists and mappings. Tags are
refused unless they say what the value already is (`!!int 12`); anchors, aliases and merge
keys (`<<: *defaults`) work, but a recursive alias, nesting deeper than MAX_DEPTH or
aliases that would multiply the file's values many times over are refused before
anything is built.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provision.errors import ConfigError, Problem, display_path
from provision.model.values import cut, one_line, shown

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
    #: How a path is named in messages when the file spells it differently (an Ansible
    #: inventory's ansible_port is connection.port here): the longest prefix found wins.
    names: dict[FieldPath, str] = field(default_factory=dict)

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
            field=self.field_name(parts),
            message=message,
        )

    def field_name(self, path: FieldPath) -> str:
        """The path as the file spells it (see `names`)."""
        if self.names:
            for length in range(len(path), 0, -1):
                name = self.names.get(path[:length])
                if name is not None:
                    name = cut(name)  # a huge host name
                    rest = dotted(path[length:])
                    return name + ("" if not rest else rest if rest.startswith("[") else "." + rest)
        return dotted(path)


def dotted(path: Iterable[str | int]) -> str:
    """A field path as messages show it: `accounts.office.proxy[0]` (a huge key is cut)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{cut(part)}" if out else cut(part)
    return out


#: Tags a caller lets through, each with what the tagged text becomes (Ansible's `!vault`).
ScalarTags = Mapping[str, Callable[[str], Any]]


def load_yaml(path: Path, tags: ScalarTags | None = None) -> Located:
    """Read a YAML file into plain data with origins. Bad YAML is a ConfigError."""
    text, name = read_text(path)
    return parse_yaml(text, name, tags)


def read_text(path: Path) -> tuple[str, str]:
    """A UTF-8 text file and its name as messages show it; unreadable is a ConfigError."""
    name = display_path(path)
    try:
        return path.read_text(encoding="utf-8"), name
    except FileNotFoundError:
        raise ConfigError([Problem(name, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([Problem(name, None, "", f"cannot read: {reason}")]) from None


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


def parse_yaml(text: str, name: str, tags: ScalarTags | None = None) -> Located:
    with paused_gc():
        return _parse_yaml(text, name, tags or {})


#: Mappings and lists nest at most this deep (a profile needs 5, an inventory 8).
MAX_DEPTH = 40
#: Aliases may repeat values, but the result may hold at most this many times as many
#: values as the file writes out (and always at least MIN_EXPANSION): a few hundred bytes
#: of nested aliases ("billion laughs") would otherwise expand to billions of values.
EXPANSION_RATIO = 10
MIN_EXPANSION = 100_000


def _parse_yaml(text: str, name: str, tags: ScalarTags) -> Located:
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        detail = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([Problem(name, line, "", f"invalid YAML: {one_line(detail)}")]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        raise ConfigError([Problem(name, line, "", f"invalid YAML: {one_line(exc.reason)}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(name, None, "", f"invalid YAML: {one_line(str(exc))}")]) from None
    except RecursionError:  # the pure-Python composer, when libyaml is missing
        raise ConfigError([Problem(name, None, "", f"nested deeper than {MAX_DEPTH} levels")]) from None
    located = Located(data=None, file=name)
    if node is not None:
        _check_shape(node, name)
        converter = _Converter(name, located.origins, tags)
        located.origins[()] = Origin(name, node.start_mark.line + 1)
        located.data = converter.convert(node, ())
        if converter.problems:
            raise ConfigError(converter.problems)
    return located


# libyaml's composer is several times faster on large inventories; fall back to pure Python.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
_MERGE_TAG = _TAG + "merge"
_MAP_TAG = _TAG + "map"
_SEQ_TAG = _TAG + "seq"
_STR_TAG = _TAG + "str"
_TIMESTAMP_TAG = _TAG + "timestamp"
# Tags a plain value gets by itself and that may also be written out when they agree with it.
_CORE_TAGS = frozenset(_TAG + t for t in ("int", "float", "bool", "null"))
_PLAIN_NUMBER = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?$")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [value for _, value in node.value]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_shape(root: yaml.Node, name: str) -> None:
    """Refuse recursive aliases, deep nesting and alias bombs before building anything.

    Aliases make the composed document a graph that shares nodes; its size once expanded
    into plain data is computed here per distinct node (so in milliseconds), and the file
    is refused before the expansion costs any memory.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    written = 1  # values the file writes out: each collection's entries, counted once

    def size(node: yaml.Node, depth: int) -> int:
        nonlocal written
        key = id(node)
        known = sizes.get(key)
        if known is not None:
            return known
        line = node.start_mark.line + 1
        if key in on_path:
            raise ConfigError(
                [Problem(name, line, "", "this value contains itself through an alias (a recursive anchor)")]
            )
        if depth > MAX_DEPTH:
            raise ConfigError([Problem(name, line, "", f"nested deeper than {MAX_DEPTH} levels")])
        on_path.add(key)
        total = 1
        children = _children(node)
        written += len(children)
        for child in children:
            total += 1 if isinstance(child, yaml.ScalarNode) else size(child, depth + 1)
        on_path.discard(key)
        sizes[key] = total
        return total

    if isinstance(root, yaml.ScalarNode):
        return
    total = size(root, 0)
    limit = max(MIN_EXPANSION, EXPANSION_RATIO * written)
    if total <= limit:
        return
    # Name the smallest value that is too big on its own: where the aliases pile up.
    node = root
    while True:
        bigger = next((c for c in _children(node) if sizes.get(id(c), 1) > limit), None)
        if bigger is None:
            break
        node = bigger
    raise ConfigError(
        [
            Problem(
                name,
                node.start_mark.line + 1,
                "",
                f"aliases expand this value to {sizes[id(node)]:,} values; the file writes "
                f"{written:,}, and aliases may repeat them up to {limit:,} in all",
            )
        ]
    )


def _tag_name(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


Pair = tuple[yaml.Node, yaml.Node]


class _Converter:
    """Nodes to plain data: text, numbers, booleans, null, lists and mappings, nothing else."""

    def __init__(self, name: str, origins: dict[FieldPath, Origin], tags: ScalarTags) -> None:
        self.name = name
        self.origins = origins
        self.tags = tags
        self.problems: list[Problem] = []
        self._constructor: Any = yaml.SafeLoader("")
        self._pairs_of: dict[int, dict[str, Pair]] = {}

    def convert(self, node: yaml.Node, path: FieldPath) -> Any:
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                return self._tag_problem(node, path)
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                return self._tag_problem(node, path)
            items = []
            for index, item in enumerate(node.value):
                self.origins[(*path, index)] = Origin(self.name, item.start_mark.line + 1)
                items.append(self.convert(item, (*path, index)))
            return items
        return self._scalar(node, path)

    def _scalar(self, node: Any, path: FieldPath) -> Any:
        tag = node.tag
        if tag == _STR_TAG:
            return node.value
        if tag in self.tags:
            return self.tags[tag](node.value)
        plain = node.style in (None, "")
        if tag == _TIMESTAMP_TAG and plain and self._implicit(node) == tag:
            return node.value  # a date stays text, as written
        if tag not in _CORE_TAGS or not plain or self._implicit(node) != tag:
            return self._tag_problem(node, path)
        try:
            value = self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, KeyError, AttributeError, TypeError):  # pragma: no cover
            return self._tag_problem(node, path)
        if isinstance(value, int | float) and not isinstance(value, bool) and not _PLAIN_NUMBER.match(node.value):
            # YAML 1.1 reads 0123 as octal 83 and 1:30 as 90: an extension or a time would
            # change silently. Anything but a plain decimal number stays text.
            return node.value
        return value

    def _implicit(self, node: yaml.Node) -> str:
        """The tag the value would get with no tag written."""
        return str(self._constructor.resolve(yaml.ScalarNode, node.value, (True, False)))

    def _tag_problem(self, node: yaml.Node, path: FieldPath) -> None:
        self._problem(
            node.start_mark.line + 1,
            path,
            f"YAML tag {shown(_tag_name(node.tag))} is not allowed here: write plain text, numbers, "
            "true/false, lists and mappings (quote text that looks like something else)",
        )

    def _key(self, node: yaml.Node, path: FieldPath) -> str | None:
        line = node.start_mark.line + 1
        if not isinstance(node, yaml.ScalarNode):
            self._problem(line, path, "a key must be a plain string")
            return None
        problems = len(self.problems)
        value = self._scalar(node, path)
        if len(self.problems) > problems:
            return None  # a tag that is not allowed
        if isinstance(value, bool) or value is None:
            # `yes:`, `on:`, `null:` as keys are YAML 1.1 traps; say so.
            self._problem(line, path, f"key {shown(node.value)} is read as {shown(value)}; quote it")
            return None
        return str(node.value)

    def _pairs(self, node: yaml.MappingNode, path: FieldPath) -> dict[str, Pair]:
        """The mapping's entries with YAML merge keys (<<) applied: own entries win, then the
        merged mappings in the order given. Each key keeps the node it was written at."""
        known = self._pairs_of.get(id(node))
        if known is not None:
            return known
        own: dict[str, Pair] = {}
        sources: list[yaml.MappingNode] = []
        merge_seen = False
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                if merge_seen:
                    self._problem(line, path, "duplicate key << (already set above)")
                    continue
                merge_seen = True
                listed = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                if not all(isinstance(n, yaml.MappingNode) for n in listed):
                    self._problem(line, path, "<< merges mappings: give an alias of a mapping or a list of them")
                    continue
                sources += listed
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in own:
                self._problem(line, (*path, key), "duplicate key (already set above)")
                continue
            own[key] = (key_node, value_node)
        pairs: dict[str, Pair] = {}
        for source in sources:
            for key, pair in self._pairs(source, path).items():
                pairs.setdefault(key, pair)
        pairs.update(own)
        self._pairs_of[id(node)] = pairs
        return pairs

    def _mapping(self, node: yaml.MappingNode, path: FieldPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if any(k.tag == _MERGE_TAG for k, _ in node.value):
            for key, (key_node, value_node) in self._pairs(node, path).items():
                self.origins[(*path, key)] = Origin(self.name, key_node.start_mark.line + 1)
                out[key] = self.convert(value_node, (*path, key))
            return out
        for key_node, value_node in node.value:
            text = self._key(key_node, path)
            if text is None:
                continue
            key = text
            line = key_node.start_mark.line + 1
            if key in out:
                self._problem(line, (*path, key), "duplicate key (already set above)")
                continue
            self.origins[(*path, key)] = Origin(self.name, line)
            out[key] = self.convert(value_node, (*path, key))
        return out

    def _problem(self, line: int, path: FieldPath, message: str) -> None:
        self.problems.append(Problem(self.name, line, dotted(path), message))
