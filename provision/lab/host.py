"""A simulated Windows workstation: a folder as C:, users, a process table, and MicroSIP.

MicroSIP behaves as its source says it does: at start it encrypts a plaintext password
and writes it back; on exit (/exit) it writes every [Settings] key from memory plus its
window and call state; a second launch of the same exe forwards its argument to the
running instance; processes are matched to users by owner.
"""

from __future__ import annotations

import codecs
import itertools
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

from provision.ini import Desired, decode_ini, encode_ini, merge_ini, read_ini
from provision.lab.faults import Faults
from provision.remote import INSTALLED_EXE

_KEY = 0x5A
_MARK = b"microsip-lab:"


def encrypt_password(plain: str) -> str:
    """The lab's stand-in for MicroSIP's reversible RC2 obfuscation: lower-case hex."""
    return bytes(b ^ _KEY for b in _MARK + plain.encode("utf-8")).hex()


def decrypt_password(value: str) -> str | None:
    if not re.fullmatch(r"[0-9a-f]+", value) or len(value) % 2:
        return None
    raw = bytes(b ^ _KEY for b in bytes.fromhex(value))
    return raw[len(_MARK) :].decode("utf-8") if raw.startswith(_MARK) else None


DEFAULT_APPDATA = "%USERPROFILE%\\AppData\\Roaming"


@dataclass
class SimUser:
    name: str
    logged_on: bool = True  # has an interactive session, so scheduled tasks run for them
    has_profile: bool = True  # False: the account never logged on here (no ProfileList entry)
    sid: str = ""  # S-1-5-21-...; given by the host
    # HKU\<SID>\...\Explorer\User Shell Folders\AppData, a REG_EXPAND_SZ: where MicroSIP's
    # %APPDATA% really is (folder redirection may point it elsewhere, even at a share).
    appdata: str = DEFAULT_APPDATA
    hive_loaded: bool | None = None  # HKU\<SID> present; None: while logged on
    profile_exists: bool = True  # False: ProfileList names a folder that is not there
    session: int = 0  # the interactive session's id while logged on; given by the host

    @property
    def hive(self) -> bool:
        return self.logged_on if self.hive_loaded is None else self.hive_loaded


@dataclass
class SimProcess:
    pid: int
    user: str  # '' for a process in the WinRM session (session 0)
    exe: str
    memory: dict[str, str] = field(default_factory=dict)  # [Settings] as loaded at start
    log: str | None = None  # Windows path of its SIP log, if logging is on
    ready: bool = False  # registered (or failed to): forwarded commands are handled
    in_call: bool = False
    # Started by a scheduled task: what its definition gave the process. None: started by the user.
    priority: int | None = None  # the task's Priority (7, its default, is below normal)
    working_directory: str | None = None
    stop_on_battery: bool = False  # StopIfGoingOnBatteries
    ini: str | None = None  # the user's MicroSIP: the ini it reads and saves
    transient: bool = False  # a launcher that forwards its command line and exits at once
    exits_at: float | None = None  # time.monotonic() when a MicroSIP told to exit has saved and gone
    session: int = 0  # Win32_Process.SessionId: 0 for services and the WinRM shell
    # Started by a task's trigger: the ExecutionTimeLimit Task Scheduler enforces on it (an
    # on-demand start, Start-ScheduledTask, bypasses the limit: None then).
    time_limit: str | None = None


TASK_NS = "http://schemas.microsoft.com/windows/2004/02/mit/task"
TASKS = "C:\\Windows\\System32\\Tasks"  # where Task Scheduler keeps each task's XML
SYSTEM32 = "C:\\Windows\\System32"


@dataclass(frozen=True)
class TaskSettings:
    """Only what was set: an element left out takes the schema's default."""

    disallow_start_if_on_batteries: bool | None = None  # default true
    stop_if_going_on_batteries: bool | None = None  # default true
    execution_time_limit: str | None = None  # ISO 8601; PT0S is no limit
    priority: int | None = None  # default 7
    start_when_available: bool | None = None  # default false: a missed start is not made up for


@dataclass(frozen=True)
class TaskDefinition:
    user: str
    logon_type: str  # InteractiveToken: runs only in the user's existing session
    command: str
    arguments: str
    working_directory: str | None
    settings: TaskSettings | None  # None: registered without -Settings
    start_boundary: str | None = None  # a -Once time trigger: local time, yyyy-mm-ddThh:mm:ss


def task_xml(uri: str, task: TaskDefinition) -> bytes:
    """The file Task Scheduler writes: XML in UTF-16LE with a BOM."""
    settings = task.settings
    elements = []
    if settings is None:
        # New definitions get a 72-hour limit (the exact XML written without -Settings is not documented).
        elements.append("<ExecutionTimeLimit>PT72H</ExecutionTimeLimit>")
    else:
        if settings.disallow_start_if_on_batteries is not None:
            value = str(settings.disallow_start_if_on_batteries).lower()
            elements.append(f"<DisallowStartIfOnBatteries>{value}</DisallowStartIfOnBatteries>")
        if settings.stop_if_going_on_batteries is not None:
            value = str(settings.stop_if_going_on_batteries).lower()
            elements.append(f"<StopIfGoingOnBatteries>{value}</StopIfGoingOnBatteries>")
        elements.append(f"<ExecutionTimeLimit>{settings.execution_time_limit or 'PT72H'}</ExecutionTimeLimit>")
        if settings.priority is not None:
            elements.append(f"<Priority>{settings.priority}</Priority>")
        if settings.start_when_available is not None:
            value = str(settings.start_when_available).lower()
            elements.append(f"<StartWhenAvailable>{value}</StartWhenAvailable>")
    triggers = ""
    if task.start_boundary is not None:
        triggers = (
            f"  <Triggers><TimeTrigger><StartBoundary>{task.start_boundary}</StartBoundary>"
            "<Enabled>true</Enabled></TimeTrigger></Triggers>\r\n"
        )
    workdir = f"<WorkingDirectory>{escape(task.working_directory)}</WorkingDirectory>" if task.working_directory else ""
    arguments = f"<Arguments>{escape(task.arguments)}</Arguments>" if task.arguments else ""
    text = (
        '<?xml version="1.0" encoding="UTF-16"?>\r\n'
        f'<Task version="1.2" xmlns="{TASK_NS}">\r\n'
        f"  <RegistrationInfo><URI>{escape(uri)}</URI></RegistrationInfo>\r\n"
        f'  <Principals><Principal id="Author"><UserId>{escape(task.user)}</UserId>'
        f"<LogonType>{task.logon_type}</LogonType></Principal></Principals>\r\n"
        f"{triggers}"
        f"  <Settings>{''.join(elements)}</Settings>\r\n"
        f'  <Actions Context="Author"><Exec><Command>{escape(task.command)}</Command>{arguments}{workdir}'
        "</Exec></Actions>\r\n"
        "</Task>\r\n"
    )
    return codecs.BOM_UTF16_LE + text.encode("utf-16-le")


