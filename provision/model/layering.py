"""Layering: base -> department -> site -> host -> user, key by key, remembering who set what.

Mappings merge recursively; anything else (text, numbers, lists) is replaced whole by a
later layer; `null` removes the key again (back to the default, usually "not managed").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from provision.model.source import FieldPath, Located, Origin


@dataclass
class Layer:
    """A profile-shaped fragment: the mapping at `prefix` inside a loaded file."""

    located: Located
    prefix: FieldPath = ()
    _relative: dict[FieldPath, Origin] | None = field(default=None, repr=False)

    @property
    def data(self) -> Any:
        node = self.located.data
        for part in self.prefix:
            node = node[part]
        return node

    def relative_origins(self) -> dict[FieldPath, Origin]:
        """Origins of the paths inside the fragment, relative to it (walks the fragment, not the file)."""
        if self._relative is None:
            origins = self.located.origins
            out: dict[FieldPath, Origin] = {}
            stack: list[tuple[FieldPath, Any]] = [((), self.data)]
            while stack:
                rel, node = stack.pop()
                found = origins.get((*self.prefix, *rel))
                if found is not None:
                    out[rel] = found
                if isinstance(node, dict):
                    stack.extend(((*rel, k), v) for k, v in node.items())
                elif isinstance(node, list):
                    stack.extend(((*rel, i), v) for i, v in enumerate(node))
            self._relative = out
        return self._relative


def merge_layers(layers: list[Layer], skip: frozenset[str] = frozenset({"extends"})) -> Located:
    """Merge fragments in order into one Located whose origins tell which layer won."""
    data: dict[str, Any] = {}
    origins: dict[FieldPath, Origin] = {}
    for layer in layers:
        fragment = layer.data
        if not isinstance(fragment, dict):
            continue
        rel = layer.relative_origins()
        _merge(data, origins, {k: v for k, v in fragment.items() if k not in skip}, rel, ())
        if () in rel:
            origins.setdefault((), rel[()])
    return Located(data=data, origins=origins, file=layers[-1].located.file if layers else "")


def _merge(
    target: dict[str, Any],
    origins: dict[FieldPath, Origin],
    fragment: dict[str, Any],
    fragment_origins: dict[FieldPath, Origin],
    path: FieldPath,
) -> None:
    for key, value in fragment.items():
        here = (*path, key)
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            if here in fragment_origins:
                origins.setdefault(here, fragment_origins[here])
            _merge(target[key], origins, value, fragment_origins, here)
            continue
        _forget(origins, here)
        if value is None:
            target.pop(key, None)
            continue
        target[key] = _copy(value)
        n = len(here)
        for sub, origin in fragment_origins.items():
            if sub[:n] == here:
                origins[sub] = origin


def _forget(origins: dict[FieldPath, Origin], path: FieldPath) -> None:
    n = len(path)
    for sub in [p for p in origins if p[:n] == path]:
        del origins[sub]


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
