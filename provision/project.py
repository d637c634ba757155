"""A config directory (profiles/, templates/, inventory, state) and the offline pipeline over it.

profiles + inventory -> targets -> secrets -> rendered inis. Everything is checked before
anything is written: `prepare` either returns every target rendered or raises one
ConfigError listing every problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from provision.errors import ConfigError, Problem, SecretError, TemplateError
from provision.model.store import ProfileStore
from provision.render import RenderedIni, Renderer, Templates
from provision.secrets import Redactor, Secret, SecretResolver
from provision.targets import LoadedInventory, Target, load_inventory, resolve_targets, select_hosts


@dataclass(frozen=True)
class Project:
    profiles_dir: Path
    templates_dir: Path | None
    state_path: Path | str  # a SQLite file, or a PostgreSQL URL
    environ: Mapping[str, str] = field(repr=False)
    base_dir: Path = Path()

    def store(self) -> ProfileStore:
        return ProfileStore(self.profiles_dir)

    def templates(self) -> Templates:
        return Templates(self.templates_dir)

    def secret_resolver(self) -> SecretResolver:
        return SecretResolver(self.environ, self.base_dir)


@dataclass
class Prepared:
    inventory: LoadedInventory
    targets: list[Target]
    rendered: list[RenderedIni]
    secrets: dict[str, dict[str, Secret]] = field(repr=False)  # target id -> section -> secret
    warnings: list[Problem]
    redactor: Redactor = field(repr=False)


def select_targets(
    project: Project, inventory_path: Path, limit: str | None = None, hosts: Sequence[str] = ()
) -> tuple[LoadedInventory, list[Target]]:
    inventory = load_inventory(inventory_path)
    return inventory, _targets(project, inventory, limit, hosts)


def _targets(project: Project, inventory: LoadedInventory, limit: str | None, hosts: Sequence[str]) -> list[Target]:
    """The chosen hosts' targets: each (host, user) with its profiles resolved."""
    return resolve_targets(project.store(), inventory, select_hosts(inventory.model, limit, hosts))


def prepare(project: Project, inventory_path: Path, limit: str | None = None, hosts: Sequence[str] = ()) -> Prepared:
    """Resolve, fetch secrets for and render every chosen target; all problems at once."""
    return prepare_inventory(project, load_inventory(inventory_path), limit, hosts)


def prepare_inventory(
    project: Project, inventory: LoadedInventory, limit: str | None = None, hosts: Sequence[str] = ()
) -> Prepared:
    """`prepare` for an inventory already loaded."""
    targets = _targets(project, inventory, limit, hosts)
    resolver = project.secret_resolver()
    renderer = Renderer(project.templates())
    problems: list[Problem] = []
    rendered: list[RenderedIni] = []
    secrets: dict[str, dict[str, Secret]] = {}
    warnings: dict[Problem, None] = dict.fromkeys(inventory.warnings)  # what the inventory says that is not used
    for target in targets:
        warnings.update(dict.fromkeys(target.resolved.warnings))
        version = target.resolved.profile.version
        found: dict[str, Secret] = {}
        for account in target.accounts:
            if account.password is None:
                continue
            try:
                secret = resolver.resolve_ini(account.password.ref, account.password.where, version)
                found[account.section.lower()] = secret
            except SecretError as exc:
                problems.append(Problem(target.id, None, "", exc.message))
        secrets[target.id] = found
        try:
            rendered.append(renderer.render(target))
        except TemplateError as exc:
            problems.append(Problem(target.id, None, "", exc.message))
    if problems:
        raise ConfigError(_collapse(problems))
    return Prepared(inventory, targets, rendered, secrets, list(warnings), Redactor(resolver.secrets()))


def _collapse(problems: list[Problem]) -> list[Problem]:
    """The same message for many targets (a broken template, a shared secret) is shown once."""
    by_message: dict[str, list[Problem]] = {}
    for problem in problems:
        by_message.setdefault(problem.message, []).append(problem)
    out = []
    for message, group in by_message.items():
        if len(group) == 1:
            out.append(group[0])
        else:
            names = ", ".join(p.file for p in group[:3]) + (f" and {len(group) - 3} more" if len(group) > 3 else "")
            out.append(Problem(names, None, "", message))
    return out