@dataclass(frozen=True)
class StoredTask:
    """A task file read back, the schema's defaults filled in."""

    user: str
    logon_type: str
    command: str
    arguments: str
    working_directory: str
    disallow_start_if_on_batteries: bool
    stop_if_going_on_batteries: bool
    execution_time_limit: str
    priority: int
    start_when_available: bool
    start_boundary: str  # '' when the task has no time trigger


def read_task(data: bytes) -> StoredTask:
    root = ET.fromstring(data.decode("utf-16"))  # noqa: S314 - the lab's own files
    ns = {"t": TASK_NS}

    def get(path: str, default: str) -> str:
        found = root.find(path, ns)
        return found.text or default if found is not None else default

    return StoredTask(
        user=get("t:Principals/t:Principal/t:UserId", ""),
        logon_type=get("t:Principals/t:Principal/t:LogonType", ""),
        command=get("t:Actions/t:Exec/t:Command", ""),
        arguments=get("t:Actions/t:Exec/t:Arguments", ""),
        working_directory=get("t:Actions/t:Exec/t:WorkingDirectory", ""),
        disallow_start_if_on_batteries=get("t:Settings/t:DisallowStartIfOnBatteries", "true") == "true",
        stop_if_going_on_batteries=get("t:Settings/t:StopIfGoingOnBatteries", "true") == "true",
        execution_time_limit=get("t:Settings/t:ExecutionTimeLimit", "PT72H"),
        priority=int(get("t:Settings/t:Priority", "7")),
        start_when_available=get("t:Settings/t:StartWhenAvailable", "false") == "true",
        start_boundary=get("t:Triggers/t:TimeTrigger/t:StartBoundary", ""),
    )


# Folder security ------------------------------------------------------------------------
# Owners and access rules of folders, enough to show who may put files where. Rights are
# .NET's FileSystemRights numbers (what GetAccessRules gives back).

ADMINISTRATORS = "S-1-5-32-544"
LOCAL_SYSTEM = "S-1-5-18"
USERS = "S-1-5-32-545"
AUTHENTICATED_USERS = "S-1-5-11"
EVERYONE = "S-1-1-0"
CREATOR_OWNER = "S-1-3-0"
ADMIN_ACCOUNT = "S-1-5-21-1004336348-1177238915-682003330-500"  # the WinRM account the agent runs as
WELL_KNOWN = {
    ADMINISTRATORS: "BUILTIN\\Administrators",
    LOCAL_SYSTEM: "NT AUTHORITY\\SYSTEM",
    USERS: "BUILTIN\\Users",
    AUTHENTICATED_USERS: "NT AUTHORITY\\Authenticated Users",
    EVERYONE: "Everyone",
    CREATOR_OWNER: "CREATOR OWNER",
}
CREATE_FILES = 0x2  # WriteData
CREATE_DIRECTORIES = 0x4  # AppendData
READ_PERMISSIONS = 0x20000
READ_AND_EXECUTE = 0x200A9
SYNCHRONIZE = 0x100000
FULL_CONTROL = 0x1F01FF
GENERIC_ALL = 0x10000000  # kept as is in an inherit-only rule; FullControl on what inherits it
WRITE_SPECIAL = 0x2 | 0x4 | 0x10 | 0x100  # WD, AD, WEA, WA


@dataclass(frozen=True)
class Ace:
    """An allow rule. inherits: passed on to folders created inside (CI); inherit_only: it applies
    only to them (IO)."""

    sid: str
    rights: int
    inherits: bool = True
    inherit_only: bool = False
    inherited: bool = False


@dataclass(frozen=True)
class FolderSecurity:
    owner: str
    aces: tuple[Ace, ...]
    protected: bool = False  # inheritance from the parent cut


# C:\ProgramData as Windows ships it: anyone may create files and folders in it (BUILTIN\Users
# CI WD,AD,WEA,WA), and whoever creates one owns it and has full control (CREATOR OWNER).
PROGRAMDATA = FolderSecurity(
    LOCAL_SYSTEM,
    (
        Ace(LOCAL_SYSTEM, FULL_CONTROL),
        Ace(ADMINISTRATORS, FULL_CONTROL),
        Ace(CREATOR_OWNER, GENERIC_ALL, inherit_only=True),
        Ace(USERS, READ_AND_EXECUTE | SYNCHRONIZE),
        Ace(USERS, WRITE_SPECIAL),
    ),
)
DRIVE = FolderSecurity(
    LOCAL_SYSTEM,
    (Ace(LOCAL_SYSTEM, FULL_CONTROL), Ace(ADMINISTRATORS, FULL_CONTROL), Ace(USERS, READ_AND_EXECUTE | SYNCHRONIZE)),
)


def inherited_security(parent: FolderSecurity, creator: str) -> FolderSecurity:
    """What a folder created in `parent` by `creator` gets: the parent's inheritable rules, with
    generic rights mapped and CREATOR OWNER's rule given to the creator; the creator owns it."""
    aces: list[Ace] = []
    for ace in parent.aces:
        if not ace.inherits:
            continue
        rights = FULL_CONTROL if ace.rights & GENERIC_ALL else ace.rights
        if ace.sid == CREATOR_OWNER:
            aces.append(Ace(creator, rights, inherits=False, inherited=True))
            aces.append(Ace(CREATOR_OWNER, ace.rights, inherit_only=True, inherited=True))
        else:
            aces.append(Ace(ace.sid, rights, inherited=True))
    return FolderSecurity(creator, tuple(aces))


