"""A simulated Windows workstation: a folder as C:, users, a process table, and MicroSIP.

MicroSIP behaves as its source says it does: at start it encrypts a plaintext password
and writes it back; on exit (/exit) it writes every [Settings] key from memory plus its
window and call state; a second launch of the same exe forwards its argument to the
running instance; processes are matched to users by owner.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from provision.ini import Desired, decode_ini, encode_ini, merge_ini, read_ini
from provision.lab.faults import Faults

INSTALLED_EXE = "C:\\Program Files\\MicroSIP\\microsip.exe"
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


@dataclass
class SimUser:
    name: str
    logged_on: bool = True  # has an interactive session, so scheduled tasks run for them
    has_profile: bool = True  # False: the account never logged on here


@dataclass
class SimProcess:
    pid: int
    user: str
    exe: str
    memory: dict[str, str] = field(default_factory=dict)  # [Settings] as loaded at start


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
        self.mode = mode
        self.portable_exe = portable_exe
        self.faults = Faults()
        self.processes: dict[int, SimProcess] = {}
        self.stats: Counter[str] = Counter()
        self.lock = threading.RLock()
        self._pids = itertools.count(4000, 4)
        (root / "C" / "Program Files" / "MicroSIP").mkdir(parents=True, exist_ok=True)
        (root / "C" / "Program Files" / "MicroSIP" / "microsip.exe").write_bytes(b"MZ lab")
        for user in users:
            if user.has_profile:
                (root / "C" / "Users" / user.name / "AppData" / "Roaming").mkdir(parents=True, exist_ok=True)

    # Paths -------------------------------------------------------------------------------

    def path(self, windows_path: str) -> Path:
        """C:\\Users\\x -> <root>/C/Users/x, case-insensitively; '..' is refused."""
        drive, _, rest = windows_path.partition(":\\")
        parts = [p for p in rest.split("\\") if p]
        if len(drive) != 1 or any(p in ("..", ".") for p in parts):
            raise OSError(f"The filename, directory name, or volume label syntax is incorrect: {windows_path}")
        current = self.root / drive.upper()
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
        profile = self.profile_path(user)
        if profile is None:
            return None
        if self.mode == "portable":
            return self.portable_exe.replace("%USERPROFILE%", profile)[: -len(".exe")] + ".ini"
        return profile + "\\AppData\\Roaming\\MicroSIP\\microsip.ini"

    def exe_for(self, user: str) -> str:
        profile = self.profile_path(user) or ""
        return INSTALLED_EXE if self.mode == "installed" else self.portable_exe.replace("%USERPROFILE%", profile)

    # Files -------------------------------------------------------------------------------

    def read_ini(self, user: str) -> bytes | None:
        path = self.ini_path(user)
        if path is None or not self.path(path).is_file():
            return None
        return self.path(path).read_bytes()

    def write_ini(self, user: str, content: bytes) -> None:
        path = self.ini_path(user)
        assert path is not None, f"{user} has no profile"
        target = self.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)

    # Processes and MicroSIP ----------------------------------------------------------------

    def user_microsips(self, user: str) -> list[SimProcess]:
        return [p for p in self.processes.values() if p.user.casefold() == user.casefold()]

    def run_in_session(self, user: str, exe: str, argument: str) -> None:
        """A scheduled task running `exe argument` in the user's interactive session."""
        found = self.users.get(user.casefold())
        if found is None or not found.logged_on:
            return  # "run only when the user is logged on": nothing happens
        running = [p for p in self.user_microsips(user) if p.exe.casefold() == exe.casefold()]
        if argument == "/exit":
            # The second instance forwards /exit to the first; nothing runs if none does.
            for process in running:
                if not (self.faults.microsip_wont_exit or self.faults.microsip_unkillable):
                    self._microsip_exit(process)
        elif argument == "/minimized":
            if not running:
                self.start_microsip(user, exe)
        else:
            raise AssertionError(f"the lab's MicroSIP got an argument provision never sends: {argument!r}")

    def start_microsip(self, user: str, exe: str | None = None) -> SimProcess:
        """MicroSIP starts: creates its ini if missing, encrypts plaintext passwords."""
        with self.lock:
            process = SimProcess(next(self._pids), self.users[user.casefold()].name, exe or self.exe_for(user))
            content = self.read_ini(user)
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
            self.write_ini(user, encode_ini(text))
            settings = read_ini(text).sections.get("settings")
            process.memory = (
                dict(zip(settings.names.values(), settings.values.values(), strict=True)) if settings else {}
            )
            self.processes[process.pid] = process
            self.stats["microsip_starts"] += 1
            return process

    def _microsip_exit(self, process: SimProcess) -> None:
        """SettingsSave: every [Settings] key from memory, plus window and call state."""
        with self.lock:
            content = self.read_ini(process.user)
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
            self.write_ini(process.user, encode_ini(text))
            del self.processes[process.pid]
            self.stats["microsip_exits"] += 1

    def stop_process(self, pid: int) -> None:
        """Stop-Process: no settings saved."""
        with self.lock:
            if pid in self.processes and not self.faults.microsip_unkillable:
                del self.processes[pid]
                self.stats["microsip_kills"] += 1
