"""The jobs that need no workstation: render, diff and validate. One function per command."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from provision.errors import ConfigError, IniError, Problem, ProvisionError, TemplateError, display_path
from provision.output import Encoding, ini_path, read_current, render_file, write_tree
from provision.plan import TargetPlan, plan_target
from provision.project import Prepared, Project, prepare, prepare_inventory
from provision.secrets import Redactor
from provision.state import PushRecord, open_store
from provision.targets import Target, load_inventory, profile_references


@dataclass
class RenderResult:
    rows: list[tuple[str, str, int]]  # host, user, number of accounts
    warnings: list[Problem]
    redactor: Redactor = field(repr=False)
    out: Path = Path()
    encoding: Encoding = "utf-16"
    secrets: bool = False
    groups: dict[str, list[str]] = field(default_factory=dict)  # host -> its groups

    def file(self, host: str, user: str) -> Path:
        return ini_path(self.out, host, user)


def render_tree(
    project: Project,
    inventory: Path,
    out: Path,
    *,
    limit: str | None = None,
    hosts: Sequence[str] = (),
    include_secrets: bool = False,
    encoding: Encoding = "utf-16",
) -> RenderResult:
    """Every chosen target's ini under out/<host>/<user>/microsip.ini, all or none. `encoding`
    "utf-8" writes a copy for review and git (UTF-8, no BOM, LF); the default is the real file."""
    prepared = prepare(project, inventory, limit, hosts)
    files = [
        render_file(r, prepared.secrets[r.target.id] if include_secrets else None, encoding) for r in prepared.rendered
    ]
    write_tree(out, files, private=include_secrets)
    rows = [(t.host, t.user, len(t.accounts)) for t in prepared.targets]
    groups = {t.host: list(prepared.inventory.model.hosts[t.host].groups) for t in prepared.targets}
    return RenderResult(rows, prepared.warnings, prepared.redactor, out, encoding, include_secrets, groups)


@dataclass
class DiffResult:
    plans: list[TargetPlan]
    failed: list[tuple[str, str]]
    new: set[str]
    warnings: list[Problem]
    redactor: Redactor = field(repr=False)
    against: Path = Path()
    groups: dict[str, list[str]] = field(default_factory=dict)  # host -> its groups
    order: list[str] = field(default_factory=list)  # target ids in inventory order

    @property
    def changed(self) -> bool:
        return any(p.changed for p in self.plans)


def diff_tree(
    project: Project,
    inventory: Path,
    against: Path,
    *,
    limit: str | None = None,
    hosts: Sequence[str] = (),
) -> DiffResult:
    """What a push would change, using DIR/<host>/<user>/microsip.ini as the workstations' current files."""
    prepared = prepare(project, inventory, limit, hosts)
    with open_store(project.state_path, read_only=True) as store:
        records = store.last_pushes(t.host for t in prepared.targets)
        return _diff(prepared, against, records, store.fingerprint_key)


def _diff(prepared: Prepared, against: Path, records: Mapping[tuple[str, str], PushRecord], key: bytes) -> DiffResult:
    groups = {t.host: list(prepared.inventory.model.hosts[t.host].groups) for t in prepared.targets}
    plans: list[TargetPlan] = []
    failed: list[tuple[str, str]] = []
    new: set[str] = set()
    for rendered in prepared.rendered:
        target = rendered.target
        try:
            current = read_current(against, target.host, target.user)
            if current is None:
                new.add(target.id)
            record = records.get((target.host, target.user.casefold()))
            plans.append(plan_target(rendered, prepared.secrets[target.id], current, record, key))
        except (IniError, ProvisionError) as exc:
            failed.append((target.id, exc.message))
    order = [r.target.id for r in prepared.rendered]
    return DiffResult(plans, failed, new, prepared.warnings, prepared.redactor, against, groups, order)


@dataclass
class ValidationResult:
    counts: dict[str, int]
    warnings: list[Problem]
    targets: list[Target] = field(default_factory=list)  # with an inventory: every target checked
    groups: dict[str, list[str]] = field(default_factory=dict)  # host -> its groups


def validate_all(project: Project, inventory: Path | None) -> ValidationResult:
    """Check every profile on its own, the templates, and (with an inventory) every target."""
    problems: list[Problem] = []
    warnings: dict[Problem, None] = {}
    store = project.store()
    names = store.names()
    if not names:
        folder = display_path(project.profiles_dir)
        missing = "" if project.profiles_dir.is_dir() else "; the folder does not exist"
        problems.append(
            Problem(folder, None, "", f"no profile files ({folder}/*.yaml){missing}; --profiles DIR names the folder")
        )
    for name in names:
        try:
            resolved = store.resolve(store.chain([(name, None)]))
            warnings.update(dict.fromkeys(resolved.warnings))
        except ConfigError as exc:
            problems += exc.problems
    templates_ok = True
    try:
        project.templates().template()
    except TemplateError as exc:
        problems.append(Problem("templates", None, "", exc.message))
        templates_ok = False
    counts = {"profiles": len(names)}
    targets: list[Target] = []
    groups: dict[str, list[str]] = {}
    if inventory is not None and templates_ok:
        try:
            loaded = load_inventory(inventory)
            problems += profile_references(store, loaded)
            prepared = prepare_inventory(project, loaded)
            warnings.update(dict.fromkeys(prepared.warnings))
            counts["hosts"] = len(loaded.model.hosts)  # hosts without users too: they are in the inventory
            counts["targets"] = len(prepared.targets)
            counts["secrets"] = len({a.password.ref for t in prepared.targets for a in t.accounts if a.password})
            targets = prepared.targets
            groups = {name: list(host.groups) for name, host in loaded.model.hosts.items()}
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return ValidationResult(counts, list(warnings), targets, groups)
