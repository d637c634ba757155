"""The agent's protocol: operation names, request and reply fields, status words.

One JSON request per line on the agent's standard input, one JSON reply line each on its
standard output. The controller (push, checks, doctor) builds requests and reads replies
with these types; the lab's twin of the agent answers with them; a test checks that the
PowerShell (remote/scripts/*.ps1) speaks exactly these words, and no others.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict

# The agent refuses to read a bigger ini, as the controller does.
from provision.ini import MAX_INI_BYTES as MAX_INI_BYTES


class Op(StrEnum):
    RECOVER = "recover"  # sent first in every conversation, in the same Send as the first request
    DISCOVER = "discover"
    APPLY = "apply"
    ROLLBACK = "rollback"
    HEALTH = "health"
    SMOKE = "smoke"
    SMOKE_CLEANUP = "smoke-cleanup"
    INSPECT = "inspect"  # provision doctor: facts about the host, no ini content


class UserStatus(StrEnum):
    """A user's outcome, as the agent words it."""

    OK = "ok"  # discover, health: found and read; recover: nothing went wrong
    NO_PROFILE = "no-profile"  # the account never logged on to this host
    REDIRECTED = "redirected"  # the ini would be on a share (AppData redirected): not read, not written
    TOO_LARGE = "too-large"  # the ini is over the request's max_ini_bytes: not read
    WRITTEN = "written"  # apply: the new ini is in place (or already was)
    REREAD = "reread"  # apply: the ini changed since discover; here is what it is now
    BUSY = "busy"  # apply, rollback: MicroSIP could not be closed; nothing written
    FAILED = "failed"  # a step failed; `reason` says which and why
    RESTORED = "restored"  # rollback: the newest backup is back
    NO_BACKUP = "no-backup"  # rollback: nothing to restore


class Preflight(StrEnum):
    """What a host lacks for the agent, checked first in every conversation. Each is a failure
    kind of its own (the host's result), with a one-line fix (remote.agent.PREFLIGHT)."""

    LANGUAGE_MODE = "language-mode"  # PowerShell in Constrained Language (AppLocker/WDAC)
    POWERSHELL = "powershell-version"  # older than 5.1
    NOT_ADMIN = "not-admin"  # the WinRM account is no administrator here
    UAC_FILTERED = "uac-filtered"  # a local administrator with a filtered (not elevated) token
    TASK_SCHEDULER = "task-scheduler"  # the Schedule service is not running


class StepStatus(StrEnum):
    """A smoke step: judged by the agent (pass, fail) or left to the controller (done)."""

    PASS = "pass"  # noqa: S105 - a step result, not a password
    FAIL = "fail"
    DONE = "done"


class Method(StrEnum):
    """How smoke launches its test copy of MicroSIP."""

    COPY = "copy"  # a renamed copy of the exe beside its own ini
    SWITCH = "switch"  # the exe with /i:<ini> (custom builds)


class InstallMode(StrEnum):
    INSTALLED = "installed"
    PORTABLE = "portable"


# Requests ------------------------------------------------------------------------------------


class Install(TypedDict):
    mode: str  # InstallMode
    exe: str | None  # %USERPROFILE% stands for each user's profile folder


class UserName(TypedDict):
    name: str


class DiscoverRequest(TypedDict):
    op: Literal[Op.DISCOVER]
    install: Install
    users: list[UserName]
    max_ini_bytes: int  # a larger ini is reported (too-large), never read


class ApplyUser(TypedDict):
    name: str
    ini_path: str
    close: bool  # close the user's MicroSIP first
    restart: bool  # start MicroSIP afterwards even if this request did not close it (always done)
    expected_sha256: str | None  # the ini as discover read it (None: there was none)
    # The ini wanted. Equal to expected_sha256: nothing is written (a restart only).
    new_sha256: str | None
    content_b64: str  # the new ini; holds the SIP password: only ever handled by .NET


