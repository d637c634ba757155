"""The inventory: workstations, the Windows users on each, and how to reach them.

No credentials live here: WinRM credentials come from the environment, a prompt or a
keyring at push time, and SIP passwords are secret references.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from provision.model.profile import StrictModel, key
from provision.model.values import AccountText, HostName, Name, SecretRef, UserName, unsafe_character


class Connection(StrictModel):
    """How to reach a workstation's WinRM listener. Every field is optional and layers like profiles."""

    address: str | None = key("Host name or IP address; default: the host's name.")
    scheme: Literal["https", "http"] | None = key("https (default) or http.")
    port: int | None = Field(default=None, ge=1, le=65535, description="Default: 5986 for https, 5985 for http.")
    auth: Literal["ntlm", "kerberos", "basic"] | None = key("ntlm (default), kerberos or basic (https only).")
    ca_bundle: str | None = key(
        "PEM file with the CA that signed the WinRM certificates, relative to the inventory file. "
        "Certificates are always checked; only push --no-verify-tls turns that off."
    )
    max_envelope_kb: int | None = Field(
        default=None,
        ge=32,
        description="The host's WinRM MaxEnvelopeSizekb, if it is not Windows' default of 500: "
        "requests are sent in pieces that fit it.",
    )

    def merged(self, other: Connection) -> Connection:
        return self.model_copy(update=other.model_dump(exclude_none=True))

    @model_validator(mode="after")
    def _basic_needs_https(self) -> Connection:
        if self.auth == "basic" and self.scheme == "http":
            raise ValueError("basic auth sends the password in clear text; it is allowed only with scheme: https")
        return self


class Install(StrictModel):
    """Where MicroSIP is on the workstation. Layers like connection settings."""

    mode: Literal["installed", "portable"] | None = key(
        "installed (default): the ini is %APPDATA%\\MicroSIP\\microsip.ini of each user; "
        "portable: the ini is next to the exe, named after it."
    )
    exe: str | None = key(
        "Path of microsip.exe; %USERPROFILE% stands for each user's profile folder. Required in portable mode; "
        "installed mode defaults to C:\\Program Files\\MicroSIP\\microsip.exe."
    )
    ini_switch: bool | None = key(
        "The build takes /i:<ini> (custom builds only; stock MicroSIP has no such switch). "
        "smoke then starts it with /i: instead of running a renamed copy of the exe."
    )

    def merged(self, other: Install) -> Install:
        return self.model_copy(update=other.model_dump(exclude_none=True))

    @model_validator(mode="after")
    def _exe_is_an_exe(self) -> Install:
        if self.exe is not None and (not self.exe.lower().endswith(".exe") or unsafe_character(self.exe)):
            raise ValueError("exe must be the path of an .exe file")
        return self


class UserAccount(StrictModel):
    """A user's identity on one of the profile's accounts, for accounts other than the first."""

    username: AccountText | None = key("SIP user.")
    auth_id: AccountText | None = key("Digest user name.")
    display_name: AccountText | None = key("Caller name.")
    password: SecretRef | None = key("Secret reference.")
    label: AccountText | None = key("Account label.")


class User(StrictModel):
    """A Windows user on a workstation, and their SIP identity on the profile's first account."""

    name: UserName = Field(description="Windows logon name (names the profile folder, e.g. C:\\Users\\jdoe).")
    extension: AccountText | None = key("Extension; also the SIP username unless username is given.")
    username: AccountText | None = key("SIP username, when it differs from the extension.")
    auth_id: AccountText | None = key("Digest user name, when it differs from the username.")
    display_name: AccountText | None = key("Caller name, e.g. 'Zoë Müller'.")
    password: SecretRef | None = key("SIP password: env:NAME, file:PATH or keyring:SERVICE/USER.")
    accounts: dict[Name, UserAccount] = Field(
        default_factory=dict,
        description="Identity on the profile's other accounts, by account name.",
    )
    overrides: dict[str, Any] = Field(default_factory=dict, description="Profile keys for this user only.")


class Group(StrictModel):
    """Settings shared by hosts that list the group."""

    description: str | None = key("What the group is.")
    profiles: list[Name] = Field(default_factory=list, description="Profiles applied to members, in order.")
    connection: Connection = Field(default_factory=Connection, description="Connection settings for members.")
    microsip: Install = Field(default_factory=Install, description="Where MicroSIP is on members.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Profile keys for members.")
    canary: bool = Field(
        default=False,
        description="Members go first in a batched rollout (push --batch) when --canary is not given, "
        "and any failure among them stops it.",
    )


class Host(StrictModel):
    """A workstation."""

    groups: list[Name] = Field(default_factory=list, description="Groups, applied in order.")
    profiles: list[Name] = Field(default_factory=list, description="Profiles applied after the groups' ones.")
    connection: Connection = Field(default_factory=Connection, description="Connection settings for this host.")
    microsip: Install = Field(default_factory=Install, description="Where MicroSIP is on this host.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Profile keys for this host.")
    users: list[User] = Field(default_factory=list, description="Windows users who get MicroSIP on this host.")

    @model_validator(mode="after")
    def _unique_users(self) -> Host:
        seen: set[str] = set()
        for user in self.users:
            folded = user.name.casefold()
            if folded in seen:
                raise ValueError(f"user {user.name!r} is listed twice (Windows user names ignore case)")
            seen.add(folded)
        return self


class Defaults(StrictModel):
    """Applied to every host, before its groups."""

    profiles: list[Name] = Field(default_factory=list, description="Profiles every host starts from.")
    connection: Connection = Field(default_factory=Connection, description="Connection settings for every host.")
    microsip: Install = Field(default_factory=Install, description="Where MicroSIP is on every host.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Profile keys for every host.")


class Inventory(StrictModel):
    """An inventory file."""

    defaults: Defaults = Field(default_factory=Defaults, description="Applied to every host.")
    groups: dict[Name, Group] = Field(default_factory=dict, description="Groups by name.")
    hosts: dict[HostName, Host] = Field(
        default_factory=dict,
        description="Workstations by name; a name may hold a range, ws-[01:50] (Ansible's host ranges).",
    )
    hosts_csv: list[str] = Field(
        default_factory=list,
        description="CSV files of hosts (host,groups,profiles,address,port,scheme,auth,ca_bundle), "
        "relative to this file.",
    )
    users_csv: list[str] = Field(
        default_factory=list,
        description="CSV files of users (host,user,extension,display_name,password,username,auth_id), "
        "relative to this file.",
    )

    @field_validator("hosts", "groups", mode="before")
    @classmethod
    def _empty_entries(cls, value: Any) -> Any:
        """`ws-01:` with nothing under it is a host with nothing set (as in Ansible's YAML)."""
        if isinstance(value, dict):
            return {k: {} if v is None else v for k, v in value.items()}
        return value
