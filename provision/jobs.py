"""The unit of fleet work: one host, how to reach it, where MicroSIP is, and its users' part.

targets (offline core) -> one HostJob per host -> a per-host function (push, health, ...) run
by the fleet runner. A job holds everything the per-host function needs and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from provision.model.inventory import Connection, Install
from provision.project import Prepared
from provision.render import RenderedIni
from provision.secrets import Secret
from provision.state import PushRecord
from provision.targets import LoadedInventory, Target


@dataclass(frozen=True)
class UserJob:
    target: Target
    rendered: RenderedIni | None = None  # None for rollback, which writes nothing new
    secrets: dict[str, Secret] = field(default_factory=dict, repr=False)
    record: PushRecord | None = None
    backup: str | None = None  # rollback: this backup (one a run made) rather than the newest

    @property
    def user(self) -> str:
        return self.target.user


@dataclass(frozen=True)
class HostJob:
    host: str
    connection: Connection
    install: Install
    users: tuple[UserJob, ...]
    groups: tuple[str, ...] = ()  # the host's inventory groups, for ordering and per-group summaries


def group_by_host(users: Iterable[UserJob], groups: Mapping[str, Iterable[str]] | None = None) -> list[HostJob]:
    """One job per host, its users in inventory order, with the host's connection settings."""
    by_host: dict[str, list[UserJob]] = {}
    for user in users:
        by_host.setdefault(user.target.host, []).append(user)
    groups = groups or {}
    return [
        HostJob(host, us[0].target.connection, us[0].target.install, tuple(us), tuple(groups.get(host, ())))
        for host, us in by_host.items()
    ]


def host_groups(inventory: LoadedInventory) -> dict[str, tuple[str, ...]]:
    return {name: tuple(host.groups) for name, host in inventory.model.hosts.items()}


def host_jobs(prepared: Prepared, records: Mapping[tuple[str, str], PushRecord]) -> list[HostJob]:
    """Jobs for every rendered target, each user with the record of its last push
    (records keyed (host, user.casefold()), as Store.last_pushes gives them)."""
    return group_by_host(
        (
            UserJob(
                r.target,
                r,
                prepared.secrets[r.target.id],
                records.get((r.target.host, r.target.user.casefold())),
            )
            for r in prepared.rendered
        ),
        host_groups(prepared.inventory),
    )


@dataclass(frozen=True)
class Endpoint:
    """Where a host's WinRM listener is, as the inventory says (with its defaults)."""

    address: str
    scheme: str
    port: int
    auth: str
    ca_bundle: Path | None
    max_envelope_kb: int | None


def endpoint_of(job: HostJob, base: Path) -> Endpoint:
    """`base`: the inventory's folder, which a relative ca_bundle is relative to."""
    c = job.connection
    scheme = c.scheme or "https"
    return Endpoint(
        address=c.address or job.host,
        scheme=scheme,
        port=c.port or (5986 if scheme == "https" else 5985),
        auth=c.auth or "ntlm",
        ca_bundle=base / c.ca_bundle if c.ca_bundle else None,
        max_envelope_kb=c.max_envelope_kb,
    )