def pe_stub(build_time: int) -> bytes:
    """The start of a PE file: 'MZ', e_lfanew at 0x3C, 'PE\\0\\0', machine, sections, TimeDateStamp."""
    header = bytearray(0x80)
    header[0:2] = b"MZ"
    header[0x3C:0x40] = (0x40).to_bytes(4, "little")
    header[0x40:0x44] = b"PE\0\0"
    header[0x48:0x4C] = build_time.to_bytes(4, "little")
    return bytes(header)


def pe_build_time(data: bytes) -> int | None:
    if data[:2] != b"MZ" or len(data) < 0x40:
        return None
    offset = int.from_bytes(data[0x3C:0x40], "little")
    if data[offset : offset + 4] != b"PE\0\0":
        return None
    return int.from_bytes(data[offset + 8 : offset + 12], "little")


class PSError(Exception):
    """A PowerShell terminating error, worded as Windows words it (what `$_.Exception.Message` gives)."""


def sharing_violation(windows_path: str) -> str:
    """ERROR_SHARING_VIOLATION as .NET words it (IOException, HResult 0x80070020)."""
    return f"The process cannot access the file '{windows_path}' because it is being used by another process."


def method_error(method: str, arguments: int, message: str) -> PSError:
    """A .NET exception thrown by a method called from PowerShell."""
    return PSError(f'Exception calling "{method}" with "{arguments}" argument(s): "{message}"')


@dataclass
class Break:
    """A cmdlet that throws (host.break_cmdlet): the next `times` calls of it whose parameters
    satisfy `when` fail with `message`, before they do anything."""

    cmdlet: str
    message: str
    when: Callable[[dict[str, object]], bool] | None = None
    times: int = 1


REGISTERED = "registration success, status=200 (OK)"
REGISTRATION_FAILED = "SIP registration failed, status=401 (Unauthorized)"


