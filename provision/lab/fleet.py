"""A fleet of simulated workstations on 127.B.x.y, with the files to push to them.

fleet = Fleet(folder, hosts=3); fleet.start()   # HTTP 5985 and HTTPS 5986 on each address
fleet.host("lab-001").faults.latency_ms = 30
fleet.inventory, fleet.env_file, fleet.ca                 # what provision needs
fleet.stop()
"""

from __future__ import annotations

import copy
import os
import random
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from provision.ini import encode_ini
from provision.lab.certs import make_certificates
from provision.lab.host import SimulatedHost, SimUser
from provision.lab.server import HTTPS_PORT, Endpoint, LabServer
from provision.lab.wsman import WSManService
from provision.remote import INSTALLED_EXE

FIRST_NAMES = ["Jane Doe", "Zoë Müller", "Дмитрий Иванов", "王芳", "Ana García", "Linh Nguyễn", "Siobhán O'Keefe"]
GROUPS = ["sales", "support"]
# What a user's ini looks like once MicroSIP has run: window, volumes, history, no account yet.
SEED_INI = (
    "[Settings]\nmainX=412\nmainY=96\nmainW=260\nmainH=520\nvolumeOutput=80\nvolumeRing=100\n"
    "lastCallNumber=\ncallsLastKey=0\nupdatesInterval=\n[Calls]\n0=2101;Jane Doe;1;1732440000;42;\n"
)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True)
class HostSpec:
    """A workstation of someone's own inventory, for `lab up -i`: its users, the programs its
    profiles' hooks run (present, so health finds them), and where MicroSIP is."""

    name: str
    users: tuple[str, ...]
    files: tuple[str, ...] = ()
    portable_exe: str | None = None  # %USERPROFILE%\...\x.exe for a portable MicroSIP

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostSpec:
        return cls(data["name"], tuple(data["users"]), tuple(data.get("files") or ()), data.get("portable_exe"))


def _free_block() -> int:
    """A second octet B for 127.B.0.0/16 whose first address is free on the HTTPS port."""
    for _ in range(50):
        block = random.randint(20, 250)  # noqa: S311 - picking an address block, not a secret
        with socket.socket() as probe:
            try:
                probe.bind((f"127.{block}.0.1", HTTPS_PORT))
            except OSError:
                continue
        return block
    raise RuntimeError("no free loopback block for the lab")


