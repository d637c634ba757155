"""Profiles on disk: loading by name, following `extends`, and resolving layers into a Profile."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from provision.errors import ConfigError, Problem, display_path
from provision.model.layering import Layer, merge_layers
from provision.model.profile import Profile
from provision.model.rules import check_profile
from provision.model.source import FieldPath, Located, load_yaml
from provision.model.validation import validate
from provision.model.values import NAME_RULE, is_name, shown


@dataclass(frozen=True)
class ResolvedProfile:
    """A profile with every layer applied, validated, with the origin of each value."""

    profile: Profile
    located: Located
    chain: tuple[str, ...]
    warnings: tuple[Problem, ...]


@dataclass(frozen=True)
class Reference:
    """Where a profile name was written (for 'no such profile' errors)."""

    located: Located
    path: FieldPath

    def problem(self, message: str) -> Problem:
        return self.located.problem(self.path, message)


class ProfileStore:
    """The profiles directory: profiles/<name>.yaml, loaded once each."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[str, Located] = {}
        self._resolved: dict[tuple[object, ...], ResolvedProfile] = {}

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.yaml") if p.is_file())

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.yaml"

    def load(self, name: str, referenced: Reference | None = None) -> Located:
        if name not in self._files:
            if not is_name(name):
                # A name, never a path: `extends: ../../x` must not reach outside the folder.
                message = f"{shown(name)} is not a profile name ({NAME_RULE}; the file is profiles/<name>.yaml)"
                where = (
                    display_path(self.directory / f"{name}.yaml") if "/" not in name else display_path(self.directory)
                )
                problem = referenced.problem(message) if referenced else Problem(where, None, "", message)
                raise ConfigError([problem])
            path = self.path(name)
            if not path.is_file():
                where = f"no profile {name!r}: {display_path(path)} does not exist"
                known = ", ".join(self.names()) or "none"
                message = f"{where} (profiles: {known})"
                problem = referenced.problem(message) if referenced else Problem(display_path(path), None, "", message)
                raise ConfigError([problem])
            located = load_yaml(path)
            if located.data is None:
                located.data = {}
            if not isinstance(located.data, dict):
                raise ConfigError([located.problem((), "a profile must be a mapping of keys")])
            self._files[name] = located
        return self._files[name]

    def chain(self, names: Sequence[tuple[str, Reference | None]]) -> list[str]:
        """All profiles to apply, parents first, each once, in order."""
        order: list[str] = []
        for name, referenced in names:
            self._visit(name, referenced, [], order)
        return order

    def _visit(self, name: str, referenced: Reference | None, stack: list[str], order: list[str]) -> None:
        if name in stack:
            cycle = " -> ".join([*stack[stack.index(name) :], name])
            assert referenced is not None
            raise ConfigError([referenced.problem(f"profiles extend each other in a cycle: {cycle}")])
        if name in order:
            return
        located = self.load(name, referenced)
        parents = located.data.get("extends", [])
        parents = [parents] if isinstance(parents, str) else parents
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            raise ConfigError([located.problem(("extends",), "must be a profile name or a list of names")])
        for index, parent in enumerate(parents):
            path: FieldPath = ("extends",) if isinstance(located.data["extends"], str) else ("extends", index)
            self._visit(parent, Reference(located, path), [*stack, name], order)
        order.append(name)

    def resolve(self, chain: Sequence[str], fragments: Sequence[Layer] = ()) -> ResolvedProfile:
        """Apply the profiles in `chain`, then the inventory fragments, and validate."""
        key = (tuple(chain), tuple((id(f.located), f.prefix) for f in fragments))
        cached = self._resolved.get(key)
        if cached is not None:
            return cached
        problems: list[Problem] = []
        layers = [Layer(self._files[name]) for name in chain]
        for fragment in fragments:
            if isinstance(fragment.data, dict) and "extends" in fragment.data:
                problems.append(
                    fragment.located.problem(
                        (*fragment.prefix, "extends"),
                        "overrides cannot extend; list profiles instead",
                    )
                )
            layers.append(fragment)
        merged = merge_layers(layers)
        profile, invalid = validate(Profile, merged)
        problems += invalid
        if profile is None or problems:
            raise ConfigError(problems)
        findings = check_profile(profile, merged)
        if findings.problems:
            raise ConfigError(findings.problems)
        resolved = ResolvedProfile(profile, merged, tuple(chain), tuple(findings.warnings))
        self._resolved[key] = resolved
        return resolved