class ApplyRequest(TypedDict):
    op: Literal[Op.APPLY]
    install: Install
    backups: int
    run: str  # the run's id, carried in the backups' names ('' when there is none)
    exit_wait_ms: int  # one wait for every user's MicroSIP to close after /exit
    start_wait_ms: int  # one wait for every restarted MicroSIP to be seen running
    # The time this request may take. A user is closed only if closing and starting MicroSIP
    # again (exit_wait_ms, 2 s to stop it, start_wait_ms, the tasks) fits in what is left;
    # else they are busy. The guard task that restarts a MicroSIP closed by an agent that
    # died is timed from it too.
    budget_ms: int
    users: list[ApplyUser]


class RollbackUser(TypedDict):
    name: str
    ini_path: str
    backup: str | None  # this backup of the ini (one a run made); None: the newest


class RollbackRequest(TypedDict):
    op: Literal[Op.ROLLBACK]
    install: Install
    exit_wait_ms: int
    start_wait_ms: int
    budget_ms: int
    users: list[RollbackUser]


class RecoverRequest(TypedDict):
    """Start MicroSIP for users an earlier run closed and never started again."""

    op: Literal[Op.RECOVER]
    install: Install  # only the exe it declares is ever started
    start_wait_ms: int


class HealthRequest(TypedDict):
    op: Literal[Op.HEALTH]
    install: Install
    users: list[UserName]
    max_ini_bytes: int
    hooks: list[str]
    log_patterns: list[str]
    log_tail_bytes: int  # only the log's last bytes are read


class SmokeCommand(TypedDict, total=False):
    name: str
    argument: str
    expect: list[str] | None
    exits: bool


class SmokeRequest(TypedDict):
    op: Literal[Op.SMOKE]
    exe: str
    method: str  # Method
    folder: str
    ini_b64: str  # the test ini; holds the test account's password
    ready_ms: int
    step_ms: int
    settle_ms: int
    ready_patterns: list[str]
    commands: list[SmokeCommand]


class SmokeCleanupRequest(TypedDict):
    op: Literal[Op.SMOKE_CLEANUP]
    folder: str


class InspectRequest(TypedDict):
    op: Literal[Op.INSPECT]
    install: Install
    users: list[UserName]


Request = (
    InspectRequest
    | RecoverRequest
    | DiscoverRequest
    | ApplyRequest
    | RollbackRequest
    | HealthRequest
    | SmokeRequest
    | SmokeCleanupRequest
)


# Replies -------------------------------------------------------------------------------------


class Facts(TypedDict, total=False):
    """What the agent found about its session (the bootstrap gives only the first two)."""

    language_mode: str  # FullLanguage, ConstrainedLanguage, ...
    powershell: str  # $PSVersionTable.PSVersion
    elevated: bool  # an administrator's full token
    filtered: bool  # Administrators is in the token as deny-only (UAC remote filtering)
    dotnet: int | None  # .NET Framework 4.x Release number
    task_scheduler: str  # the Schedule service's status, or missing
    # C:\ProgramData\provision: 'ok', 'absent' (made when first needed), or why it cannot be
    # trusted (someone other than Administrators and SYSTEM owns it or may change it) and the fix.
    provision_folder: str


class Reply(TypedDict, total=False):
    ok: bool
    error: str  # when ok is false: why the request failed as a whole
    preflight: str  # when ok is false before any request: what the host lacks (Preflight)
    facts: Facts


class UserIni(TypedDict, total=False):
    """discover and health: one user's ini and MicroSIP."""

    name: str
    status: str  # UserStatus
    reason: str
    warning: str  # e.g. the hive is not loaded: AppData assumed at its default place
    profile_path: str
    appdata: str  # the user's AppData, as their own session expands it
    ini_path: str
    exists: bool
    size: int  # bytes
    content_b64: str
    sha256: str
    running: bool
    session: int | None  # the session MicroSIP runs in
    exe: ExeInfo  # health only
    log: LogLine  # health only