class Fleet:
    def __init__(
        self,
        folder: Path,
        hosts: int | Sequence[HostSpec],
        *,
        users_per_host: int = 1,
        block: int | None = None,
        seed: bool = True,
        inventory: dict[str, Any] | None = None,
    ) -> None:
        """hosts: how many (lab-001, lab-002, ...), or the workstations of someone's inventory,
        whose data (`inventory`, provision's own YAML shape) the lab then writes back with each
        host's connection pointed at its lab address. seed: give every user an ini MicroSIP has
        already written, and run the first user's MicroSIP on every other host, as on a fleet in use."""
        self.folder = folder
        self.block = block or _free_block()
        self.credentials = Credentials(f"lab-{secrets.token_hex(3)}", secrets.token_urlsafe(12))
        self.sip_password = "lab-" + secrets.token_urlsafe(9)
        self.hosts: dict[str, SimulatedHost] = {}
        self.addresses: dict[str, str] = {}
        if isinstance(hosts, int):
            specs = [
                HostSpec(
                    f"lab-{i + 1:03d}",
                    tuple(f"user{i + 1:03d}{chr(97 + u)}" for u in range(users_per_host)),
                    ("C:\\Program Files\\Contoso CRM\\crm-popup.exe",),  # the sales profile's hook
                )
                for i in range(hosts)
            ]
        else:
            specs = list(hosts)
        for index, spec in enumerate(specs):
            users = [SimUser(name) for name in spec.users]
            if spec.portable_exe:
                host = SimulatedHost(spec.name, folder / "hosts" / spec.name, users, mode="portable",
                                     portable_exe=spec.portable_exe)  # fmt: skip
            else:
                host = SimulatedHost(spec.name, folder / "hosts" / spec.name, users)
            self.hosts[spec.name] = host
            self.addresses[spec.name] = f"127.{self.block}.{index // 250}.{index % 250 + 1}"
        if seed:
            for index, (spec, host) in enumerate(zip(specs, self.hosts.values(), strict=True)):
                for program in spec.files:
                    file = host.path(program)
                    file.parent.mkdir(parents=True, exist_ok=True)
                    file.write_bytes(b"MZ")
                for offset, user in enumerate(host.users.values()):
                    if host.mode == "portable":
                        exe = host.path(host.exe_for(user.name))
                        exe.parent.mkdir(parents=True, exist_ok=True)
                        exe.write_bytes(host.path(INSTALLED_EXE).read_bytes())
                    host.write_ini(user.name, encode_ini(SEED_INI))
                    if offset == 0 and index % 2 == 0:
                        host.start_microsip(user.name)
        self.ca, cert, key, der = make_certificates(folder / "tls", list(self.addresses.values()))
        endpoints = [Endpoint(self.addresses[n], h, WSManService(h)) for n, h in self.hosts.items()]
        self.server = LabServer(
            endpoints,
            username=self.credentials.username,
            password=self.credentials.password,
            cert=cert,
            key=key,
            cert_der=der,
        )
        self.inventory = folder / "inventory.yaml"
        self.env_file = folder / "lab.env"
        if inventory is None:
            self._write_files()
        else:
            self._write_theirs(inventory)

    def host(self, name: str) -> SimulatedHost:
        return self.hosts[name]

    def address(self, name: str) -> str:
        return self.addresses[name]

    def start(self) -> None:
        self.server.start_in_thread()

    def stop(self) -> None:
        self.server.stop()

    def refuse(self, name: str, refuse: bool = True) -> None:
        self.hosts[name].faults.refuse = refuse
        self.server.set_listening(self.addresses[name], not refuse)

    def requests(self) -> dict[str, int]:
        return {name: host.stats["requests"] for name, host in self.hosts.items()}

    def _write_theirs(self, inventory: dict[str, Any]) -> None:
        """Someone's own inventory, each host's connection pointed at its lab address, and the
        lab's WinRM credentials (their SIP secrets stay in their own env file)."""
        data = copy.deepcopy(inventory)
        lab = {"scheme": "https", "port": HTTPS_PORT, "auth": "ntlm", "ca_bundle": str(self.ca.resolve())}
        for name, host in data.get("hosts", {}).items():
            host["connection"] = {**lab, "address": self.addresses[name]}
        # Their defaults' and groups' connections name their own CA bundle (relative to their
        # inventory, not to this one): the lab's certificates are the lab CA's.
        for layer in [data.get("defaults"), *(data.get("groups") or {}).values()]:
            if isinstance(layer, dict) and isinstance(layer.get("connection"), dict):
                layer["connection"] = {**layer["connection"], **lab}
        header = (
            f"# Your inventory on the provision lab: {len(self.hosts)} simulated workstations on "
            f"127.{self.block}.0.0/16.\n# Made by `provision lab up -i`; your own inventory is unchanged.\n"
        )
        self.inventory.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), "utf-8")
        self.env_file.write_text(
            "# The provision lab's WinRM account (throwaway, loopback only).\n"
            f"PROVISION_WINRM_USER={self.credentials.username}\n"
            f"PROVISION_WINRM_PASSWORD={self.credentials.password}\n",
            "utf-8",
        )
        os.chmod(self.env_file, 0o600)

    def _write_files(self) -> None:
        hosts = {}
        for index, (name, host) in enumerate(self.hosts.items()):
            users = []
            for offset, user in enumerate(host.users.values()):
                number = 5000 + index * 10 + offset
                users.append(
                    {
                        "name": user.name,
                        "extension": str(number),
                        "display_name": FIRST_NAMES[(index + offset) % len(FIRST_NAMES)],
                        "password": "env:PROVISION_LAB_SIP_PASSWORD",
                    }
                )
            hosts[name] = {
                "groups": [GROUPS[index % len(GROUPS)]],
                "connection": {"address": self.addresses[name]},
                "users": users,
            }
        inventory = {
            "defaults": {
                "profiles": ["base"],
                "connection": {"scheme": "https", "auth": "ntlm", "ca_bundle": "tls/ca.pem"},
            },
            "groups": {g: {"profiles": [g]} for g in GROUPS},
            "hosts": hosts,
        }
        header = f"# The provision lab: {len(hosts)} simulated workstations on 127.{self.block}.0.0/16.\n"
        self.inventory.write_text(header + yaml.safe_dump(inventory, sort_keys=False, allow_unicode=True), "utf-8")
        self.env_file.write_text(
            "# Credentials of the provision lab (throwaway, loopback only).\n"
            f"PROVISION_WINRM_USER={self.credentials.username}\n"
            f"PROVISION_WINRM_PASSWORD={self.credentials.password}\n"
            f"PROVISION_LAB_SIP_PASSWORD={self.sip_password}\n"
            "# The example support profile's shared queue account.\n"
            f"SIP_PW_SUPPORT_QUEUE=lab-{secrets.token_urlsafe(9)}\n"
            "# The example smoke profile's test account.\n"
            f"SIP_PW_SMOKE=lab-{secrets.token_urlsafe(9)}\n",
            "utf-8",
        )
        os.chmod(self.env_file, 0o600)
