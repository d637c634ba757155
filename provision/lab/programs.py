"""What runs when the lab's WinRM shell is given a command line.

Only provision's own bootstrap is recognised, by its exact text; its agent is checked the
same way. Anything else is refused loudly, as a PowerShell error with exit status 1, so a
change to the scripts that the lab does not know shows up at once in the tests.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import itertools
import json
import math
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from provision.lab.host import (
    ADMINISTRATORS,
    FULL_CONTROL,
    LOCAL_SYSTEM,
    Ace,
    FolderSecurity,
    PSError,
    SimProcess,
    SimulatedHost,
    TaskDefinition,
    TaskSettings,
    method_error,
    pe_build_time,
)
from provision.remote import (
    CMD_LIMIT,
    CREATE_PROCESS_LIMIT,
    INSTALLED_EXE,
    POWERSHELL,
    POWERSHELL_FLAGS,
    agent_text,
    bootstrap_text,
)
from provision.remote.protocol import RUN_ID, InstallMode, Method, Op, Preflight, StepStatus, UserStatus


class Program:
    """A process in a WinRM shell: stdin in, stdout/stderr out, an exit code at the end."""

    def __init__(self) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.done = False
        self.exit_code: int | None = None
        self.ready_at = 0.0  # time.monotonic() before which the process shows no output (start-up)

    def feed(self, data: bytes, end: bool) -> None:
        if end:
            self.finish(0)

    def finish(self, code: int) -> None:
        if not self.done:
            self.done, self.exit_code = True, code

    def terminate(self) -> None:
        self.finish(1)

    def fail(self, message: str) -> None:
        self.stderr += clixml_error(message)
        self.finish(1)


def clixml_error(message: str) -> bytes:
    escaped = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        f'<S S="Error">{escaped}_x000D__x000A_</S></Objs>'
    ).encode()


def start_program(host: SimulatedHost, command: str, arguments: str, skip_cmd_shell: bool) -> Program:
    line = f"{command} {arguments}".strip()
    limit = CREATE_PROCESS_LIMIT if skip_cmd_shell else CMD_LIMIT
    program = Program()
    if len(line) > limit:
        # What cmd.exe answers; CreateProcess fails the same way past its own limit.
        program.stderr += b"The command line is too long.\r\n"
        program.finish(1)
        return program
    expected = " ".join((*POWERSHELL_FLAGS, "-EncodedCommand"))
    head, _, encoded = arguments.rpartition(" ")
    if command.lower() == POWERSHELL and head == expected:
        try:
            text = base64.b64decode(encoded, validate=True).decode("utf-16-le")
        except (binascii.Error, UnicodeDecodeError):
            text = ""
        if text == bootstrap_text():
            agent = AgentProgram(host)
            agent.ready_at = time.monotonic() + host.faults.powershell_start_ms / 1000
            return agent
        program.fail(f"lab: refused an unrecognised PowerShell script (sha256 {_digest(text)})")
        return program
    program.fail(f"lab: refused a command it does not recognise: {line[:80]}")
    return program


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


TASK_PATH = "\\provision\\"
PROVISION_ROOT = "C:\\ProgramData\\provision"
MARKERS = PROVISION_ROOT + "\\closed"
STOP_WAIT_MS = 2000  # $StopWaitMs: a MicroSIP stopped after the exit wait is given this long to go
_AGENT_PIDS = itertools.count(9000, 4)
# What Start-InUserSession gives New-ScheduledTaskSettingsSet (a test holds the two together):
# normal priority, allowed and kept on battery, no time limit.
TASK_SETTINGS = TaskSettings(
    disallow_start_if_on_batteries=False,
    stop_if_going_on_batteries=False,
    execution_time_limit="PT0S",
    priority=4,
)
# A guard task (Close-Users): the same, and a missed trigger is made up for (StartWhenAvailable).
GUARD_SETTINGS = replace(TASK_SETTINGS, start_when_available=True)
# New-TrustedSecurity: the agent's folders, for Administrators (the owner) and SYSTEM only.
TRUSTED_FOLDER = FolderSecurity(
    ADMINISTRATORS, (Ace(ADMINISTRATORS, FULL_CONTROL), Ace(LOCAL_SYSTEM, FULL_CONTROL)), protected=True
)
TRUSTED_SIDS = (ADMINISTRATORS, LOCAL_SYSTEM)
WRITE_RIGHTS = 0x500D0156  # $WriteRights


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class Killed(BaseException):
    """powershell.exe was ended (its shell deleted): it stops wherever it is."""


class AgentProgram(Program):
    """provision's agent, in a thread of its own as powershell.exe is a process of its own.

    The first stdin line must be the exact agent text; then one JSON request per line, each
    answered by the twin (AgentTwin) as the agent's scripts would. Deleting the shell ends it
    between two steps, wherever it is, as Windows ends the process."""

    def __init__(self, host: SimulatedHost) -> None:
        super().__init__()
        self.host = host
        self._pending = b""
        self._lines: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self.started: list[int] = []  # processes started in the shell: they end with it
        self.killed = threading.Event()
        self.pid = next(_AGENT_PIDS)
        host.agents[self.pid] = time.time_ns() // 100  # like .NET ticks: only compared for equality

    def feed(self, data: bytes, end: bool) -> None:
        if self.done:
            return
        self._pending += data
        while b"\n" in self._pending:
            line, _, self._pending = self._pending.partition(b"\n")
            self._lines.put(line)
        if end:
            self._lines.put(None)
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name=f"agent-{self.host.name}", daemon=True)
            self._worker.start()

    def _run(self) -> None:
        twin = AgentTwin(self.host, self)
        faults = self.host.faults
        # bootstrap.ps1: checked first, with what Constrained Language allows; a string written
        # to the output stream reaches stdout as a line (CRLF) from powershell.exe.
        if faults.language_mode != "FullLanguage":
            facts = {"language_mode": faults.language_mode}
            self._refuse(Preflight.LANGUAGE_MODE, facts, "\r\n")
            return
        if tuple(int(p) for p in faults.powershell_version.split(".")[:2]) < (5, 1):
            self._refuse(Preflight.POWERSHELL, {"powershell": faults.powershell_version}, "\r\n")
            return
        try:
            first = self._lines.get()
            if first is None:
                self.finish(0)
                return
            if not self._trusted(first):
                return
            facts = twin.get_preflight()  # loop.ps1, before its loop
            failure = twin.get_preflight_failure(facts)
            if failure is not None:
                self._refuse(failure, facts, "\n")
                return
            held: list[str] = []
            while True:
                line = self._lines.get()
                self.check()
                if line is None:
                    self.finish(0)
                    return
                if self.host.faults.hang:
                    continue  # a command that never answers
                # StreamReader over UTF-8: a byte that is not UTF-8 reads as U+FFFD, never an error.
                text = line.decode("utf-8", "replace").rstrip("\r")
                if not text.strip():
                    continue  # no request
                message, reply = twin.serve(text)
                self.check()
                held.append(twin.send_reply(reply))
                if isinstance(message, dict) and message.get("op") == Op.RECOVER and reply.get("ok"):
                    continue  # Send-Reply -Hold: written with the next reply, in the same write
                self.stdout += ("\n".join(held) + "\n").encode("utf-8")
                held.clear()
        except (Killed, _Hang):
            return

    def _refuse(self, failure: str, facts: dict[str, Any], end: str) -> None:
        reply = {"ok": False, "preflight": failure, "facts": facts}
        self.stdout += (json.dumps(reply, separators=(",", ":")) + end).encode("utf-8")
        self.finish(1)

    def _trusted(self, line: bytes) -> bool:
        """bootstrap.ps1: the first line is base64 of the agent's UTF-8 text."""
        try:
            text = base64.b64decode(line.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            self.fail(str(method_error("FromBase64String", 1, "The input is not a valid Base-64 string.")))
            return False
        if text != agent_text():
            self.fail(f"lab: refused an unrecognised agent script (sha256 {_digest(str(text))})")
            return False
        return True

    def check(self) -> None:
        """Between two steps: a process that was ended goes no further."""
        if self.killed.is_set():
            raise Killed

    def sleep(self, seconds: float) -> None:
        """Start-Sleep, cut short if the process is ended."""
        if self.killed.wait(max(0.0, seconds)):
            raise Killed

    def finish(self, code: int) -> None:
        self.host.agents.pop(self.pid, None)
        super().finish(code)

    def terminate(self) -> None:
        """The shell is deleted: its job object ends every process started in it."""
        self.killed.set()
        with self.host.lock:
            for pid in self.started:
                self.host.processes.pop(pid, None)
        self.finish(1)


class AgentTwin:
    """The operations of the agent's scripts, step by step as the PowerShell does them, on the
    simulated host. Each method is named after the PowerShell function it stands for; a
    cmdlet or .NET call that throws on Windows throws PSError here, at the same step, and is
    caught only where the PowerShell catches it."""

    def __init__(self, host: SimulatedHost, process: AgentProgram | None = None) -> None:
        self.host = host
        self.process = process
        self.started = process.started if process is not None else []

    def step(self) -> None:
        if self.process is not None:
            self.process.check()

    def sleep(self, ms: float) -> None:
        if self.process is not None:
            self.process.sleep(ms / 1000)
        else:
            time.sleep(ms / 1000)

    def parse(self, line: str) -> Any:
        """loop.ps1: $json.DeserializeObject($line), a .NET call: nothing is logged."""
        return self.deserialize(line)

    def serve(self, line: str) -> tuple[Any, dict[str, Any]]:
        """loop.ps1, one line: the request read, and the reply to it; a line that is no JSON
        object is answered with an error."""
        try:
            request = self.parse(line)
        except PSError as exc:
            return None, {"ok": False, "error": f"the request is not JSON: {exc}"}
        if not isinstance(request, dict):
            return request, {"ok": False, "error": "the request is not a JSON object"}
        return request, self.handle(request)

    def send_reply(self, reply: dict[str, Any]) -> str:
        """common.ps1 Send-Reply: $json.Serialize($Reply), a .NET call: nothing is logged."""
        return json.dumps(reply)

    def killed(self) -> bool:
        return self.process is not None and self.process.killed.is_set()

    def elapsed_ms(self, clock: float) -> float:
        return (time.monotonic() - clock) * 1000

    def waited(self, ms: float) -> float:
        """A deadline ms from now, on the host's clock (see SimulatedHost.wait_scale)."""
        return time.monotonic() + ms * self.host.wait_scale / 1000

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """loop.ps1: dispatch on op; an error escaping an operation is the request's error."""
        op = request.get("op")
        operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            Op.RECOVER: self.invoke_recover,
            Op.DISCOVER: self.invoke_discover,
            Op.APPLY: self.invoke_apply,
            Op.ROLLBACK: self.invoke_rollback,
            Op.HEALTH: self.invoke_health,
            Op.SMOKE: self.invoke_smoke,
            Op.INSPECT: self.invoke_inspect,
            Op.SMOKE_CLEANUP: self.invoke_smoke_cleanup,
        }
        operation = operations.get(op) if isinstance(op, str) else None
        try:
            if operation is not None:
                return operation(request)
        except PSError as exc:
            return {"ok": False, "error": str(exc)}
        except (KeyError, TypeError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        return {"ok": False, "error": "unknown operation"}

    # common.ps1 -----------------------------------------------------------------------------

    def get_preflight(self) -> dict[str, Any]:
        faults = self.host.faults
        self.host.cmdlet("Get-Service", Name="Schedule")
        return {
            "language_mode": "FullLanguage",
            "powershell": faults.powershell_version,
            "elevated": faults.account == "admin",
            "filtered": faults.account == "uac-filtered",
            "dotnet": faults.dotnet_release,
            "task_scheduler": faults.task_scheduler,
            "provision_folder": self.get_provision_state(),
        }

    @staticmethod
    def get_preflight_failure(facts: dict[str, Any]) -> str | None:
        if not facts["elevated"]:
            return Preflight.UAC_FILTERED if facts["filtered"] else Preflight.NOT_ADMIN
        if facts["task_scheduler"] != "Running":
            return Preflight.TASK_SCHEDULER
        return None

    @staticmethod
    def set_failure(result: dict[str, Any], reason: str) -> None:
        if result.get("status") in (UserStatus.WRITTEN, UserStatus.RESTORED):
            reason = f"ini {result['status']}, but {reason}"
        result["status"] = UserStatus.FAILED
        result["reason"] = reason

    def get_user_sid(self, name: str) -> str | None:
        try:
            return self.host.sid(name)
        except PSError:
            return None

    @staticmethod
    def expand_user_path(path: str, profile: str) -> str:
        return re.sub("%USERPROFILE%", lambda _: profile, path, flags=re.IGNORECASE)

    def get_user_place(self, name: str) -> dict[str, Any]:
        place: dict[str, Any] = {"name": name, "status": UserStatus.OK}
        sid = self.get_user_sid(name)
        profile = self.host.profile_image_path(sid) if sid is not None else None
        if profile is None:
            place["status"] = UserStatus.NO_PROFILE
            return place
        place["profile_path"] = profile
        if not self.host.directory_exists(profile):
            place["status"] = UserStatus.FAILED
            place["reason"] = (
                f"the profile folder {profile} does not exist (ProfileList still names it); nothing is created"
            )
            return place
        appdata = profile + "\\AppData\\Roaming"
        assert sid is not None
        if self.host.hive_loaded(sid):
            raw = self.host.user_shell_folder(sid, "AppData")
            if raw:
                appdata = self.expand_user_path(raw, profile)
        else:
            place["warning"] = (
                f"the user's registry hive is not loaded (they are not logged on): AppData assumed at {appdata}"
            )
        place["appdata"] = appdata
        return place

    def get_microsip_exe(self, profile: str, install: dict[str, Any]) -> str:
        return self.expand_user_path(str(install.get("exe") or INSTALLED_EXE), profile)

    def get_user_exe(self, name: str, install: dict[str, Any]) -> str | None:
        place = self.get_user_place(name)
        if place.get("profile_path") is None:
            return None
        return self.get_microsip_exe(place["profile_path"], install)

    def get_ini_path(self, place: dict[str, Any], install: dict[str, Any]) -> str:
        if install.get("mode") == InstallMode.PORTABLE:
            return self.get_microsip_exe(place["profile_path"], install).rsplit(".", 1)[0] + ".ini"
        return str(place["appdata"]) + "\\MicroSIP\\microsip.ini"

    def get_user_ini(self, name: str, install: dict[str, Any], max_bytes: int) -> dict[str, Any]:
        entry = self.get_user_place(name)
        if entry["status"] != UserStatus.OK:
            return entry
        ini = self.get_ini_path(entry, install)
        entry["ini_path"] = ini
        if ini.startswith("\\\\") or "%" in ini:
            entry["status"] = UserStatus.REDIRECTED
            entry["reason"] = f"the ini would be {ini} (AppData redirected); not read and not written here"
            return entry
        entry["exists"] = self.host.file_exists(ini)
        if entry["exists"]:
            entry["size"] = self.host.path(ini).stat().st_size
            if entry["size"] > max_bytes:
                entry["status"] = UserStatus.TOO_LARGE
                entry["reason"] = f"ini too large: {entry['size']} bytes, over the cap of {max_bytes}; not read"
                return entry
            content = self.host.read_all_bytes(ini)
            entry["content_b64"] = base64.b64encode(content).decode()
            entry["sha256"] = _sha(content)
        return entry

    def add_running(self, entries: list[dict[str, Any]], install: dict[str, Any]) -> None:
        exes = {
            e["name"].casefold(): self.get_microsip_exe(e["profile_path"], install)
            for e in entries
            if e.get("profile_path")
        }
        running = self.get_microsip_process(exes)
        for entry in entries:
            if entry["name"].casefold() in exes:
                mine = [p for p, owner in running if owner.casefold() == entry["name"].casefold()]
                entry["running"] = bool(mine)
                entry["session"] = mine[0].session if mine else None

    def get_sha256(self, path: str) -> str:
        return _sha(self.host.read_all_bytes(path))

    def write_ini_file(self, path: str, content: bytes, digest: str) -> None:
        self.step()
        folder = path.rsplit("\\", 1)[0]
        if not self.host.directory_exists(folder):
            parent = folder.rsplit("\\", 1)[0]
            if not self.host.directory_exists(parent):
                raise PSError(f"the folder {parent} does not exist; nothing is created")
            self.host.create_directory(folder)
        temp = path + ".provision-tmp"
        self.host.write_all_bytes(temp, content)
        if self.host.file_exists(path):
            self.host.file_replace(temp, path)
        else:
            self.host.file_move(temp, path)
        if self.get_sha256(path) != digest:
            raise PSError("the file read back does not match what was written")

    def save_backup(self, path: str, keep: int, run: str = "") -> str | None:
        if not self.host.file_exists(path):
            return None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")[:-3] + "Z"
        tag = f"-{run}" if RUN_ID.match(run) else ""  # the run's id, when it is one
        backup = f"{path}.provision-{stamp}{tag}.bak"
        self.host.copy_item(path, backup)
        every = self.get_backups(path)
        for old in every[: max(0, len(every) - keep)]:
            self.host.remove_item(old)
        return backup

    @staticmethod
    def is_backup_of(backup: str, path: str) -> bool:
        """Test-BackupOf: a file beside the ini, named <ini>.provision-<...>.bak, nothing else."""
        folder, _, leaf = path.rpartition("\\")
        where, _, name = backup.rpartition("\\")
        prefix = leaf.casefold() + ".provision-"
        rest = name[len(prefix) :] if name.casefold().startswith(prefix) else ""
        return (
            where.casefold() == folder.casefold()
            and bool(rest)
            and name.endswith(".bak")
            and not any(c in rest for c in "\\/:")
        )

    def get_backups(self, path: str) -> list[str]:
        """Backups of one ini, oldest first, as Windows paths; none if its folder is gone."""
        folder, _, leaf = path.rpartition("\\")
        if not self.host.directory_exists(folder):
            return []
        prefix = leaf.casefold() + ".provision-"
        names = [p.name for p in self.host.child_items(folder)]
        return [f"{folder}\\{n}" for n in sorted(names) if n.casefold().startswith(prefix) and n.endswith(".bak")]

    def get_microsip_process(self, exes: dict[str, str]) -> list[tuple[SimProcess, str]]:
        """Get-MicroSipProcess: one pass over Win32_Process; (process, owner) of each user's
        declared exe. A process gone before GetOwner answers is skipped."""
        found = []
        wanted = {exe.casefold() for exe in exes.values()}
        for process in self.host.win32_processes():
            if process.exe.casefold() not in wanted:
                continue
            self.step()
            try:
                owner = self.host.get_owner(process.pid)
            except PSError:
                continue
            if owner.casefold() not in exes or process.exe.casefold() != exes[owner.casefold()].casefold():
                continue
            found.append((process, owner))
        return found

    def register_user_task(self, name: str, exe: str, argument: str, task: str, at: datetime | None = None) -> None:
        self.step()
        folder = exe.rsplit("\\", 1)[0]
        self.host.cmdlet("New-ScheduledTaskAction", Execute=exe, Argument=argument, WorkingDirectory=folder)
        self.host.cmdlet("New-ScheduledTaskPrincipal", UserId=name, LogonType="Interactive")
        settings = TASK_SETTINGS if at is None else GUARD_SETTINGS
        boundary = None
        if at is not None:
            self.host.cmdlet("New-ScheduledTaskTrigger", Once=True, At=at.isoformat())
            boundary = at.strftime("%Y-%m-%dT%H:%M:%S")  # StartBoundary: local time, whole seconds
        definition = TaskDefinition(name, "InteractiveToken", exe, argument, folder, settings, boundary)
        self.host.register_task(TASK_PATH, task, definition, force=True)

    def start_in_user_session(self, name: str, exe: str, argument: str, verb: str) -> str:
        task = f"microsip-{verb}-{name}"
        self.register_user_task(name, exe, argument, task)
        try:
            self.host.start_task(TASK_PATH, task)
        except PSError:
            with contextlib.suppress(PSError):
                self.remove_user_task(task)
            raise
        return task

    def remove_user_task(self, task: str) -> None:
        self.host.unregister_task(TASK_PATH, task)

    def remove_user_tasks(self, tasks: list[str]) -> None:
        for task in tasks:
            try:
                self.remove_user_task(task)
            except PSError:
                continue

    def remove_guard(self, task: str) -> None:
        try:
            self.remove_user_task(task)
        except PSError:
            if self.host.get_task(TASK_PATH, task):
                raise

    # The agent's folder -----------------------------------------------------------------------

    def get_folder_problem(self, path: str) -> str | None:
        try:
            security = self.host.get_access_control(path)
        except PSError as exc:
            return f"its permissions cannot be read ({exc})"
        problems: list[str] = []
        if security.owner not in TRUSTED_SIDS:
            owner = self.get_account_name(security.owner)
            problems.append(f"its owner is {owner} (only Administrators or SYSTEM may own it)")
        for ace in security.aces:
            if ace.rights & WRITE_RIGHTS and ace.sid not in TRUSTED_SIDS:
                who = f"{self.get_account_name(ace.sid)} may change what is in it"
                if who not in problems:
                    problems.append(who)
        return "; ".join(problems) or None

    def get_account_name(self, sid: str) -> str:
        try:
            return self.host.account_name(sid)
        except PSError:
            return sid

    @staticmethod
    def get_distrust_text(path: str, problem: str) -> str:
        return (
            f"{path} is not safe to use: {problem}. Fix: look at what is in it, then remove it as an administrator "
            f"(Remove-Item -LiteralPath '{path}' -Recurse -Force); provision makes it again, for Administrators "
            "and SYSTEM only"
        )

    def get_trusted_folder(self, path: str) -> str:
        if not self.host.directory_exists(path):
            self.host.create_directory(path, TRUSTED_FOLDER)
        problem = self.get_folder_problem(path)
        if problem:
            raise PSError(self.get_distrust_text(path, problem))
        return path

    def get_provision_state(self) -> str:
        if not self.host.directory_exists(PROVISION_ROOT):
            return "absent"
        for path in (PROVISION_ROOT, MARKERS):
            if not self.host.directory_exists(path):
                continue
            problem = self.get_folder_problem(path)
            if problem:
                return self.get_distrust_text(path, problem)
        return "ok"

    # Markers ----------------------------------------------------------------------------------

    def get_marker_folder(self, *, create: bool = False) -> str:
        if create:
            self.get_trusted_folder(PROVISION_ROOT)
            self.get_trusted_folder(MARKERS)
        return MARKERS

    def get_marker_path(self, name: str) -> str:
        return f"{self.get_marker_folder()}\\{self.get_user_sid(name)}.json"

    @staticmethod
    def get_guard_name(name: str) -> str:
        return f"microsip-guard-{name}"

    def write_marker(self, name: str, exe: str, session: int, until: datetime) -> None:
        pid = self.process.pid if self.process is not None else 0
        marker = {
            "name": name,
            "exe": exe,
            "session": session,
            "agent_pid": pid,
            "agent_started": self.host.process_start(pid),
            "closed_at": self.host.now().astimezone(UTC).isoformat(),
            "until": until.astimezone(UTC).isoformat(),
        }
        self.host.write_all_bytes(self.get_marker_path(name), json.dumps(marker).encode("utf-8"))

    @staticmethod
    def deserialize(text: str) -> Any:
        """$json.DeserializeObject: what is not JSON throws."""
        try:
            return json.loads(text)
        except ValueError as exc:
            raise method_error("DeserializeObject", 1, f"Invalid JSON primitive: {exc}") from None

    def remove_marker(self, name: str) -> None:
        path = self.get_marker_path(name)
        if self.host.file_exists(path):
            self.host.delete_file(path)

    def clear_closed(self, name: str) -> None:
        self.remove_guard(self.get_guard_name(name))
        self.remove_marker(name)

    def test_marker_live(self, marker: dict[str, Any]) -> bool:
        if marker.get("until"):
            until = datetime.fromisoformat(str(marker["until"]))
            if self.host.now().astimezone(UTC) >= until:
                return False
        self.host.cmdlet("Get-Process", Id=marker.get("agent_pid"))
        started = self.host.process_start(int(marker.get("agent_pid") or 0))
        return started is not None and started == marker.get("agent_started")

    # Closing and starting MicroSIP ------------------------------------------------------------

    def close_users(
        self,
        names: list[str],
        exes: dict[str, str],
        results: dict[str, dict[str, Any]],
        waits: tuple[int, int, int],
        clock: float,
        closing: list[str],
    ) -> list[str]:
        """waits: the request's exit_wait_ms, start_wait_ms and budget_ms."""
        tasks: list[str] = []
        running = self.get_microsip_process(exes)
        wanted = [n for n in names if any(owner.casefold() == n.casefold() for _, owner in running)]
        if not wanted:
            return []
        unsafe = None
        try:
            self.get_marker_folder(create=True)
        except PSError as exc:
            unsafe = str(exc)
        exit_wait, start_wait, budget = waits
        # The waits as this host runs them (SimulatedHost.wait_scale): the same plan as the agent's.
        cycle = (exit_wait + STOP_WAIT_MS + start_wait) * self.host.wait_scale
        task_ms = 0.0
        for name in wanted:
            key = name.casefold()
            mine = [p for p, owner in running if owner.casefold() == key]
            if unsafe:
                self.set_failure(results[key], f"MicroSIP left running, the ini not written: {unsafe}")
                continue
            time_left = budget - self.elapsed_ms(clock)
            needed = cycle + 6 * task_ms * (len(closing) + 1)
            if needed > time_left:
                results[key]["status"] = UserStatus.BUSY
                results[key]["reason"] = (
                    f"MicroSIP left running: closing it and starting it again can take {math.ceil(needed / 1000)} s, "
                    f"and {max(0, math.floor(time_left / 1000))} s of the time this host was given were left; "
                    "raise --timeout"
                )
                continue
            began = self.elapsed_ms(clock)
            until = self.host.now() + timedelta(milliseconds=time_left)
            at = until + timedelta(milliseconds=max(5000, budget / 4))
            try:
                self.write_marker(name, exes[key], mine[0].session, until)
                self.register_user_task(name, exes[key], "/minimized", self.get_guard_name(name), at)
                tasks.append(self.start_in_user_session(name, exes[key], "/exit", "exit"))
                closing.append(name)
            except PSError as exc:
                with contextlib.suppress(PSError):
                    self.clear_closed(name)
                self.set_failure(results[key], f"MicroSIP left running: its /exit could not be sent: {exc}")
            task_ms = max(task_ms, (self.elapsed_ms(clock) - began) / 2)
        folded = {n.casefold() for n in closing}

        def left() -> list[SimProcess]:
            return [p for p, owner in self.get_microsip_process(exes) if owner.casefold() in folded]

        try:
            deadline = self.waited(exit_wait)
            while closing and time.monotonic() < deadline:
                if not left():
                    break
                self.sleep(200)
        finally:
            if not self.killed():
                self.remove_user_tasks(tasks)
        still = left()
        for process in still:
            self.host.stop_process(process.pid)
        deadline = self.waited(STOP_WAIT_MS)
        while still and time.monotonic() < deadline:
            self.sleep(200)
            still = left()
        closed = []
        for name in closing:
            key = name.casefold()
            if any(p.user.casefold() == key for p in still):
                results[key]["status"] = UserStatus.BUSY
                results[key]["reason"] = "MicroSIP did not close"
                with contextlib.suppress(PSError):
                    self.clear_closed(name)
            else:
                closed.append(name)
        return closed

    @staticmethod
    def waits_of(request: dict[str, Any]) -> tuple[int, int, int]:
        return int(request["exit_wait_ms"]), int(request["start_wait_ms"]), int(request["budget_ms"])

    def complete_restart(self, name: str, result: dict[str, Any]) -> None:
        result["restarted"] = True
        with contextlib.suppress(PSError):
            self.clear_closed(name)

    def start_users(
        self, names: list[str], exes: dict[str, str], results: dict[str, dict[str, Any]], wait_ms: int
    ) -> None:
        pending: list[str] = []
        tasks: list[str] = []
        running = self.get_microsip_process(exes)
        for name in names:
            key = name.casefold()
            try:
                if any(owner.casefold() == key and p.session > 0 for p, owner in running):
                    self.complete_restart(name, results[key])
                    continue
                exe = exes.get(key, "")
                if not exe:  # Split-Path -Parent '' throws
                    raise PSError("Cannot bind argument to parameter 'Path' because it is an empty string.")
                tasks.append(self.start_in_user_session(name, exe, "/minimized", "start"))
                pending.append(name)
            except PSError as exc:
                self.set_failure(
                    results[key],
                    f"MicroSIP could not be started again: {exc}; the next run with this host tries again",
                )
        try:
            deadline = self.waited(wait_ms)
            while pending:
                seen = {owner.casefold() for p, owner in self.get_microsip_process(exes) if p.session > 0}
                for name in list(pending):
                    if name.casefold() in seen:
                        self.complete_restart(name, results[name.casefold()])
                        pending.remove(name)
                if not pending or time.monotonic() >= deadline:
                    break
                self.sleep(200)
        finally:
            if not self.killed():
                self.remove_user_tasks(tasks)
        for name in pending:
            self.set_failure(
                results[name.casefold()],
                f"MicroSIP did not start again within {wait_ms // 1000} s (is the user still logged on?); "
                "the next run with this host tries again",
            )

    # recover.ps1 ------------------------------------------------------------------------------

    def invoke_recover(self, request: dict[str, Any]) -> dict[str, Any]:
        results: dict[str, dict[str, Any]] = {}
        exes: dict[str, str] = {}
        names: list[str] = []
        users: list[dict[str, Any]] = []
        folder = self.get_marker_folder()
        files: list[str] = []
        if self.get_provision_state() == "ok" and self.host.directory_exists(folder):
            files = [p for p in self.host.directory_files(folder) if p.endswith(".json")]
        for file in files:
            try:
                marker = self.deserialize(self.host.read_all_bytes(file).decode("utf-8"))
                if self.test_marker_live(marker):
                    continue
                name = str(marker["name"])
                result: dict[str, Any] = {"name": name, "status": UserStatus.OK, "restarted": False}
                users.append(result)
                exe = self.get_user_exe(name, request["install"])
                if (exe or "").casefold() != str(marker["exe"]).casefold():
                    self.set_failure(
                        result,
                        f"closed by an earlier run from {marker['exe']}, which the inventory does not declare: "
                        "not started",
                    )
                    with contextlib.suppress(PSError):
                        self.remove_guard(self.get_guard_name(name))
                    continue
                assert exe is not None
                results[name.casefold()] = result
                exes[name.casefold()] = exe
                names.append(name)
            except PSError as exc:
                users.append(
                    {
                        "name": file.rsplit("\\", 1)[-1],
                        "status": UserStatus.FAILED,
                        "restarted": False,
                        "reason": str(exc),
                    }
                )
        self.start_users(names, exes, results, int(request["start_wait_ms"]))
        return {"ok": True, "users": users}

    # discover.ps1, apply.ps1, rollback.ps1 ----------------------------------------------------

    def invoke_discover(self, request: dict[str, Any]) -> dict[str, Any]:
        users = []
        for user in request["users"]:
            try:
                users.append(self.get_user_ini(user["name"], request["install"], int(request["max_ini_bytes"])))
            except PSError as exc:
                users.append(
                    {"name": user["name"], "status": UserStatus.FAILED, "reason": f"cannot read the ini: {exc}"}
                )
        self.add_running(users, request["install"])
        return {"ok": True, "users": users}

    def invoke_apply(self, request: dict[str, Any]) -> dict[str, Any]:
        clock = time.monotonic()
        results: dict[str, dict[str, Any]] = {}
        exes: dict[str, str] = {}
        to_close: list[str] = []
        users = []
        for user in request["users"]:
            name = user["name"]
            result: dict[str, Any] = {"name": name, "status": UserStatus.FAILED, "restarted": False}
            results[name.casefold()] = result
            users.append(result)
            try:
                exe = self.get_user_exe(name, request["install"])
                if exe is not None:
                    exes[name.casefold()] = exe
                if user.get("close"):
                    to_close.append(name)
            except PSError as exc:
                self.set_failure(result, str(exc))
        closing: list[str] = []
        restart: list[str] = []
        finished = False
        try:
            closed = self.close_users(to_close, exes, results, self.waits_of(request), clock, closing)
            self.sleep(self.host.faults.stall_after_close * 1000)
            folded = {n.casefold() for n in closed}
            for user in request["users"]:
                result = results[user["name"].casefold()]
                if not result.get("reason"):
                    try:
                        self.update_user_ini(user, request, result, user["name"].casefold() in folded)
                    except PSError as exc:
                        self.set_failure(result, f"write failed: {exc}")
                again = user.get("restart") or user["name"].casefold() in folded
                if again and (user.get("restart") or result["status"] != UserStatus.REREAD):
                    restart.append(user["name"])
            finished = True
        finally:
            if not self.killed():
                if not finished:
                    taken = {n.casefold() for n in restart}
                    asked = {n.casefold() for n in closing}
                    for user in request["users"]:
                        key = user["name"].casefold()
                        if (user.get("restart") or key in asked) and key not in taken:
                            restart.append(user["name"])
                            taken.add(key)
                self.start_users(restart, exes, results, int(request["start_wait_ms"]))
        return {"ok": True, "users": users}

    def update_user_ini(
        self, user: dict[str, Any], request: dict[str, Any], result: dict[str, Any], closed: bool
    ) -> None:
        path = user["ini_path"]
        content = self.host.read_all_bytes(path) if self.host.file_exists(path) else None  # read once
        current = _sha(content) if content is not None else None
        if current != user.get("expected_sha256") and current != user["new_sha256"]:
            result["status"] = UserStatus.REREAD
            result["sha256"] = current
            result["closed"] = closed
            if content is not None:
                result["content_b64"] = base64.b64encode(content).decode()
            return
        if current != user["new_sha256"]:
            result["backup"] = self.save_backup(path, int(request["backups"]), str(request.get("run") or ""))
            self.write_ini_file(path, base64.b64decode(user["content_b64"]), user["new_sha256"])
        result["status"] = UserStatus.WRITTEN

    def invoke_rollback(self, request: dict[str, Any]) -> dict[str, Any]:
        clock = time.monotonic()
        results: dict[str, dict[str, Any]] = {}
        exes: dict[str, str] = {}
        newest: dict[str, str] = {}
        to_close: list[str] = []
        users = []
        for user in request["users"]:
            name = user["name"]
            result: dict[str, Any] = {"name": name, "status": UserStatus.FAILED, "restarted": False}
            results[name.casefold()] = result
            users.append(result)
            try:
                backups = self.get_backups(user["ini_path"])
                wanted = user.get("backup")
                if wanted:  # a backup a run made: only ever one of this ini's
                    if not self.is_backup_of(str(wanted), user["ini_path"]):
                        raise PSError("not a backup of this ini")
                    if not any(b.casefold() == str(wanted).casefold() for b in backups):
                        result["status"] = UserStatus.NO_BACKUP
                        result["reason"] = "that backup is gone (only the newest are kept)"
                        continue
                    newest[name.casefold()] = str(wanted)
                elif not backups:
                    result["status"] = UserStatus.NO_BACKUP
                    continue
                else:
                    newest[name.casefold()] = backups[-1]
                exe = self.get_user_exe(name, request["install"])
                if exe is not None:
                    exes[name.casefold()] = exe
                to_close.append(name)
            except PSError as exc:
                self.set_failure(result, str(exc))
        closing: list[str] = []
        closed: list[str] = []
        finished = False
        try:
            closed = self.close_users(to_close, exes, results, self.waits_of(request), clock, closing)
            for user in request["users"]:
                key = user["name"].casefold()
                result = results[key]
                if key not in newest or result["status"] != UserStatus.FAILED or result.get("reason"):
                    continue
                try:
                    content = self.host.read_all_bytes(newest[key])
                    self.write_ini_file(user["ini_path"], content, _sha(content))
                    result["status"] = UserStatus.RESTORED
                    result["backup"] = newest[key]
                except PSError as exc:
                    self.set_failure(result, f"restore failed: {exc}")
            finished = True
        finally:
            if not self.killed():
                if not finished:
                    closed = list(closing)
                self.start_users(closed, exes, results, int(request["start_wait_ms"]))
        return {"ok": True, "users": users}

    # health.ps1 -------------------------------------------------------------------------------

    def invoke_health(self, request: dict[str, Any]) -> dict[str, Any]:
        install = request.get("install") or {}
        users = []
        for user in request["users"]:
            try:
                entry = self.get_user_ini(user["name"], install, int(request["max_ini_bytes"]))
                if entry.get("profile_path"):
                    exe = self.get_microsip_exe(entry["profile_path"], install)
                    entry["exe"] = self.get_exe_info(exe)
                    log = self.get_log_path(entry["profile_path"], install)
                    patterns = request.get("log_patterns") or []
                    entry["log"] = self.find_log_line(log, patterns, int(request["log_tail_bytes"]))
            except PSError as exc:
                entry = {"name": user["name"], "status": UserStatus.FAILED, "reason": f"cannot read the ini: {exc}"}
            users.append(entry)
        self.add_running(users, install)
        hooks = [{"path": p, "exists": self.host.path(p).is_file()} for p in request.get("hooks") or []]
        devices, devices_error = None, None
        try:
            devices = self.host.audio_endpoints()
        except PSError as exc:
            devices_error = str(exc)
        return {"ok": True, "users": users, "hooks": hooks, "devices": devices, "devices_error": devices_error}

    def get_exe_info(self, path: str) -> dict[str, Any]:
        file = self.host.path(path)
        info: dict[str, Any] = {"path": path, "exists": file.is_file()}
        if info["exists"]:
            info["version"] = self.host.microsip_version
            info["build_time"] = pe_build_time(file.read_bytes()[:4096])
        return info

    def get_log_path(self, profile: str, install: dict[str, Any]) -> str:
        if install.get("mode") == InstallMode.PORTABLE:
            return self.get_microsip_exe(profile, install)[: -len(".exe")] + "_log.txt"
        return profile + "\\AppData\\Local\\MicroSIP\\microsip_log.txt"

    def find_log_line(self, path: str, patterns: list[str], tail_bytes: int) -> dict[str, Any]:
        file = self.host.path(path)
        result: dict[str, Any] = {"exists": file.is_file(), "line": None}
        if result["exists"] and patterns:
            with open(file, "rb") as stream:
                size = stream.seek(0, 2)
                start = max(0, size - tail_bytes)
                stream.seek(start)
                data = stream.read()
            self.host.stats["log_bytes_read"] += len(data)
            lines = data.decode("utf-8", "replace").splitlines()
            if start > 0:
                lines = lines[1:]
            text = "\n".join(lines)
            found = [line for line in text.splitlines() if any(re.search(p, line) for p in patterns)]
            result["line"] = found[-1] if found else None
        return result

    # inspect.ps1 ------------------------------------------------------------------------------

    def invoke_inspect(self, request: dict[str, Any]) -> dict[str, Any]:
        names = (
            "MaxEnvelopeSizekb",
            "MaxTimeoutms",
            "MaxConcurrentOperationsPerUser",
            "MaxShellsPerUser",
            "MaxMemoryPerShellMB",
            "IdleTimeout",
        )
        winrm = {name: self.host.faults.winrm(name) for name in names}
        paths = [INSTALLED_EXE, "C:\\Program Files (x86)\\MicroSIP\\microsip.exe"]
        users = []
        for user in request["users"]:
            try:
                entry = self.get_user_place(user["name"])
                if entry["status"] == UserStatus.OK:
                    entry["ini_path"] = self.get_ini_path(entry, request["install"])
                    if entry["ini_path"].startswith("\\\\") or "%" in entry["ini_path"]:
                        entry["status"] = UserStatus.REDIRECTED
                        entry["reason"] = (
                            f"the ini would be {entry['ini_path']} (AppData redirected); provision does not write there"
                        )
                    else:
                        entry["exists"] = self.host.file_exists(entry["ini_path"])
                if entry.get("profile_path"):
                    exe = self.get_microsip_exe(entry["profile_path"], request["install"])
                    if exe.casefold() not in {p.casefold() for p in paths}:
                        paths.append(exe)
            except PSError as exc:
                entry = {"name": user["name"], "status": UserStatus.FAILED, "reason": str(exc)}
            users.append(entry)
        self.add_running(users, request["install"])
        installs = [self.get_exe_info(path) for path in paths]
        return {"ok": True, "facts": self.get_preflight(), "winrm": winrm, "installs": installs, "users": users}

    # smoke.ps1 --------------------------------------------------------------------------------

    def invoke_smoke(self, request: dict[str, Any]) -> dict[str, Any]:
        host = self.host
        steps: list[dict[str, Any]] = []
        exe = self.get_exe_info(request["exe"])
        folder: str | None = None  # once made by this request: only that is ever removed
        instance = None

        def step(name: str, status: str, reason: str = "", line: str | None = None, alive: bool | None = None) -> None:
            steps.append({"name": name, "status": status, "reason": reason, "line": line, "alive": alive, "ms": 0})

        try:
            if not exe["exists"]:
                step("locate", StepStatus.FAIL, "microsip.exe not found")
                return self.smoke_reply(exe, request, steps, instance, folder)
            step("locate", StepStatus.PASS)
            try:
                folder = self.new_smoke_folder(request["folder"])
            except PSError as exc:
                step("prepare", StepStatus.FAIL, str(exc))
                return self.smoke_reply(exe, request, steps, instance, folder)
            ini = folder + "\\provision-smoke.ini"
            if request["method"] == Method.COPY:
                test_exe = folder + "\\provision-smoke.exe"
                host.copy_item(request["exe"], test_exe)
                launch = "/minimized"
            else:
                test_exe, launch = request["exe"], "/i:" + ini
            log = folder + "\\provision-smoke_log.txt"
            host.write_all_bytes(ini, base64.b64decode(request["ini_b64"]))
            step("prepare", StepStatus.PASS)
            instance = host.launch(test_exe, launch, ini, log)
            assert instance is not None, "a test instance was already running"
            self.started.append(instance.pid)
            if host.faults.smoke_hang:
                raise _Hang
            whole = self.find_log_line(log, request["ready_patterns"], 1 << 40)  # Wait-LogLine reads from 0
            seen = whole["line"] if instance.ready else None
            step("start", StepStatus.DONE, line=seen, alive=instance.pid in host.processes)
            if seen is None:
                return self.smoke_reply(exe, request, steps, instance, folder)
            offset = len(host.path(log).read_text("utf-8"))
            for command in request["commands"]:
                host.launch(test_exe, command["argument"], ini, log)
                alive = instance.pid in host.processes
                if command.get("exits"):
                    step(command["name"], StepStatus.DONE, alive=alive)
                    continue
                if command.get("expect") is None:
                    step(command["name"], StepStatus.DONE, alive=alive)
                    if not alive:
                        break
                    continue
                text = host.path(log).read_text("utf-8")
                new, offset = text[offset:], len(text)
                found = [line for line in new.splitlines() if any(re.search(p, line) for p in command["expect"])]
                step(command["name"], StepStatus.DONE, line=found[0] if found else None, alive=alive)
                if not alive:
                    break
        except PSError as exc:
            step("error", StepStatus.FAIL, str(exc))
        return self.smoke_reply(exe, request, steps, instance, folder)

    def new_smoke_folder(self, path: str) -> str:
        root = self.get_trusted_folder(PROVISION_ROOT)
        if path.rpartition("\\")[0].casefold() != root.casefold():
            raise PSError(f"the test folder {path} is not in {root}")
        if self.host.directory_exists(path):
            raise PSError(f"the test folder {path} is there already: not used")
        return self.get_trusted_folder(path)

    def smoke_reply(
        self,
        exe: dict[str, Any],
        request: dict[str, Any],
        steps: list[dict[str, Any]],
        instance: SimProcess | None,
        folder: str | None,
    ) -> dict[str, Any]:
        cleanup = self.remove_smoke_copy(instance, folder)
        return {"ok": True, "exe": exe, "method": request["method"], "steps": steps, "cleanup": cleanup}

    def remove_smoke_copy(self, instance: SimProcess | None, folder: str | None) -> dict[str, Any]:
        host = self.host
        try:
            if instance is not None and instance.pid in host.processes:
                host.stop_process(instance.pid)
            if folder:
                prefix = folder.casefold() + "\\"
                for process in list(host.processes.values()):
                    if not process.user and process.exe.casefold().startswith(prefix):
                        host.stop_process(process.pid)
                if host.test_path(folder):
                    host.remove_item(folder)
        except PSError as exc:
            return {"ok": False, "reason": str(exc)}
        return {"ok": True, "reason": None}

    def invoke_smoke_cleanup(self, request: dict[str, Any]) -> dict[str, Any]:
        folder = request["folder"]
        problem = None
        if folder.rpartition("\\")[0].casefold() != PROVISION_ROOT.casefold():
            problem = f"the test folder {folder} is not in {PROVISION_ROOT}"
        elif self.host.directory_exists(folder):
            problem = self.get_folder_problem(folder)
            if problem:
                problem = self.get_distrust_text(folder, problem)
        if problem:
            return {"ok": True, "cleanup": {"ok": False, "reason": problem}}
        return {"ok": True, "cleanup": self.remove_smoke_copy(None, folder)}


class _Hang(Exception):  # noqa: N818 - not an error: the operation just stops answering
    pass
