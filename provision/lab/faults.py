"""Faults the lab can inject, per host. All off by default.

A faults file (`provision lab up --faults FILE`, or the daemon's JSON) maps host-name
patterns (globs) to fault settings, applied in order; `users:` maps user-name patterns to
settings of those users (USER_SETTINGS). `problems` checks one before any host starts.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

# WinRM's service settings as `winrm get winrm/config` shows them, Windows' defaults (2016+).
WINRM_DEFAULTS = {
    "MaxEnvelopeSizekb": 500,
    "MaxTimeoutms": 60000,
    "MaxConcurrentOperationsPerUser": 1500,
    "MaxShellsPerUser": 30,
    "MaxMemoryPerShellMB": 1024,
    "IdleTimeout": 7200000,
}


@dataclass
class Faults:
    latency_ms: float = 0.0  # added to every HTTP request
    refuse: bool = False  # no listener: connection refused
    reset_on: str | None = None  # reset the TCP connection on this action (e.g. "Command")
    reject_auth: bool = False  # 401 for every request
    soap_fault: dict[str, str] = field(default_factory=dict)  # action -> "busy" | "quota" | "shell-not-found"
    fault_times: int = 1_000_000  # how many times soap_fault fires before it stops (transient faults)
    hang: bool = False  # the command never answers
    disk_full: bool = False  # writing the ini fails
    microsip_wont_exit: bool = False  # ignores /exit (a modal dialog); can still be stopped
    microsip_unkillable: bool = False  # ignores /exit and cannot be stopped
    microsip_modal: bool = False  # a test instance hangs on a modal dialog: never registers, drops commands
    microsip_crash_on: str | None = None  # a test instance dies on this control command (e.g. "/answer")
    registration_fails: bool = False  # the SIP server answers REGISTER with 401
    smoke_hang: bool = False  # the smoke operation starts the test instance, then never answers
    # Processes (Win32_Process and GetOwner).
    getowner_race: bool = False  # the user quits MicroSIP (it saves) between the enumeration and GetOwner
    gone_mid_poll: bool = False  # /exit's own short-lived microsip.exe is seen, then gone before GetOwner
    microsip_wont_start: bool = False  # MicroSIP started by a task exits at once (never seen running)
    # The agent stops answering right after closing MicroSIP (a controller killed mid-apply
    # leaves it there until the shell is deleted): seconds it stalls.
    stall_after_close: float = 0.0
    # Time (real, in milliseconds) MicroSIP takes to save and exit after /exit, and Task
    # Scheduler takes to register a task (a busy shared host with many users).
    exit_delay_ms: float = 0.0
    task_delay_ms: float = 0.0
    # Files another program holds open without sharing (an editor, a backup or sync tool):
    # reading, copying or replacing them fails with a sharing violation. Windows paths.
    locked_files: list[str] = field(default_factory=list)
    # Register-ScheduledTask throws for a task with this argument ("/exit" or "/minimized").
    task_fails: str | None = None
    # Transport faults (the HTTP side of the lab).
    reset_mid_response: str | None = None  # send part of the reply to this action, then reset the connection
    trickle_bytes_per_s: float = 0.0  # send every reply this slowly (a server that never quite stops talking)
    # Windows timing: powershell.exe takes this long to start before it reads its stdin
    # (real Windows 5.1: about 0.5 to 1.5 s per shell, more on a cold or AV-heavy host).
    powershell_start_ms: float = 0.0
    # The WinRM account and PowerShell on the host.
    account: str = "admin"  # "admin" (elevated), "uac-filtered" (local admin, filtered token), "non-admin"
    language_mode: str = "FullLanguage"  # "ConstrainedLanguage" under an AppLocker/WDAC policy
    powershell_version: str = "5.1"
    dotnet_release: int = 528040  # HKLM\...\NDP\v4\Full Release (528040: .NET Framework 4.8)
    task_scheduler: str = "Running"  # the Schedule service's status: "Running", "Stopped", or "missing"
    # WinRM settings that differ from Windows' defaults (WINRM_DEFAULTS), e.g. {"MaxEnvelopeSizekb": 150}.
    winrm_config: dict[str, int] = field(default_factory=dict)
    # Set up once, when the lab starts (the lab's host state, not a setting it reads later):
    # C:\ProgramData\provision there already, made by a logged-on user ("user": they own it) or
    # with ProgramData's inherited rules ("inherited"), so the agent must refuse it.
    provision_folder: str | None = None
    cmdlet_fails: dict[str, str] = field(default_factory=dict)  # cmdlet -> the error every call of it throws
    ini_switch: bool = False  # a custom MicroSIP build that takes /i:<ini>
    unreadable_after_exit: bool = False  # another program garbles the ini as MicroSIP saves it on exit

    def winrm(self, name: str) -> int:
        """A WinRM setting: the injected value, else Windows' default."""
        return self.winrm_config.get(name, WINRM_DEFAULTS[name])

    def take_soap_fault(self, action: str) -> str | None:
        kind = self.soap_fault.get(action)
        if kind is None or self.fault_times <= 0:
            return None
        self.fault_times -= 1
        return kind


