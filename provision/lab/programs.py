"""What runs when the lab's WinRM shell is given a command line.

Only provision's own bootstrap is recognised, by its exact text; its agent is checked the
same way. Anything else is refused loudly, as a PowerShell error with exit status 1, so a
change to the scripts that the lab does not know shows up at once in the tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import queue
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any

from provision.lab.host import (
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
MARKERS = "C:\\ProgramData\\provision\\closed"
_AGENT_PIDS = itertools.count(9000, 4)
# What Start-InUserSession gives New-ScheduledTaskSettingsSet (a test holds the two together):
# normal priority, allowed and kept on battery, no time limit.
TASK_SETTINGS = TaskSettings(
    disallow_start_if_on_batteries=False,
    stop_if_going_on_batteries=False,
    execution_time_limit="PT0S",
    priority=4,
)


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
                try:
                    message = twin.parse(line.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    self.fail("lab: standard input is not JSON")
                    return
                reply = twin.handle(message)
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
        return json.loads(line)

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
        try:
            if op == Op.RECOVER:
                return self.invoke_recover(request)
            if op == Op.DISCOVER:
                return self.invoke_discover(request)
            if op == Op.APPLY:
                return self.invoke_apply(request)
            if op == Op.ROLLBACK:
                return self.invoke_rollback(request)
            if op == Op.HEALTH:
                return self.invoke_health(request)
            if op == Op.SMOKE:
                return self.invoke_smoke(request)
            if op == Op.INSPECT:
                return self.invoke_inspect(request)
            if op == Op.SMOKE_CLEANUP:
                return {"ok": True, "cleanup": self.remove_smoke_copy(None, request["folder"])}
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

    def start_in_user_session(self, name: str, exe: str, argument: str, verb: str) -> str:
        self.step()
        folder = exe.rsplit("\\", 1)[0]
        self.host.cmdlet("New-ScheduledTaskAction", Execute=exe, Argument=argument, WorkingDirectory=folder)
        self.host.cmdlet("New-ScheduledTaskPrincipal", UserId=name, LogonType="Interactive")
        task = TaskDefinition(name, "InteractiveToken", exe, argument, folder, TASK_SETTINGS)
        self.host.register_task(TASK_PATH, f"microsip-{verb}-{name}", task, force=True)
        self.host.start_task(TASK_PATH, f"microsip-{verb}-{name}")
        return f"microsip-{verb}-{name}"

    def remove_user_tasks(self, tasks: list[str]) -> None:
        for task in tasks:
            try:
                self.host.unregister_task(TASK_PATH, task)
            except PSError:
                continue

    # Markers ----------------------------------------------------------------------------------

    def get_marker_folder(self, *, create: bool = False) -> str:
        if create and not self.host.directory_exists(MARKERS):
            self.host.create_directory(MARKERS)
        return MARKERS

    def get_marker_path(self, name: str) -> str:
        return f"{self.get_marker_folder(create=True)}\\{self.get_user_sid(name)}.json"

    def write_marker(self, name: str, exe: str, session: int) -> None:
        pid = self.process.pid if self.process is not None else 0
        marker = {
            "name": name,
            "exe": exe,
            "session": session,
            "agent_pid": pid,
            "agent_started": self.host.process_start(pid),
            "closed_at": datetime.now(UTC).isoformat(),
        }
        self.host.write_all_bytes(self.get_marker_path(name), json.dumps(marker).encode("utf-8"))

    def remove_marker(self, name: str) -> None:
        path = self.get_marker_path(name)
        if self.host.file_exists(path):
            self.host.delete_file(path)

    def test_marker_live(self, marker: dict[str, Any]) -> bool:
        self.host.cmdlet("Get-Process", Id=marker.get("agent_pid"))
        started = self.host.process_start(int(marker.get("agent_pid") or 0))
        return started is not None and started == marker.get("agent_started")

    # Closing and starting MicroSIP ------------------------------------------------------------

    def close_users(
        self,
        names: list[str],
        exes: dict[str, str],
        results: dict[str, dict[str, Any]],
        wait_ms: int,
        clock: float,
        until_ms: float,
    ) -> list[str]:
        closing: list[str] = []
        tasks: list[str] = []
        running = self.get_microsip_process(exes)
        for name in names:
            key = name.casefold()
            mine = [p for p, owner in running if owner.casefold() == key]
            if not mine:
                continue
            if self.elapsed_ms(clock) > until_ms:
                results[key]["status"] = UserStatus.BUSY
                results[key]["reason"] = "not reached within the time this host was given; MicroSIP left running"
                continue
            try:
                self.write_marker(name, exes[key], mine[0].session)
                closing.append(name)
                tasks.append(self.start_in_user_session(name, exes[key], "/exit", "exit"))
            except PSError as exc:
                self.set_failure(results[key], f"cannot close MicroSIP: {exc}")
        folded = {n.casefold() for n in closing}

        def left() -> list[SimProcess]:
            return [p for p, owner in self.get_microsip_process(exes) if owner.casefold() in folded]

        try:
            deadline = self.waited(wait_ms)
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
        deadline = self.waited(2000)
        while still and time.monotonic() < deadline:
            self.sleep(200)
            still = left()
        closed = []
        for name in closing:
            key = name.casefold()
            if any(p.user.casefold() == key for p in still):
                results[key]["status"] = UserStatus.BUSY
                results[key]["reason"] = "MicroSIP did not close"
                self.remove_marker(name)
            elif not results[key].get("reason"):
                closed.append(name)
        return closed

    def start_users(
        self, names: list[str], exes: dict[str, str], results: dict[str, dict[str, Any]], wait_ms: int
    ) -> None:
        pending: list[str] = []
        tasks: list[str] = []
        running = self.get_microsip_process(exes)
        for name in names:
            key = name.casefold()
            if any(owner.casefold() == key and p.session > 0 for p, owner in running):
                results[key]["restarted"] = True
                self.remove_marker(name)
                continue
            try:
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
                        results[name.casefold()]["restarted"] = True
                        self.remove_marker(name)
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
        files = self.host.directory_files(folder) if self.host.directory_exists(folder) else []
        files = [p for p in files if p.endswith(".json")]
        for file in files:
            try:
                marker = json.loads(self.host.read_all_bytes(file).decode("utf-8"))
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
        closed = self.close_users(
            to_close, exes, results, int(request["exit_wait_ms"]), clock, int(request["budget_ms"]) / 2
        )
        self.sleep(self.host.faults.stall_after_close * 1000)
        folded = {n.casefold() for n in closed}
        restart: list[str] = []
        try:
            for user in request["users"]:
                result = results[user["name"].casefold()]
                if not result.get("reason"):
                    try:
                        self.update_user_ini(user, request, result, user["name"].casefold() in folded)
                    except PSError as exc:
                        self.set_failure(result, f"write failed: {exc}")
                again = user.get("restart") or user["name"].casefold() in folded
                if again and result["status"] != UserStatus.REREAD:
                    restart.append(user["name"])
        finally:
            if not self.killed():
                self.start_users(restart, exes, results, int(request["start_wait_ms"]))
        return {"ok": True, "users": users}

    def update_user_ini(
        self, user: dict[str, Any], request: dict[str, Any], result: dict[str, Any], closed: bool
    ) -> None:
        path = user["ini_path"]
        current = self.get_sha256(path) if self.host.file_exists(path) else None
        if current != user.get("expected_sha256") and current != user["new_sha256"]:
            result["status"] = UserStatus.REREAD
            result["sha256"] = current
            result["closed"] = closed
            if current is not None:
                result["content_b64"] = base64.b64encode(self.host.read_all_bytes(path)).decode()
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
        closed = self.close_users(
            to_close, exes, results, int(request["exit_wait_ms"]), clock, int(request["budget_ms"]) / 2
        )
        try:
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
        finally:
            if not self.killed():
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
        return {"ok": True, "users": users, "hooks": hooks, "devices": list(self.host.audio_devices)}

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
        folder = request["folder"]
        instance = None

        def step(name: str, status: str, reason: str = "", line: str | None = None, alive: bool | None = None) -> None:
            steps.append({"name": name, "status": status, "reason": reason, "line": line, "alive": alive, "ms": 0})

        try:
            if not exe["exists"]:
                step("locate", StepStatus.FAIL, "microsip.exe not found")
                return self.smoke_reply(exe, request, steps, instance, folder)
            step("locate", StepStatus.PASS)
            host.new_directory(folder)
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

    def smoke_reply(
        self,
        exe: dict[str, Any],
        request: dict[str, Any],
        steps: list[dict[str, Any]],
        instance: SimProcess | None,
        folder: str,
    ) -> dict[str, Any]:
        cleanup = self.remove_smoke_copy(instance, folder)
        return {"ok": True, "exe": exe, "method": request["method"], "steps": steps, "cleanup": cleanup}

    def remove_smoke_copy(self, instance: SimProcess | None, folder: str) -> dict[str, Any]:
        host = self.host
        if instance is not None and instance.pid in host.processes:
            host.stop_process(instance.pid)
        prefix = folder.casefold() + "\\"
        for process in list(host.processes.values()):
            if not process.user and process.exe.casefold().startswith(prefix):
                host.stop_process(process.pid)
        if host.test_path(folder):
            host.remove_item(folder)
        return {"ok": True, "reason": None}


class _Hang(Exception):  # noqa: N818 - not an error: the operation just stops answering
    pass