class SimulatedHost:
    def __init__(
        self,
        name: str,
        root: Path,
        users: list[SimUser],
        *,
        mode: str = "installed",
        portable_exe: str = "%USERPROFILE%\\MicroSIP\\microsip.exe",
    ) -> None:
        self.name = name
        self.root = root
        self.users = {u.name.casefold(): u for u in users}
        for number, user in enumerate(users, start=1001):
            user.sid = user.sid or f"S-1-5-21-1004336348-1177238915-682003330-{number}"
        self.mode = mode
        self.portable_exe = portable_exe
        self.faults = Faults()
        self.microsip_version = "3.22.3"
        self.ini_switch = False  # a custom build that takes /i:<ini>
        # The agent's bounded waits (for MicroSIP to close, to start) run this much faster
        # than asked: tests of a MicroSIP that never closes need not wait the full 10 s. The
        # agent's twin plans with the waits as they run here (whether a close fits in the time).
        self.wait_scale = 1.0
        self.on_battery = False  # a laptop running on its battery
        self.task_history: list[bytes] = []  # every task file as registered, for tests to read
        # The host's wall clock runs this many seconds ahead of the real one (advance()): what
        # Get-Date says, and what time triggers are compared with.
        self.clock_offset = 0.0
        self._timed: dict[str, tuple[str, str]] = {}  # tasks with a time trigger: file key -> (path, name)
        self._fired: set[tuple[str, str]] = set()  # (file key, StartBoundary) of triggers that have fired
        self._firing = False
        self.breaks: list[Break] = []  # cmdlets that throw (break_cmdlet)
        # Called with (user, ini path) each time a MicroSIP has saved its settings on exit: another
        # program that writes the ini at that moment (a test's stand-in for one).
        self.after_save: list[Callable[[str, str], None]] = []
        # Folder owners and rules (folder_security), by lower-case Windows path; a folder not
        # here has what it inherited from its parent, owned by Administrators.
        self.security: dict[str, FolderSecurity] = {"c:": DRIVE, "c:\\programdata": PROGRAMDATA}
        self.agents: dict[int, int] = {}  # powershell.exe processes of the agent now running: pid -> start ticks
        self._race_armed = True  # faults.getowner_race fires once
        self._build_time = int(time.time()) - 200 * 86_400  # built 200 days ago
        self.audio_devices = [
            "Speakers (Realtek(R) Audio)",
            "Microphone Array (Realtek(R) Audio)",
            "Headset Earphone (Jabra Evolve2 40)",
            "Headset Microphone (Jabra Evolve2 40)",
        ]
        self.processes: dict[int, SimProcess] = {}
        # Module Logging (event 4103): every cmdlet call with its parameter bindings, as Windows
        # records them with ModuleNames '*'. .NET calls and the agent's own functions are not here.
        self.module_log: list[str] = []
        self.stats: Counter[str] = Counter()
        self.lock = threading.RLock()
        self._pids = itertools.count(4000, 4)
        (root / "C" / "Program Files" / "MicroSIP").mkdir(parents=True, exist_ok=True)
        (root / "C" / "ProgramData").mkdir(parents=True, exist_ok=True)
        (root / "C" / "Program Files" / "MicroSIP" / "microsip.exe").write_bytes(pe_stub(self.build_time))
        for number, user in enumerate(users, start=1):
            user.session = user.session or number
            if user.has_profile and user.profile_exists:
                (root / "C" / "Users" / user.name / "AppData" / "Roaming").mkdir(parents=True, exist_ok=True)

    @property
    def build_time(self) -> int:
        return self._build_time

    @build_time.setter
    def build_time(self, value: int) -> None:
        """A different build: the installed exe's PE header says so."""
        self._build_time = value
        exe = self.path(INSTALLED_EXE)
        if exe.is_file():
            exe.write_bytes(pe_stub(value))

    # Paths -------------------------------------------------------------------------------

    def path(self, windows_path: str) -> Path:
        """C:\\Users\\x -> <root>/C/Users/x, \\\\server\\share\\x -> <root>/UNC/server/share/x,
        case-insensitively; '..' is refused."""
        if windows_path.startswith("\\\\"):
            drive, rest = "UNC", windows_path[2:]
        else:
            drive, _, rest = windows_path.partition(":\\")
            drive = drive.upper()
        parts = [p for p in rest.split("\\") if p]
        if len(drive) not in (1, 3) or any(p in ("..", ".") for p in parts):
            raise OSError(f"The filename, directory name, or volume label syntax is incorrect: {windows_path}")
        current = self.root / drive
        for part in parts:
            exact = current / part
            if exact.exists():  # the usual case: one stat instead of listing the folder
                current = exact
                continue
            match = None
            if current.is_dir():
                match = next((c for c in current.iterdir() if c.name.casefold() == part.casefold()), None)
            current = match if match is not None else exact
        return current

    def profile_path(self, user: str) -> str | None:
        found = self.users.get(user.casefold())
        if found is None or not found.has_profile:
            return None
        return f"C:\\Users\\{found.name}"

    def ini_path(self, user: str) -> str | None:
        """The ini of the MicroSIP this host has for the user (host.mode)."""
        if self.profile_path(user) is None:
            return None
        return self.ini_for(user, self.exe_for(user))

    def ini_for(self, user: str, exe: str) -> str:
        """Where a MicroSIP started from `exe` keeps its ini: the installed copy in the user's
        %APPDATA%\\MicroSIP (their real one: CSIDL_APPDATA follows redirection), any other copy
        beside itself, named after the exe."""
        if exe.casefold() == INSTALLED_EXE.casefold():
            return self.appdata(user) + "\\MicroSIP\\microsip.ini"
        return exe[: -len(".exe")] + ".ini"

    def appdata(self, user: str) -> str:
        """The user's %APPDATA%, as their own session expands it."""
        found = self.users[user.casefold()]
        return re.sub("%USERPROFILE%", lambda _: self.profile_path(user) or "", found.appdata, flags=re.IGNORECASE)

    def exe_for(self, user: str) -> str:
        profile = self.profile_path(user) or ""
        return INSTALLED_EXE if self.mode == "installed" else self.portable_exe.replace("%USERPROFILE%", profile)

    # Files -------------------------------------------------------------------------------

    def read_ini(self, user: str, path: str | None = None) -> bytes | None:
        path = path or self.ini_path(user)
        if path is None or not self.path(path).is_file():
            return None
        return self.path(path).read_bytes()

    def write_ini(self, user: str, content: bytes, path: str | None = None) -> None:
        path = path or self.ini_path(user)
        assert path is not None, f"{user} has no profile"
        target = self.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)

    # Windows primitives, as the agent's cmdlets and .NET calls meet them -------------------

    def cmdlet(self, name: str, **bindings: object) -> None:
        """A cmdlet call as Module Logging records it (event 4103)."""
        lines = [f'CommandInvocation({name}): "{name}"']
        lines += [f'ParameterBinding({name}): name="{k}"; value="{v}"' for k, v in bindings.items()]
        with self.lock:
            self.module_log.append("\n".join(lines))
            for broken in self.breaks:
                matches = broken.cmdlet.casefold() == name.casefold() and broken.times > 0
                if matches and (broken.when is None or broken.when(bindings)):
                    broken.times -= 1
                    raise PSError(broken.message)

    def break_cmdlet(
        self, name: str, message: str, *, when: Callable[[dict[str, object]], bool] | None = None, times: int = 1
    ) -> None:
        """The next `times` calls of cmdlet `name` (whose parameters satisfy `when`) throw `message`."""
        with self.lock:
            self.breaks.append(Break(name, message, when, times))

    def test_path(self, windows_path: str) -> bool:
        """Test-Path -LiteralPath: never throws; false where access is denied."""
        self.cmdlet("Test-Path", LiteralPath=windows_path)
        if self.denied(windows_path):
            return False
        try:
            return self.path(windows_path).exists()
        except OSError:
            return False

    @property
    def elevated(self) -> bool:
        """The agent runs with an administrator's full token."""
        return self.faults.account == "admin"

    def denied(self, windows_path: str) -> bool:
        """Another user's profile, to a token that is not elevated."""
        return not self.elevated and windows_path.casefold().startswith("c:\\users\\")

    def file_exists(self, windows_path: str) -> bool:
        """[System.IO.File]::Exists: never throws; false where access is denied."""
        try:
            return not self.denied(windows_path) and self.path(windows_path).is_file()
        except OSError:
            return False

    def directory_exists(self, windows_path: str) -> bool:
        """[System.IO.Directory]::Exists: never throws; false where access is denied."""
        try:
            return not self.denied(windows_path) and self.path(windows_path).is_dir()
        except OSError:
            return False

    def create_directory(self, windows_path: str, security: FolderSecurity | None = None) -> None:
        """[System.IO.Directory]::CreateDirectory(path[, security]): every missing folder on the
        way is made. A folder that is already there is left as it is, its owner and rules too;
        `security` goes on the last folder only (the ones above inherit), and its owner must be
        one the agent's token may give (itself, or Administrators)."""
        arguments = 1 if security is None else 2
        with self.lock:
            if self.faults.disk_full:
                raise method_error("CreateDirectory", arguments, "There is not enough space on the disk.")
            missing = self._missing_folders(windows_path)
            for index, folder in enumerate(missing):
                parent = self.folder_security(folder.rpartition("\\")[0])
                if not self._agent_may(parent, CREATE_DIRECTORIES):
                    raise method_error("CreateDirectory", arguments, f"Access to the path '{folder}' is denied.")
                made = inherited_security(parent, ADMIN_ACCOUNT)
                if security is not None and index == len(missing) - 1:
                    if security.owner not in (ADMIN_ACCOUNT, ADMINISTRATORS):
                        raise method_error(
                            "CreateDirectory",
                            arguments,
                            "The security identifier is not allowed to be the owner of this object.",
                        )
                    made = security if security.protected else replace(security, aces=security.aces + made.aces)
                self.security[self._key(folder)] = made
                self.path(folder).mkdir()

    def _missing_folders(self, windows_path: str) -> list[str]:
        """The folders of a path that are not there yet, from the top."""
        missing: list[str] = []
        folder = windows_path.rstrip("\\")
        while folder and not self.path(folder).is_dir():
            missing.insert(0, folder)
            folder = folder.rpartition("\\")[0]
        return missing

    # Folder owners and rules ----------------------------------------------------------------

    @staticmethod
    def _key(windows_path: str) -> str:
        return windows_path.rstrip("\\").casefold()

    def folder_security(self, windows_path: str) -> FolderSecurity:
        """A folder's owner and rules: as recorded, or else as it inherited them."""
        key = self._key(windows_path)
        found = self.security.get(key)
        if found is not None:
            return found
        parent = key.rpartition("\\")[0]
        if not parent:
            return DRIVE
        return inherited_security(self.folder_security(parent), ADMINISTRATORS)

    def _agent_may(self, security: FolderSecurity, right: int) -> bool:
        """The agent's token (the WinRM administrator, elevated) holds `right` on a folder."""
        if right == READ_PERMISSIONS and security.owner in (ADMIN_ACCOUNT, ADMINISTRATORS):
            return True  # an owner may always read the rules
        groups = {ADMIN_ACCOUNT, ADMINISTRATORS, USERS, AUTHENTICATED_USERS, EVERYONE}
        return any(not a.inherit_only and a.sid in groups and a.rights & right for a in security.aces)

    def _user_may(self, user: str, security: FolderSecurity, right: int) -> bool:
        """A (non-administrator) user holds `right` on a folder; its owner may give it to itself."""
        sid = self.users[user.casefold()].sid
        if security.owner == sid:
            return True
        groups = {sid, USERS, AUTHENTICATED_USERS, EVERYONE}
        return any(not a.inherit_only and a.sid in groups and a.rights & right for a in security.aces)

    def get_access_control(self, windows_path: str) -> FolderSecurity:
        """[System.IO.Directory]::GetAccessControl: owner and rules, for whoever may read them."""
        if not self.directory_exists(windows_path):
            raise method_error("GetAccessControl", 1, f"Could not find a part of the path '{windows_path}'.")
        security = self.folder_security(windows_path)
        if not self._agent_may(security, READ_PERMISSIONS):
            raise method_error("GetAccessControl", 1, "Attempted to perform an unauthorized operation.")
        return security

    def _user_with_sid(self, sid: str) -> SimUser | None:
        return next((u for u in self.users.values() if u.sid == sid), None)

    def account_name(self, sid: str) -> str:
        """SecurityIdentifier.Translate(NTAccount); throws for a SID with no name here."""
        if sid in WELL_KNOWN:
            return WELL_KNOWN[sid]
        if sid == ADMIN_ACCOUNT:
            return f"{self.name.upper()}\\Administrator"
        found = self._user_with_sid(sid)
        if found is None:
            raise method_error("Translate", 1, "Some or all identity references could not be translated.")
        return f"{self.name.upper()}\\{found.name}"

    def user_creates_folder(self, user: str, windows_path: str) -> None:
        """A logged-on user (no administrator) makes a folder: they own it, it inherits."""
        with self.lock:
            parent = self.folder_security(windows_path.rpartition("\\")[0])
            if not self._user_may(user, parent, CREATE_DIRECTORIES):
                raise PermissionError(f"Access to the path '{windows_path}' is denied.")
            self.security[self._key(windows_path)] = inherited_security(parent, self.users[user.casefold()].sid)
            self.path(windows_path).mkdir()

    def user_writes_file(self, user: str, windows_path: str, content: bytes) -> None:
        """A logged-on user (no administrator) puts a file in a folder, if its rules let them."""
        with self.lock:
            parent = self.folder_security(windows_path.rpartition("\\")[0])
            if not self._user_may(user, parent, CREATE_FILES):
                raise PermissionError(f"Access to the path '{windows_path}' is denied.")
            self.path(windows_path).write_bytes(content)

    def delete_file(self, windows_path: str) -> None:
        """[System.IO.File]::Delete: a file that is not there is no error; one another program
        holds open (without delete sharing) cannot be deleted."""
        with self.lock:
            if self.locked(windows_path) and self.path(windows_path).exists():
                raise method_error("Delete", 1, sharing_violation(windows_path))
            self.path(windows_path).unlink(missing_ok=True)

    def directory_files(self, windows_path: str) -> list[str]:
        """[System.IO.Directory]::GetFiles, as Windows paths; a missing folder throws."""
        with self.lock:
            folder = self.path(windows_path)
            if not folder.is_dir():
                raise method_error("GetFiles", 2, f"Could not find a part of the path '{windows_path}'.")
            return [f"{windows_path}\\{p.name}" for p in sorted(folder.iterdir()) if p.is_file()]

    def read_all_bytes(self, windows_path: str) -> bytes:
        """[System.IO.File]::ReadAllBytes."""
        file = self._file(windows_path, "ReadAllBytes", 1)
        return file.read_bytes()

    def write_all_bytes(self, windows_path: str, content: bytes) -> None:
        """[System.IO.File]::WriteAllBytes."""
        with self.lock:
            file = self.path(windows_path)
            if not file.parent.is_dir():
                raise method_error("WriteAllBytes", 2, f"Could not find a part of the path '{windows_path}'.")
            if self.faults.disk_full:
                raise method_error("WriteAllBytes", 2, "There is not enough space on the disk.")
            file.write_bytes(content)

    def file_replace(self, source: str, destination: str) -> None:
        """[System.IO.File]::Replace(source, destination, $null): the destination keeps its
        identity (ACL, creation time), the source is gone."""
        with self.lock:
            src = self._file(source, "Replace", 3)
            dst = self._file(destination, "Replace", 3)
            src.replace(dst)

    def file_move(self, source: str, destination: str) -> None:
        """[System.IO.File]::Move: .NET Framework has no overwrite; an existing destination throws."""
        with self.lock:
            src = self._file(source, "Move", 2)
            if self.test_path(destination):
                raise method_error("Move", 2, "Cannot create a file when that file already exists.")
            dst = self.path(destination)
            if not dst.parent.is_dir():
                raise method_error("Move", 2, "Could not find a part of the path.")
            src.replace(dst)

    def copy_item(self, source: str, destination: str) -> None:
        """Copy-Item -LiteralPath."""
        self.cmdlet("Copy-Item", LiteralPath=source, Destination=destination)
        with self.lock:
            if not self.test_path(source):
                raise PSError(f"Cannot find path '{source}' because it does not exist.")
            if self.locked(source):
                raise PSError(sharing_violation(source))
            data = self.path(source).read_bytes()
            if self.faults.disk_full:
                raise PSError("There is not enough space on the disk.")
            self.path(destination).write_bytes(data)

    def child_items(self, folder: str) -> list[Path]:
        """Get-ChildItem -LiteralPath: a missing folder is an error (ItemNotFoundException)."""
        self.cmdlet("Get-ChildItem", LiteralPath=folder)
        with self.lock:
            if not self.test_path(folder):
                raise PSError(f"Cannot find path '{folder}' because it does not exist.")
            return sorted(self.path(folder).iterdir())

    def remove_item(self, windows_path: str) -> None:
        """Remove-Item -LiteralPath -Recurse -Force."""
        self.cmdlet("Remove-Item", LiteralPath=windows_path, Force=True)
        with self.lock:
            target = self.path(windows_path)
            if target.is_dir():
                shutil.rmtree(target)
                key = self._key(windows_path)
                for known in [k for k in self.security if k == key or k.startswith(key + "\\")]:
                    del self.security[known]
            elif target.exists():
                target.unlink()
            else:
                raise PSError(f"Cannot find path '{windows_path}' because it does not exist.")

    def _file(self, windows_path: str, method: str, arguments: int) -> Path:
        if self.denied(windows_path):
            raise method_error(method, arguments, f"Access to the path '{windows_path}' is denied.")
        file = self.path(windows_path)
        if not file.is_file():
            raise method_error(method, arguments, f"Could not find file '{windows_path}'.")
        if self.locked(windows_path):
            raise method_error(method, arguments, sharing_violation(windows_path))
        return file

    def locked(self, windows_path: str) -> bool:
        return windows_path.casefold() in {p.casefold() for p in self.faults.locked_files}

    def sid(self, name: str) -> str:
        """NTAccount.Translate(SecurityIdentifier): throws for an unknown account."""
        found = self.users.get(name.casefold())
        if found is None:
            raise method_error("Translate", 1, "Some or all identity references could not be translated.")
        return found.sid

    def hive_loaded(self, sid: str) -> bool:
        """Test-Path Registry::HKEY_USERS\\<SID>: only while the user's hive is loaded (and
        readable: another user's hive is not, to a token that is not elevated)."""
        self.cmdlet("Test-Path", LiteralPath=f"Registry::HKEY_USERS\\{sid}")
        if not self.elevated:
            return False
        found = self._user_with_sid(sid)
        return found is not None and found.has_profile and found.hive

    def user_shell_folder(self, sid: str, name: str) -> str | None:
        """RegistryKey.GetValue(name, $null, 'DoNotExpandEnvironmentNames') on the hive's User
        Shell Folders: the raw REG_EXPAND_SZ, or None."""
        found = self._user_with_sid(sid)
        if found is None or not found.hive or name != "AppData":
            return None
        return found.appdata

    def profile_image_path(self, sid: str) -> str | None:
        """ProfileList\\<SID>\\ProfileImagePath, or None if the key is not there."""
        found = self._user_with_sid(sid)
        if found is None or not found.has_profile:
            return None
        return f"C:\\Users\\{found.name}"

    def win32_processes(self) -> list[SimProcess]:
        """Get-CimInstance Win32_Process: a snapshot; processes may end right after it."""
        self.cmdlet("Get-CimInstance", ClassName="Win32_Process")
        with self.lock:
            self.reap()
            snapshot = list(self.processes.values())
            for process in snapshot:
                if process.transient:
                    del self.processes[process.pid]  # a launcher that has done its job: seen once, then gone
            return snapshot

    def audio_endpoints(self) -> list[str]:
        """Get-CimInstance Win32_PnPEntity -Filter "PNPClass = 'AudioEndpoint'": their names."""
        self.cmdlet("Get-CimInstance", ClassName="Win32_PnPEntity", Filter="PNPClass = 'AudioEndpoint'")
        return list(self.audio_devices)

    def get_owner(self, pid: int) -> str:
        """Invoke-CimMethod GetOwner: a process that has ended since the snapshot throws WMI's
        'Not found ' (with its trailing space), a terminating error under ErrorAction Stop."""
        self.cmdlet("Invoke-CimMethod", MethodName="GetOwner", InputObject=f'Win32_Process (Handle = "{pid}")')
        with self.lock:
            self.reap()
            process = self.processes.get(pid)
            if process is not None and process.user and self.faults.getowner_race and self._race_armed:
                self._race_armed = False
                self._microsip_exit(process)  # the user quits MicroSIP this very moment
                process = None
            if process is None:
                raise PSError("Not found ")
            if not self.elevated and process.user:
                return ""  # ReturnValue 2, access denied: no owner without SeDebugPrivilege
            return process.user

    def process_start(self, pid: int) -> int | None:
        """Get-Process -Id: the start time (ticks) of a running agent process, None if there is none."""
        with self.lock:
            return self.agents.get(pid)

    # Task Scheduler -------------------------------------------------------------------------

    def task_file(self, task_path: str, name: str) -> str:
        return TASKS + task_path.rstrip("\\") + "\\" + name

    def register_task(self, task_path: str, name: str, task: TaskDefinition, *, force: bool) -> None:
        """Register-ScheduledTask: the definition is stored as XML where Windows keeps it."""
        self.cmdlet("Register-ScheduledTask", TaskPath=task_path, TaskName=name, Principal=task.user, Force=force)
        if self.faults.task_delay_ms:
            time.sleep(self.faults.task_delay_ms / 1000)
        if self.faults.task_scheduler != "Running":
            raise PSError(
                "The service cannot be started, either because it is disabled or because it has no "
                "enabled devices associated with it."
            )
        if not self.elevated:
            raise PSError("Access is denied. (Exception from HRESULT: 0x80070005 (E_ACCESSDENIED))")
        if self.faults.task_fails is not None and task.arguments == self.faults.task_fails:
            raise PSError(
                "No mapping between account names and security IDs was done. (Exception from HRESULT: 0x80070534)"
            )
        with self.lock:
            file = self.path(self.task_file(task_path, name))
            if file.exists() and not force:
                raise PSError(
                    "Cannot create a file when that file already exists. (Exception from HRESULT: 0x800700B7)"
                )
            file.parent.mkdir(parents=True, exist_ok=True)
            data = task_xml(task_path + name, task)
            file.write_bytes(data)
            self.task_history.append(data)
            key = self.task_file(task_path, name).casefold()
            if task.start_boundary is not None:
                self._timed[key] = (task_path, name)
            else:
                self._timed.pop(key, None)

    def start_task(self, task_path: str, name: str) -> None:
        """Start-ScheduledTask: asynchronous, no output; conditions are honoured, a run they
        refuse (on battery) raises no error. The definition is read back from its file."""
        self.cmdlet("Start-ScheduledTask", TaskPath=task_path, TaskName=name)
        with self.lock:
            file = self.path(self.task_file(task_path, name))
            if not file.is_file():
                raise PSError(f"The system cannot find the file specified. Task: {name}")
            self._launch(read_task(file.read_bytes()), triggered=False)

    def _launch(self, task: StoredTask, *, triggered: bool) -> None:
        """A run of a task, on demand or by its trigger, as Task Scheduler makes it."""
        found = self.users.get(task.user.casefold())
        if found is None or not found.logged_on or task.logon_type != "InteractiveToken":
            return  # InteractiveToken: only in the user's existing session; not logged on, no run
        if self.on_battery and task.disallow_start_if_on_batteries:
            return
        self._run_as_user(found.name, task.command, task.arguments, task, triggered=triggered)

    def now(self) -> datetime:
        """The host's local wall clock (Get-Date)."""
        return datetime.now() + timedelta(seconds=self.clock_offset)

    def advance(self, seconds: float) -> None:
        """Time passes on the host: its wall clock moves on, and time triggers that are due fire.
        Nothing else is hurried (waits and MicroSIP's own timing run on the real clock)."""
        with self.lock:
            self.clock_offset += seconds
            self.reap()

    def _fire_due(self) -> None:
        """Time triggers whose moment has come fire, once each, if their task is still registered:
        in the user's session, under the conditions an on-demand start meets. Whoever registered
        the task (an agent since killed, say) has nothing to do with it any more."""
        if self._firing or not self._timed:
            return
        self._firing = True
        try:
            now = self.now()
            for key, (task_path, name) in list(self._timed.items()):
                file = self.path(self.task_file(task_path, name))
                if not file.is_file():
                    del self._timed[key]
                    continue
                task = read_task(file.read_bytes())
                when = datetime.fromisoformat(task.start_boundary)
                if when.tzinfo is not None:
                    when = when.astimezone().replace(tzinfo=None)
                if when > now or (key, task.start_boundary) in self._fired:
                    continue
                self._fired.add((key, task.start_boundary))
                self.stats["tasks_triggered"] += 1
                self._launch(task, triggered=True)
        finally:
            self._firing = False

    def get_task(self, task_path: str, name: str) -> bool:
        """Get-ScheduledTask -ErrorAction SilentlyContinue: whether the task is registered."""
        self.cmdlet("Get-ScheduledTask", TaskPath=task_path, TaskName=name)
        with self.lock:
            return self.path(self.task_file(task_path, name)).is_file()

    def unregister_task(self, task_path: str, name: str) -> None:
        """Unregister-ScheduledTask -Confirm:$false: the task goes, a process it started stays."""
        self.cmdlet("Unregister-ScheduledTask", TaskPath=task_path, TaskName=name, Confirm=False)
        with self.lock:
            file = self.path(self.task_file(task_path, name))
            if not file.is_file():
                raise PSError(f"No MSFT_ScheduledTask objects found with property 'TaskName' equal to '{name}'.")
            file.unlink()
            self._timed.pop(self.task_file(task_path, name).casefold(), None)

    def tasks(self, task_path: str = "\\provision\\") -> list[str]:
        """Names of the tasks registered under a task folder."""
        folder = self.path(TASKS + task_path.rstrip("\\"))
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def unplug(self) -> None:
        """The laptop goes on battery: tasks with StopIfGoingOnBatteries are stopped."""
        with self.lock:
            self.on_battery = True
            for pid, process in list(self.processes.items()):
                if process.stop_on_battery:
                    del self.processes[pid]

    # Processes and MicroSIP ----------------------------------------------------------------

    def user_microsips(self, user: str) -> list[SimProcess]:
        with self.lock:
            self.reap()
            return [p for p in self.processes.values() if p.user.casefold() == user.casefold()]

    def reap(self) -> None:
        """MicroSIPs told to exit a while ago have saved their settings and gone by now; time
        triggers that are due have fired."""
        with self.lock:
            now = time.monotonic()
            for process in list(self.processes.values()):
                if process.exits_at is not None and process.exits_at <= now:
                    self._microsip_exit(process)
            self._fire_due()

    def run_in_session(self, user: str, exe: str, argument: str) -> None:
        """The user runs `exe argument` in their own session (by hand, not through a task)."""
        with self.lock:
            found = self.users.get(user.casefold())
            if found is not None and found.logged_on:
                self._run_as_user(found.name, exe, argument, None)

    def _run_as_user(
        self, user: str, exe: str, argument: str, task: StoredTask | None, *, triggered: bool = False
    ) -> None:
        with self.lock:
            running = [p for p in self.user_microsips(user) if p.exe.casefold() == exe.casefold()]
            if argument == "/exit":
                # The second instance forwards /exit to the first and exits; nothing runs if none does.
                for process in running:
                    if self.faults.microsip_wont_exit or self.faults.microsip_unkillable:
                        continue
                    if self.faults.exit_delay_ms:
                        process.exits_at = process.exits_at or time.monotonic() + self.faults.exit_delay_ms / 1000
                    else:
                        self._microsip_exit(process)
                if self.faults.gone_mid_poll:
                    session = self.users[user.casefold()].session
                    launcher = SimProcess(next(self._pids), user, exe, transient=True, session=session)
                    self.processes[launcher.pid] = launcher
            elif argument == "/minimized":
                if running:
                    # Forwarded to the running MicroSIP (WM_COPYDATA). What it does with /minimized
                    # is not known: counted, so tests can show provision never lets it happen.
                    self.stats["minimized_forwarded"] += 1
                elif not self.faults.microsip_wont_start:
                    process = self.start_microsip(user, exe)
                    if task is not None:
                        process.priority = task.priority
                        process.working_directory = task.working_directory or SYSTEM32
                        process.stop_on_battery = task.stop_if_going_on_batteries
                        process.time_limit = task.execution_time_limit if triggered else None
            else:
                raise AssertionError(f"the lab's MicroSIP got an argument provision never sends: {argument!r}")

    def start_microsip(self, user: str, exe: str | None = None) -> SimProcess:
        """MicroSIP starts: creates its ini if missing, encrypts plaintext passwords."""
        with self.lock:
            owner = self.users[user.casefold()]
            process = SimProcess(next(self._pids), owner.name, exe or self.exe_for(user), session=owner.session)
            process.ini = self.ini_for(user, process.exe)
            content = self.read_ini(user, process.ini)
            text = decode_ini(content) if content else ""
            if not text.strip():
                text = "[Settings]\n"
            doc = read_ini(text)
            updates = []
            for lower, section in doc.sections.items():
                password = section.values.get("password")
                if lower.startswith("account") and password and decrypt_password(password) is None:
                    updates.append((section.name, (("password", encrypt_password(password)),)))
            if updates:
                text = merge_ini(text, Desired(tuple(updates)), {})
            self.write_ini(user, encode_ini(text), process.ini)
            settings = read_ini(text).sections.get("settings")
            process.memory = (
                dict(zip(settings.names.values(), settings.values.values(), strict=True)) if settings else {}
            )
            if process.memory.get("enableLog") == "1":
                process.log = self.log_path(user)
                self._register(process)
            self.processes[process.pid] = process
            self.stats["microsip_starts"] += 1
            return process

    def log_path(self, user: str) -> str:
        profile = self.profile_path(user) or ""
        if self.mode == "portable":
            return self.portable_exe.replace("%USERPROFILE%", profile)[: -len(".exe")] + "_log.txt"
        return profile + "\\AppData\\Local\\MicroSIP\\microsip_log.txt"

    def _register(self, process: SimProcess) -> None:
        """The log is wiped at start; then PJSIP's registration line."""
        assert process.log is not None
        if self.faults.microsip_modal:
            return  # stuck on a dialog before the SIP stack is up
        line = REGISTRATION_FAILED if self.faults.registration_fails else REGISTERED
        self._write_log(process, f"pjsua_acc.c  {line}", fresh=True)
        process.ready = True

    def _write_log(self, process: SimProcess, line: str, *, fresh: bool = False) -> None:
        assert process.log is not None
        file = self.path(process.log)
        file.parent.mkdir(parents=True, exist_ok=True)
        with open(file, "w" if fresh else "a", encoding="utf-8", newline="\r\n") as handle:
            handle.write(f"12:00:00.000 {line}\n")

    # Test instances (smoke) ----------------------------------------------------------------

    def launch(self, exe: str, argument: str, ini: str, log: str) -> SimProcess | None:
        """A launch in the WinRM session. The first of an exe path starts MicroSIP; a later one
        forwards its (whole) argument to it and exits, as MicroSIP's WM_COPYDATA does."""
        with self.lock:
            running = [p for p in self.processes.values() if p.exe.casefold() == exe.casefold() and not p.user]
            if running:
                self._control(running[0], argument)
                return None
            process = SimProcess(next(self._pids), "", exe, log=log)
            if argument.startswith("/i:") and not self.ini_switch:
                # A stock build dials "/i:..." and runs with no ini of its own: a first run, no log.
                self.processes[process.pid] = process
                return process
            text = decode_ini(self.path(ini).read_bytes())
            settings = read_ini(text).sections.get("settings")
            process.memory = (
                dict(zip(settings.names.values(), settings.values.values(), strict=True)) if settings else {}
            )
            if process.memory.get("enableLog") == "1":
                self._register(process)
            self.processes[process.pid] = process
            self.stats["test_starts"] += 1
            return process

    def _control(self, process: SimProcess, argument: str) -> None:
        """What MicroSIP does with a forwarded command line (one switch, compared whole)."""
        if not process.ready:
            return  # arrived before the SIP stack was up: dropped
        if self.faults.microsip_crash_on == argument:
            del self.processes[process.pid]
            return
        if argument == "/exit":
            if not self.faults.microsip_wont_exit:
                del self.processes[process.pid]
        elif argument == "/answer":
            pass  # nothing is ringing
        elif argument == "/hangupall":
            if process.in_call:
                process.in_call = False
                if process.log:
                    self._write_log(process, "sip_endpoint.c  Request msg BYE/cseq=2 (tdta0001) created")
        elif argument in ("/reset", "/resetnoask"):
            raise AssertionError("provision must never send /reset or /resetnoask")
        else:
            process.in_call = True  # anything else is dialled
            if process.log:
                self._write_log(process, f"sip_endpoint.c  Request msg INVITE/cseq=1 (tdta0000) created: {argument}")

    def _microsip_exit(self, process: SimProcess) -> None:
        """SettingsSave: every [Settings] key from memory, plus window and call state."""
        with self.lock:
            content = self.read_ini(process.user, process.ini)
            text = decode_ini(content) if content else "[Settings]\n"
            state = {
                "mainX": "1520",
                "mainY": "180",
                "volumeOutput": "73",
                "lastCallNumber": "2204",
                "callsLastKey": "0",
            }
            items = tuple({**process.memory, **state}.items())
            text = merge_ini(text, Desired((("Settings", items),)), {})
            self.write_ini(process.user, encode_ini(text), process.ini)
            del self.processes[process.pid]
            self.stats["microsip_exits"] += 1
            for hook in self.after_save:
                hook(process.user, process.ini or "")

    def stop_process(self, pid: int) -> None:
        """Stop-Process: no settings saved."""
        self.cmdlet("Stop-Process", Id=pid, Force=True)
        with self.lock:
            if pid in self.processes and not self.faults.microsip_unkillable:
                del self.processes[pid]
                self.stats["microsip_kills"] += 1
