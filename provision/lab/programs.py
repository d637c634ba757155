"""What runs when the lab's WinRM shell is given a command line.

Only provision's own bootstrap is recognised, by its exact text; its agent is checked the
same way. Anything else is refused loudly, as a PowerShell error with exit status 1, so a
change to the scripts that the lab does not know shows up at once in the tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import shutil
import time
from datetime import UTC, datetime
from typing import Any

from provision.lab.host import SimProcess, SimulatedHost, pe_build_time
from provision.remote import (
    CMD_LIMIT,
    CREATE_PROCESS_LIMIT,
    INSTALLED_EXE,
    POWERSHELL,
    POWERSHELL_FLAGS,
    agent_text,
    script,
)


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
        if text == script("bootstrap.ps1"):
            agent = AgentProgram(host)
            agent.ready_at = time.monotonic() + host.faults.powershell_start_ms / 1000
            return agent
        program.fail(f"lab: refused an unrecognised PowerShell script (sha256 {_digest(text)})")
        return program
    program.fail(f"lab: refused a command it does not recognise: {line[:80]}")
    return program


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class AgentProgram(Program):
    """provision's agent: the first stdin line must be the exact agent text; then JSON requests."""

    def __init__(self, host: SimulatedHost) -> None:
        super().__init__()
        self.host = host
        self._pending = b""
        self._trusted = False
        self.started: list[int] = []
        self.hung = False  # processes started in the shell: they end with it

    def feed(self, data: bytes, end: bool) -> None:
        if self.done:
            return
        if self.host.faults.hang or self.hung:
            return  # a command that never answers
        self._pending += data
        while b"\n" in self._pending and not self.done:
            line, _, self._pending = self._pending.partition(b"\n")
            self._line(line)
        if end:
            self.finish(0)

    def _line(self, line: bytes) -> None:
        try:
            message = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.fail("lab: standard input is not JSON")
            return
        if not self._trusted:
            text = message.get("agent") if isinstance(message, dict) else None
            if text != agent_text():
                self.fail(f"lab: refused an unrecognised agent script (sha256 {_digest(str(text))})")
                return
            self._trusted = True
            return
        with self.host.lock:
            try:
                reply = handle(self.host, message, self.started)
            except _Hang:
                self.hung = True
                return
        self.stdout += (json.dumps(reply) + "\n").encode("utf-8")

    def terminate(self) -> None:
        """The shell is deleted: its job object ends every process started in it."""
        with self.host.lock:
            for pid in self.started:
                self.host.processes.pop(pid, None)
        self.finish(1)


def handle(host: SimulatedHost, request: dict[str, Any], started: list[int] | None = None) -> dict[str, Any]:
    """The operations of the agent's scripts, on the simulated host.

    `started` collects the processes an operation starts in the WinRM session, which end with
    the shell (a Windows job object)."""
    started = [] if started is None else started
    op = request.get("op")
    try:
        if op == "discover":
            return {"ok": True, "users": [_discover(host, u, request) for u in request["users"]]}
        if op == "apply":
            return {"ok": True, "users": [_apply(host, u, request) for u in request["users"]]}
        if op == "rollback":
            return {"ok": True, "users": [_rollback(host, u, request) for u in request["users"]]}
        if op == "health":
            return _health(host, request)
        if op == "smoke":
            return _smoke(host, request, started)
        if op == "smoke-cleanup":
            return {"ok": True, "cleanup": _remove_smoke(host, None, request["folder"])}
    except (KeyError, TypeError) as exc:
        return {"ok": False, "error": f"bad request: {exc}"}
    return {"ok": False, "error": "unknown operation"}


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _ini_path(host: SimulatedHost, name: str, install: dict[str, Any]) -> str | None:
    profile = host.profile_path(name)
    if profile is None:
        return None
    if install.get("mode") == "portable":
        exe = str(install["exe"]).replace("%USERPROFILE%", profile)
        return exe.rsplit(".", 1)[0] + ".ini"
    return profile + "\\AppData\\Roaming\\MicroSIP\\microsip.ini"


