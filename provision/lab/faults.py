"""Faults the lab can inject, per host. All off by default."""

from __future__ import annotations

from dataclasses import dataclass, field

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

    def winrm(self, name: str) -> int:
        return self.winrm_config.get(name, WINRM_DEFAULTS[name])

    def take_soap_fault(self, action: str) -> str | None:
        kind = self.soap_fault.get(action)
        if kind is None or self.fault_times <= 0:
            return None
        self.fault_times -= 1
        return kind