class ExeInfo(TypedDict, total=False):
    path: str
    exists: bool
    version: str | None
    build_time: int | None  # PE TimeDateStamp, seconds since 1970


class LogLine(TypedDict, total=False):
    exists: bool
    line: str | None


class DiscoverReply(Reply, total=False):
    users: list[UserIni]


class ApplyOutcome(TypedDict, total=False):
    """apply, rollback and recover: what happened to one user."""

    name: str
    status: str  # UserStatus
    reason: str
    sha256: str | None  # reread: the ini now
    content_b64: str  # reread: its content
    closed: bool  # reread: MicroSIP was closed for this request and awaits its restart
    backup: str | None
    restarted: bool  # MicroSIP was started again and seen running in the user's session


class ApplyReply(Reply, total=False):
    users: list[ApplyOutcome]


class ClosedMarker(TypedDict):
    """The agent's note on the host (C:\\ProgramData\\provision\\closed\\<SID>.json) that it
    closed a user's MicroSIP and has not yet seen it running again."""

    name: str
    exe: str
    session: int
    agent_pid: int  # the powershell.exe that wrote it: while it runs (and until), the marker is its own
    agent_started: int  # its start time, in .NET ticks (UTC)
    closed_at: str  # ISO 8601, UTC
    # When the request that closed MicroSIP runs out of time, ISO 8601, UTC (absent from markers
    # an earlier version wrote). The marker goes with the user's guard task,
    # \provision\microsip-guard-<user>, which starts MicroSIP by itself if nobody has by its time.
    until: NotRequired[str]


class Hook(TypedDict):
    path: str
    exists: bool


class HealthReply(Reply, total=False):
    users: list[UserIni]
    hooks: list[Hook]
    devices: list[str] | None  # audio endpoints' names; None: they could not be listed
    devices_error: str | None  # why not


class WinRMConfig(TypedDict, total=False):
    """WinRM's settings that matter to provision, as the WSMan: drive gives them (None: unreadable)."""

    MaxEnvelopeSizekb: int | None
    MaxTimeoutms: int | None
    MaxConcurrentOperationsPerUser: int | None
    MaxShellsPerUser: int | None
    MaxMemoryPerShellMB: int | None
    IdleTimeout: int | None


class InspectReply(Reply, total=False):
    winrm: WinRMConfig
    installs: list[ExeInfo]
    users: list[UserIni]  # without content: place, ini path, whether it exists, running, session


class SmokeStep(TypedDict, total=False):
    name: str
    status: str  # StepStatus
    reason: str | None
    line: str | None
    alive: bool | None
    ms: int


class Cleanup(TypedDict, total=False):
    ok: bool
    reason: str | None


class SmokeReply(Reply, total=False):
    exe: ExeInfo
    method: str
    steps: list[SmokeStep]
    cleanup: Cleanup


REQUEST_TYPES: tuple[type[Any], ...] = (
    InspectRequest,
    RecoverRequest,
    Install,
    UserName,
    DiscoverRequest,
    ApplyUser,
    ApplyRequest,
    RollbackUser,
    RollbackRequest,
    HealthRequest,
    SmokeCommand,
    SmokeRequest,
    SmokeCleanupRequest,
)
REPLY_TYPES: tuple[type[Any], ...] = (
    Facts,
    Reply,
    UserIni,
    ExeInfo,
    LogLine,
    DiscoverReply,
    ApplyOutcome,
    ApplyReply,
    ClosedMarker,
    WinRMConfig,
    InspectReply,
    Hook,
    HealthReply,
    SmokeStep,
    Cleanup,
    SmokeReply,
)


RUN_ID = re.compile(r"^[0-9A-Za-z-]{1,40}$")  # what a run id may be, to go in a file name


def fields(types: tuple[type[Any], ...]) -> set[str]:
    """Every field name of these TypedDicts."""
    return {name for t in types for name in t.__annotations__}