def _discover(host: SimulatedHost, user: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    name = user["name"]
    path = _ini_path(host, name, request.get("install") or {})
    if path is None:
        return {"name": name, "status": "no-profile"}
    entry: dict[str, Any] = {"name": name, "status": "ok", "ini_path": path}
    file = host.path(path)
    entry["exists"] = file.is_file()
    if entry["exists"]:
        content = file.read_bytes()
        entry["content_b64"] = base64.b64encode(content).decode()
        entry["sha256"] = _sha(content)
    entry["running"] = bool(host.user_microsips(name))
    return entry


def _close(host: SimulatedHost, name: str) -> dict[str, Any]:
    running = host.user_microsips(name)
    if not running:
        return {"ok": True, "was_running": False, "exe": None}
    exe = running[0].exe
    host.run_in_session(name, exe, "/exit")
    for process in host.user_microsips(name):
        host.stop_process(process.pid)
    if host.user_microsips(name):
        return {"ok": False, "was_running": True, "exe": exe, "reason": "MicroSIP did not close"}
    return {"ok": True, "was_running": True, "exe": exe}


def _write(host: SimulatedHost, path: str, content: bytes, digest: str) -> None:
    if host.faults.disk_full:
        raise OSError("There is not enough space on the disk.")
    file = host.path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    temp = file.with_name(file.name + ".provision-tmp")
    temp.write_bytes(content)
    temp.replace(file)
    if _sha(file.read_bytes()) != digest:
        raise OSError("the file read back does not match what was written")


def _backups(host: SimulatedHost, path: str) -> list[Any]:
    file = host.path(path)
    if not file.parent.is_dir():
        return []
    prefix = file.name.casefold() + ".provision-"
    return sorted(
        (p for p in file.parent.iterdir() if p.name.casefold().startswith(prefix) and p.name.endswith(".bak")),
        key=lambda p: p.name,
    )


def _save_backup(host: SimulatedHost, path: str, keep: int) -> str | None:
    file = host.path(path)
    if not file.is_file():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")[:-3] + "Z"
    backup = file.with_name(f"{file.name}.provision-{stamp}.bak")
    backup.write_bytes(file.read_bytes())
    existing = _backups(host, path)
    for old in existing[: max(0, len(existing) - keep)]:
        old.unlink()
    return f"{path}.provision-{stamp}.bak"


def _apply(host: SimulatedHost, user: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    name = user["name"]
    result: dict[str, Any] = {"name": name, "status": "failed"}
    closed: dict[str, Any] = {"ok": True, "was_running": False, "exe": None}
    try:
        if user.get("close"):
            closed = _close(host, name)
            if not closed["ok"]:
                return {**result, "status": "busy", "reason": closed["reason"]}
        file = host.path(user["ini_path"])
        current = _sha(file.read_bytes()) if file.is_file() else None
        if current not in (user.get("expected_sha256"), user["new_sha256"]):
            result.update(status="reread", sha256=current, closed=closed["was_running"], exe=closed["exe"])
            if current is not None:
                result["content_b64"] = base64.b64encode(file.read_bytes()).decode()
            return result
        if current != user["new_sha256"]:
            result["backup"] = _save_backup(host, user["ini_path"], int(request["backups"]))
            _write(host, user["ini_path"], base64.b64decode(user["content_b64"]), user["new_sha256"])
        result["status"] = "written"
    except OSError as exc:
        result["reason"] = str(exc)
    if user.get("restart") or closed["was_running"]:
        exe = closed["exe"] or user.get("exe")
        if exe:
            host.run_in_session(name, exe, "/minimized")
            result["restarted"] = True
    return result


def _rollback(host: SimulatedHost, user: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    name = user["name"]
    result: dict[str, Any] = {"name": name, "status": "failed"}
    backups = _backups(host, user["ini_path"])
    if not backups:
        return {**result, "status": "no-backup"}
    closed = _close(host, name)
    if not closed["ok"]:
        return {**result, "status": "busy", "reason": closed["reason"]}
    try:
        content = backups[-1].read_bytes()
        _write(host, user["ini_path"], content, _sha(content))
        result.update(status="restored", backup=backups[-1].name)
    except OSError as exc:
        result["reason"] = str(exc)
    if closed["was_running"]:
        host.run_in_session(name, closed["exe"], "/minimized")
        result["restarted"] = True
    return result


# health and smoke --------------------------------------------------------------------------


def _exe_info(host: SimulatedHost, path: str) -> dict[str, Any]:
    file = host.path(path)
    info: dict[str, Any] = {"path": path, "exists": file.is_file()}
    if info["exists"]:
        info["version"] = host.microsip_version
        info["build_time"] = pe_build_time(file.read_bytes()[:4096])
    return info


def _expand(path: str, profile: str) -> str:
    return path.replace("%USERPROFILE%", profile)


def _log_line(host: SimulatedHost, path: str, patterns: list[str]) -> dict[str, Any]:
    file = host.path(path)
    result: dict[str, Any] = {"exists": file.is_file(), "line": None}
    if result["exists"] and patterns:
        found = [line for line in file.read_text("utf-8").splitlines() if any(re.search(p, line) for p in patterns)]
        result["line"] = found[-1] if found else None
    return result


def _health(host: SimulatedHost, request: dict[str, Any]) -> dict[str, Any]:
    install = request.get("install") or {}
    users = []
    for user in request["users"]:
        entry = _discover(host, user, request)
        profile = host.profile_path(user["name"])
        if profile is not None:
            exe = _expand(install.get("exe") or INSTALLED_EXE, profile)
            entry["exe"] = _exe_info(host, exe)
            if install.get("mode") == "portable":
                log = exe[: -len(".exe")] + "_log.txt"
            else:
                log = profile + "\\AppData\\Local\\MicroSIP\\microsip_log.txt"
            entry["log"] = _log_line(host, log, request.get("log_patterns") or [])
        users.append(entry)
    hooks = [{"path": p, "exists": host.path(p).is_file()} for p in request.get("hooks") or []]
    return {"ok": True, "users": users, "hooks": hooks, "devices": list(host.audio_devices)}


def _smoke(host: SimulatedHost, request: dict[str, Any], started: list[int]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    exe = _exe_info(host, request["exe"])
    folder = request["folder"]
    instance = None

    def step(name: str, status: str, reason: str = "", line: str | None = None, alive: bool | None = None) -> None:
        steps.append({"name": name, "status": status, "reason": reason, "line": line, "alive": alive, "ms": 0})

    try:
        if not exe["exists"]:
            step("locate", "fail", "microsip.exe not found")
            return _smoke_reply(host, exe, request, steps, instance, folder)
        step("locate", "pass")
        host.path(folder).mkdir(parents=True, exist_ok=True)
        ini = folder + "\\provision-smoke.ini"
        if request["method"] == "copy":
            test_exe = folder + "\\provision-smoke.exe"
            host.path(test_exe).write_bytes(host.path(request["exe"]).read_bytes())
            launch = "/minimized"
        else:
            test_exe, launch = request["exe"], "/i:" + ini
        log = folder + "\\provision-smoke_log.txt"
        if host.faults.disk_full:
            raise OSError("There is not enough space on the disk.")
        host.path(ini).write_bytes(base64.b64decode(request["ini_b64"]))
        step("prepare", "pass")
        instance = host.launch(test_exe, launch, ini, log)
        assert instance is not None, "a test instance was already running"
        started.append(instance.pid)
        if host.faults.smoke_hang:
            raise _Hang
        seen = _log_line(host, log, request["ready_patterns"])["line"] if instance.ready else None
        step("start", "done", line=seen, alive=instance.pid in host.processes)
        if seen is None:
            return _smoke_reply(host, exe, request, steps, instance, folder)
        offset = len(host.path(log).read_text("utf-8"))
        for command in request["commands"]:
            host.launch(test_exe, command["argument"], ini, log)
            alive = instance.pid in host.processes
            if command.get("exits"):
                step(command["name"], "done", alive=alive)
                continue
            if command.get("expect") is None:
                step(command["name"], "done", alive=alive)
                if not alive:
                    break
                continue
            text = host.path(log).read_text("utf-8")
            new, offset = text[offset:], len(text)
            found = [line for line in new.splitlines() if any(re.search(p, line) for p in command["expect"])]
            step(command["name"], "done", line=found[0] if found else None, alive=alive)
            if not alive:
                break
    except OSError as exc:
        step("error", "fail", str(exc))
    return _smoke_reply(host, exe, request, steps, instance, folder)


class _Hang(Exception):  # noqa: N818 - not an error: the operation just stops answering
    pass


def _smoke_reply(
    host: SimulatedHost,
    exe: dict[str, Any],
    request: dict[str, Any],
    steps: list[dict[str, Any]],
    instance: SimProcess | None,
    folder: str,
) -> dict[str, Any]:
    cleanup = _remove_smoke(host, instance, folder)
    return {"ok": True, "exe": exe, "method": request["method"], "steps": steps, "cleanup": cleanup}


def _remove_smoke(host: SimulatedHost, instance: SimProcess | None, folder: str) -> dict[str, Any]:
    if instance is not None and instance.pid in host.processes:
        host.stop_process(instance.pid)
    prefix = folder.casefold() + "\\"
    for process in list(host.processes.values()):
        if not process.user and process.exe.casefold().startswith(prefix):
            host.stop_process(process.pid)
    target = host.path(folder)
    if target.exists():
        shutil.rmtree(target)
    return {"ok": True, "reason": None}
