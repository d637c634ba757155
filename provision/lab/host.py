"""A simulated Windows workstation: a folder as C:, users, a process table, and MicroSIP.

MicroSIP behaves as its source says it does: at start it encrypts a plaintext password
and writes it back; on exit (/exit) it writes every [Settings] key from memory plus its
window and call state; a second launch of the same exe forwards its argument to the
running instance; processes are matched to users by owner.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import re
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class TaskDefinition:
    user: str
    logon_type: str  # InteractiveToken: runs only in the user's existing session
    command: str
    arguments: str
    working_directory: str | None
    settings: TaskSettings | None  # None: registered without -Settings


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
    workdir = f"<WorkingDirectory>{escape(task.working_directory)}</WorkingDirectory>" if task.working_directory else ""
    arguments = f"<Arguments>{escape(task.arguments)}</Arguments>" if task.arguments else ""
    text = (
        '<?xml version="1.0" encoding="UTF-16"?>\r\n'
        f'<Task version="1.2" xmlns="{TASK_NS}">\r\n'
        f"  <RegistrationInfo><URI>{escape(uri)}</URI></RegistrationInfo>\r\n"
        f'  <Principals><Principal id="Author"><UserId>{escape(task.user)}</UserId>'
        f"<LogonType>{task.logon_type}</LogonType></Principal></Principals>\r\n"
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
    )


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
        # than asked: tests of a MicroSIP that never closes need not wait the full 10 s.
        self.wait_scale = 1.0
        self.on_battery = False  # a laptop running on its battery
        self.task_history: list[bytes] = []  # every task file as registered, for tests to read
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
            match = None
            if current.is_dir():
                match = next((c for c in current.iterdir() if c.name.casefold() == part.casefold()), None)
            current = match if match is not None else current / part
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

    def create_directory(self, windows_path: str) -> None:
        """[System.IO.Directory]::CreateDirectory."""
        with self.lock:
            if self.faults.disk_full:
                raise method_error("CreateDirectory", 1, "There is not enough space on the disk.")
            self.path(windows_path).mkdir(parents=True, exist_ok=True)

    def delete_file(self, windows_path: str) -> None:
        """[System.IO.File]::Delete: a file that is not there is no error."""
        with self.lock:
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

    def file_hash(self, windows_path: str) -> str:
        """Get-FileHash -Algorithm SHA256, lower case."""
        self.cmdlet("Get-FileHash", LiteralPath=windows_path, Algorithm="SHA256")
        if not self.test_path(windows_path):
            raise PSError(f"Cannot find path '{windows_path}' because it does not exist.")
        return hashlib.sha256(self.path(windows_path).read_bytes()).hexdigest()

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

    def new_directory(self, windows_path: str) -> None:
        """New-Item -ItemType Directory -Force: every missing folder on the way is created."""
        self.cmdlet("New-Item", ItemType="Directory", Path=windows_path, Force=True)
        with self.lock:
            self.path(windows_path).mkdir(parents=True, exist_ok=True)

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
        found = next((u for u in self.users.values() if u.sid == sid), None)
        return found is not None and found.has_profile and found.hive

    def user_shell_folder(self, sid: str, name: str) -> str | None:
        """RegistryKey.GetValue(name, $null, 'DoNotExpandEnvironmentNames') on the hive's User
        Shell Folders: the raw REG_EXPAND_SZ, or None."""
        found = next((u for u in self.users.values() if u.sid == sid), None)
        if found is None or not found.hive or name != "AppData":
            return None
        return found.appdata

    def profile_image_path(self, sid: str) -> str | None:
        """ProfileList\\<SID>\\ProfileImagePath, or None if the key is not there."""
        found = next((u for u in self.users.values() if u.sid == sid), None)
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

    def start_task(self, task_path: str, name: str) -> None:
        """Start-ScheduledTask: asynchronous, no output; conditions are honoured, a run they
        refuse (on battery) raises no error. The definition is read back from its file."""
        self.cmdlet("Start-ScheduledTask", TaskPath=task_path, TaskName=name)
        with self.lock:
            file = self.path(self.task_file(task_path, name))
            if not file.is_file():
                raise PSError(f"The system cannot find the file specified. Task: {name}")
            task = read_task(file.read_bytes())
            found = self.users.get(task.user.casefold())
            if found is None or not found.logged_on or task.logon_type != "InteractiveToken":
                return  # InteractiveToken: only in the user's existing session; not logged on, no run
            if self.on_battery and task.disallow_start_if_on_batteries:
                return
            self._run_as_user(found.name, task.command, task.arguments, task)

    def unregister_task(self, task_path: str, name: str) -> None:
        """Unregister-ScheduledTask -Confirm:$false: the task goes, a process it started stays."""
        self.cmdlet("Unregister-ScheduledTask", TaskPath=task_path, TaskName=name, Confirm=False)
        with self.lock:
            file = self.path(self.task_file(task_path, name))
            if not file.is_file():
                raise PSError(f"No MSFT_ScheduledTask objects found with property 'TaskName' equal to '{name}'.")
            file.unlink()

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
        """MicroSIPs told to exit a while ago have saved their settings and gone by now."""
        with self.lock:
            now = time.monotonic()
            for process in list(self.processes.values()):
                if process.exits_at is not None and process.exits_at <= now:
                    self._microsip_exit(process)

    def run_in_session(self, user: str, exe: str, argument: str) -> None:
        """The user runs `exe argument` in their own session (by hand, not through a task)."""
        with self.lock:
            found = self.users.get(user.casefold())
            if found is not None and found.logged_on:
                self._run_as_user(found.name, exe, argument, None)

    def _run_as_user(self, user: str, exe: str, argument: str, task: StoredTask | None) -> None:
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
                if not running and not self.faults.microsip_wont_start:
                    process = self.start_microsip(user, exe)
                    if task is not None:
                        process.priority = task.priority
                        process.working_directory = task.working_directory or SYSTEM32
                        process.stop_on_battery = task.stop_if_going_on_batteries
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

    def stop_process(self, pid: int) -> None:
        """Stop-Process: no settings saved."""
        self.cmdlet("Stop-Process", Id=pid, Force=True)
        with self.lock:
            if pid in self.processes and not self.faults.microsip_unkillable:
                del self.processes[pid]
                self.stats["microsip_kills"] += 1
