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
from provision.remote.protocol import InstallMode, Method, Op, StepStatus, UserStatus


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
_AGENT_PIDS = itertools.count(9000, 4)
# What Start-InUserSession gives New-ScheduledTaskSettingsSet (a test holds the two together):
# normal priority, allowed and kept on battery, no time limit.
TASK_SETTINGS = TaskSettings(
    disallow_start_if_on_batteries=False,
    stop_if_going_on_batteries=False,
    execution_time_limit="PT0S",
    priority=4,
)


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
        try:
            first = self._lines.get()
            if first is None:
                self.finish(0)
                return
            if not self._trusted(first):
                return
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
                self.stdout += (twin.send_reply(reply) + "\n").encode("utf-8")
        except (Killed, _Hang):
            return

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

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """loop.ps1: dispatch on op; an error escaping an operation is the request's error."""
        op = request.get("op")
        try:
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
            if op == Op.SMOKE_CLEANUP:
                return {"ok": True, "cleanup": self.remove_smoke_copy(None, request["folder"])}
        except PSError as exc:
            return {"ok": False, "error": str(exc)}
        except (KeyError, TypeError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        return {"ok": False, "error": "unknown operation"}

    # common.ps1 -----------------------------------------------------------------------------

    def get_profile_path(self, name: str) -> str | None:
        try:
            sid = self.host.sid(name)
        except PSError:
            return None
        return self.host.profile_image_path(sid)

    def get_ini_path(self, profile: str, install: dict[str, Any]) -> str:
        if install.get("mode") == InstallMode.PORTABLE:
            exe = str(install["exe"]).replace("%USERPROFILE%", profile)
            return exe.rsplit(".", 1)[0] + ".ini"
        return profile + "\\AppData\\Roaming\\MicroSIP\\microsip.ini"

    def get_microsip_exe(self, profile: str, install: dict[str, Any]) -> str:
        return str(install.get("exe") or INSTALLED_EXE).replace("%USERPROFILE%", profile)

    def get_user_exe(self, name: str, install: dict[str, Any]) -> str | None:
        profile = self.get_profile_path(name)
        return None if profile is None else self.get_microsip_exe(profile, install)

    def get_user_ini(self, name: str, install: dict[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": name, "status": UserStatus.OK}
        profile = self.get_profile_path(name)
        if profile is None:
            entry["status"] = UserStatus.NO_PROFILE
            return entry
        entry["profile_path"] = profile
        ini = self.get_ini_path(profile, install)
        entry["ini_path"] = ini
        entry["exists"] = self.host.test_path(ini)
        if entry["exists"]:
            content = self.host.read_all_bytes(ini)
            entry["content_b64"] = base64.b64encode(content).decode()
            entry["sha256"] = self.host.file_hash(ini)
        exe = self.get_microsip_exe(profile, install)
        entry["running"] = len(self.get_user_microsip(name, exe)) > 0
        return entry

    def get_user_microsip(self, name: str, exe: str | None) -> list[SimProcess]:
        found = []
        for process in self.host.win32_processes():
            if exe is None or process.exe.casefold() != exe.casefold():
                continue
            self.step()
            if self.host.get_owner(process.pid).casefold() == name.casefold():
                found.append(process)
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

    def remove_user_task(self, task: str) -> None:
        self.host.unregister_task(TASK_PATH, task)

    def wait_microsip_started(self, name: str, exe: str, wait_ms: int) -> bool:
        deadline = time.monotonic() + wait_ms * self.host.wait_scale / 1000
        while not self.get_user_microsip(name, exe) and time.monotonic() < deadline:
            self.sleep(200)
        return len(self.get_user_microsip(name, exe)) > 0

    def close_microsip(self, name: str, exe: str, wait_ms: int) -> dict[str, Any]:
        running = self.get_user_microsip(name, exe)
        if not running:
            return {"ok": True, "closed": False}
        task = self.start_in_user_session(name, exe, "/exit", "exit")
        try:
            deadline = time.monotonic() + wait_ms * self.host.wait_scale / 1000
            while time.monotonic() < deadline and self.get_user_microsip(name, exe):
                self.sleep(200)
        finally:
            self.remove_user_task(task)
        for process in self.get_user_microsip(name, exe):
            self.host.stop_process(process.pid)
        self.sleep(500 * self.host.wait_scale)
        if self.get_user_microsip(name, exe):
            return {"ok": False, "closed": True, "reason": "MicroSIP did not close"}
        return {"ok": True, "closed": True}

    def write_ini_file(self, path: str, content: bytes, digest: str) -> None:
        self.step()
        folder = path.rsplit("\\", 1)[0]
        if not self.host.test_path(folder):
            self.host.new_directory(folder)
        temp = path + ".provision-tmp"
        self.host.write_all_bytes(temp, content)
        if self.host.test_path(path):
            self.host.file_replace(temp, path)
        else:
            self.host.file_move(temp, path)
        if self.host.file_hash(path) != digest:
            raise PSError("the file read back does not match what was written")

    def save_backup(self, path: str, keep: int) -> str | None:
        if not self.host.test_path(path):
            return None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")[:-3] + "Z"
        backup = f"{path}.provision-{stamp}.bak"
        self.host.copy_item(path, backup)
        every = self.get_backups(path)
        for old in every[: max(0, len(every) - keep)]:
            self.host.remove_item(old)
        return backup

    def get_backups(self, path: str) -> list[str]:
        """Backups of one ini, oldest first, as Windows paths."""
        folder, _, leaf = path.rpartition("\\")
        prefix = leaf.casefold() + ".provision-"
        names = [p.name for p in self.host.child_items(folder)]
        return [f"{folder}\\{n}" for n in sorted(names) if n.casefold().startswith(prefix) and n.endswith(".bak")]

    # discover.ps1, apply.ps1, rollback.ps1 ----------------------------------------------------

    def invoke_discover(self, request: dict[str, Any]) -> dict[str, Any]:
        users = [self.get_user_ini(user["name"], request["install"]) for user in request["users"]]
        return {"ok": True, "users": users}

    def invoke_apply(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "users": [self.update_user_ini(user, request) for user in request["users"]]}

    def update_user_ini(self, user: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        name = user["name"]
        result: dict[str, Any] = {"name": name, "status": UserStatus.FAILED}
        closed: dict[str, Any] = {"ok": True, "closed": False}
        exe = self.get_user_exe(name, request["install"])
        try:
            if user.get("close"):
                assert exe is not None
                closed = self.close_microsip(name, exe, int(request["exit_wait_ms"]))
                self.sleep(self.host.faults.stall_after_close * 1000)
                if not closed["ok"]:
                    result["status"] = UserStatus.BUSY
                    result["reason"] = closed["reason"]
                    return result
            current = self.host.file_hash(user["ini_path"]) if self.host.test_path(user["ini_path"]) else None
            if current != user.get("expected_sha256") and current != user["new_sha256"]:
                result["status"] = UserStatus.REREAD
                result["sha256"] = current
                result["closed"] = closed["closed"]
                if current is not None:
                    result["content_b64"] = base64.b64encode(self.host.read_all_bytes(user["ini_path"])).decode()
                return result
            if current != user["new_sha256"]:
                result["backup"] = self.save_backup(user["ini_path"], int(request["backups"]))
                content = base64.b64decode(user["content_b64"])
                self.write_ini_file(user["ini_path"], content, user["new_sha256"])
            result["status"] = UserStatus.WRITTEN
        except PSError as exc:
            result["reason"] = str(exc)
        if (user.get("restart") or closed["closed"]) and exe is not None:
            task = self.start_in_user_session(name, exe, "/minimized", "start")
            try:
                self.wait_microsip_started(name, exe, int(request["exit_wait_ms"]))
            finally:
                self.remove_user_task(task)
            result["restarted"] = True
        return result

    def invoke_rollback(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "users": [self.restore_user_ini(user, request) for user in request["users"]]}

    def restore_user_ini(self, user: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        name = user["name"]
        result: dict[str, Any] = {"name": name, "status": UserStatus.FAILED}
        backups = self.get_backups(user["ini_path"])
        if not backups:
            result["status"] = UserStatus.NO_BACKUP
            return result
        exe = self.get_user_exe(name, request["install"])
        assert exe is not None
        closed = self.close_microsip(name, exe, int(request["exit_wait_ms"]))
        if not closed["ok"]:
            result["status"] = UserStatus.BUSY
            result["reason"] = closed["reason"]
            return result
        try:
            newest = backups[-1]
            content = self.host.read_all_bytes(newest)
            self.write_ini_file(user["ini_path"], content, self.host.file_hash(newest))
            result["status"] = UserStatus.RESTORED
            result["backup"] = newest
        except PSError as exc:
            result["reason"] = str(exc)
        if closed["closed"]:
            task = self.start_in_user_session(name, exe, "/minimized", "start")
            try:
                self.wait_microsip_started(name, exe, int(request["exit_wait_ms"]))
            finally:
                self.remove_user_task(task)
            result["restarted"] = True
        return result

    # health.ps1 -------------------------------------------------------------------------------

    def invoke_health(self, request: dict[str, Any]) -> dict[str, Any]:
        install = request.get("install") or {}
        users = []
        for user in request["users"]:
            entry = self.get_user_ini(user["name"], install)
            if entry["status"] == UserStatus.OK:
                exe = self.get_microsip_exe(entry["profile_path"], install)
                entry["exe"] = self.get_exe_info(exe)
                log = self.get_log_path(entry["profile_path"], install)
                entry["log"] = self.find_log_line(log, request.get("log_patterns") or [])
            users.append(entry)
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

    def find_log_line(self, path: str, patterns: list[str]) -> dict[str, Any]:
        file = self.host.path(path)
        result: dict[str, Any] = {"exists": file.is_file(), "line": None}
        if result["exists"] and patterns:
            text = file.read_text("utf-8")
            found = [line for line in text.splitlines() if any(re.search(p, line) for p in patterns)]
            result["line"] = found[-1] if found else None
        return result

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
            seen = self.find_log_line(log, request["ready_patterns"])["line"] if instance.ready else None
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