# Settings of a user (SimUser) a faults file may change.
USER_SETTINGS: dict[str, type] = {
    "logged_on": bool,  # has an interactive session (scheduled tasks run only then)
    "has_profile": bool,  # False: never logged on here (no ProfileList entry)
    "profile_exists": bool,  # False: ProfileList names a folder that is gone
    "hive_loaded": bool,  # their registry hive is loaded (else: while logged on)
    "appdata": str,  # User Shell Folders\\AppData, e.g. \\\\fs01\\redirect$\\%USERNAME%\\AppData\\Roaming
}
# Faults whose value is one of a few words.
CHOICES: dict[str, tuple[str, ...]] = {
    "account": ("admin", "uac-filtered", "non-admin"),
    "language_mode": ("FullLanguage", "ConstrainedLanguage", "RestrictedLanguage", "NoLanguage"),
    "task_scheduler": ("Running", "Stopped", "missing"),
    "reset_on": ("Create", "Command", "Send", "Receive", "Signal", "Delete"),
    "reset_mid_response": ("Create", "Command", "Send", "Receive", "Signal", "Delete"),
    "task_fails": ("/exit", "/minimized"),
    "provision_folder": ("user", "inherited"),
}
SOAP_FAULTS = ("busy", "quota", "shell-not-found")


def fault_types() -> dict[str, Any]:
    hints = typing.get_type_hints(Faults)
    return {f.name: hints[f.name] for f in fields(Faults)}


def problems(spec: Any) -> Iterator[tuple[tuple[str, ...], str]]:
    """What is wrong with a faults spec, as (path, message); nothing if it is right."""
    if not isinstance(spec, dict):
        yield (), "a faults file maps host-name patterns to faults"
        return
    types = fault_types()
    for pattern, settings in spec.items():
        if not isinstance(settings, dict):
            yield (pattern,), "give the faults of these hosts as a mapping (fault: value)"
            continue
        for name, value in settings.items():
            where = (pattern, name)
            if name == "users":
                yield from _user_problems(where, value)
            elif name not in types:
                yield where, f"unknown fault {name!r} (known: {', '.join(sorted(types))}, users)"
            else:
                message = _value_problem(name, types[name], value)
                if message:
                    yield where, message


def _user_problems(where: tuple[str, ...], value: Any) -> Iterator[tuple[tuple[str, ...], str]]:
    if not isinstance(value, dict):
        yield where, "map user-name patterns to their settings"
        return
    for pattern, settings in value.items():
        if not isinstance(settings, dict):
            yield (*where, pattern), "give the settings of these users as a mapping"
            continue
        for name, item in settings.items():
            if name not in USER_SETTINGS:
                yield (*where, pattern, name), f"unknown user setting {name!r} (known: {', '.join(USER_SETTINGS)})"
            elif not isinstance(item, USER_SETTINGS[name]):
                yield (*where, pattern, name), f"must be {USER_SETTINGS[name].__name__}"


def _value_problem(name: str, kind: Any, value: Any) -> str | None:
    if name in CHOICES:
        if value is None and "None" in str(kind):
            return None
        return None if value in CHOICES[name] else f"must be one of {', '.join(CHOICES[name])}"
    if name == "soap_fault":
        if not isinstance(value, dict) or not all(isinstance(k, str) and v in SOAP_FAULTS for k, v in value.items()):
            return f"map WS-Management actions to one of {', '.join(SOAP_FAULTS)}"
        return None
    if name == "cmdlet_fails":
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            return "map cmdlet names (e.g. Get-CimInstance) to the error text they throw"
        return None
    if name == "winrm_config":
        if not isinstance(value, dict) or not all(k in WINRM_DEFAULTS and _is_int(v) for k, v in value.items()):
            return f"map WinRM settings ({', '.join(WINRM_DEFAULTS)}) to whole numbers"
        return None
    if kind is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if kind is int:
        return None if _is_int(value) else "must be a whole number"
    if kind is float:
        return None if _is_int(value) or isinstance(value, float) else "must be a number"
    if kind == list[str]:
        return None if isinstance(value, list) and all(isinstance(v, str) for v in value) else "must be a list of text"
    if kind in (str, str | None):
        return None if isinstance(value, str) or (value is None and kind is not str) else "must be text"
    return f"cannot be set from a file ({kind})"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
