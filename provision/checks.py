"""Health checks and smoke tests, per host: one agent conversation each, judged on the controller.

The agent reports facts (files, versions, processes, log lines); what counts as a pass, a
warning or a failure is decided here, so the rules are in one readable place and tested
without Windows. The log lines looked for are PJSIP's stock wording.
"""

from __future__ import annotations

import base64
import secrets as token
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from provision.errors import IniError
from provision.fleet import HOST_KIND_STATUS
from provision.ini import win32_value
from provision.jobs import HostJob, UserJob
from provision.plan import KeyChange, plan_target
from provision.push import PushOptions, by_user
from provision.remote import INSTALLED_EXE
from provision.remote.agent import Agent
from provision.remote.protocol import MAX_INI_BYTES, Op, UserStatus
from provision.render import RenderedIni
from provision.secrets import Secret
from provision.session import Connect, converse, install_of, recovered_note
from provision.state import PushRecord
from provision.transport.base import TIMEOUT, TransportError

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
PENDING = "pending"  # a check: the profiles changed since the last push; pushing would change this

# PJSIP's log wording (level 5). Confirm on a real MicroSIP log before relying on it.
REGISTERED = r"registration success, status=200"
REGISTRATION_FAILED = r"SIP registration failed, status=\d+|SIP registration error"
INVITE_SENT = r"Request msg INVITE/cseq="
HANGUP_SENT = r"Request msg (BYE|CANCEL)/cseq="

LOG_TAIL_BYTES = 256 * 1024  # health reads only the end of MicroSIP's log (it grows for weeks)

DAY = 86_400

BUILD_AGE_WARN = int(1.5 * 365 * DAY)  # MicroSIP 3.22 starts warning
BUILD_AGE_FAIL = int(2.5 * 365 * DAY)  # and refuses to start


@dataclass
class Check:
    name: str
    status: str
    detail: str = ""
    seconds: float | None = None


@dataclass
class CheckResult:
    host: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    method: str = ""  # smoke: how the test instance was launched
    attempts: int = 1
    kind: str = ""  # the kind of transport failure, when the host could not be worked on

    @property
    def status(self) -> str:
        """unreachable or aborted (the host could not be worked on), failed (a check failed),
        drifted (only drift: the workstation no longer holds what was pushed), pending (the
        profiles changed since the last push), warning, or ok."""
        if self.kind in HOST_KIND_STATUS:
            return HOST_KIND_STATUS[self.kind]
        statuses = {c.status for c in self.checks}
        if FAIL in statuses:
            only_drift = all(c.name.endswith(": drift") for c in self.checks if c.status == FAIL)
            return "drifted" if only_drift else "failed"
        if PENDING in statuses:
            return "pending"
        return "warning" if WARN in statuses else "ok"

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "warning", "pending")

    @property
    def reason(self) -> str:
        """The failed checks, or else the pending ones, or else the warnings, on one line."""
        for wanted in (FAIL, PENDING, WARN):
            found = [f"{c.name}: {c.detail}" if c.detail else c.name for c in self.checks if c.status == wanted]
            if found:
                return "; ".join(found)
        return ""

    def add(self, name: str, status: str, detail: str = "", seconds: float | None = None) -> None:
        self.checks.append(Check(name, status, detail, seconds))


def transport_failure(host: str, exc: TransportError) -> CheckResult:
    result = CheckResult(host, kind=exc.kind)
    result.add("winrm", FAIL, f"{exc.kind}: {exc}")
    return result


def _converse(
    job: HostJob, connect: Connect, options: PushOptions, talk: Callable[[Agent], CheckResult]
) -> CheckResult:
    """Retries like push; a host that cannot be worked on is one failed 'winrm' check."""
    result, tries = converse(job, connect, options.session, talk, lambda exc: transport_failure(job.host, exc))
    result.attempts = tries
    return result


# health ------------------------------------------------------------------------------------


def health_host(job: HostJob, connect: Connect, options: PushOptions, key: bytes, now: float) -> CheckResult:
    return _converse(job, connect, options, lambda agent: _health(agent, job, key, now))


def _health(agent: Agent, job: HostJob, key: bytes, now: float) -> CheckResult:
    clock = time.monotonic()
    request = {
        "op": Op.HEALTH,
        "install": install_of(job),
        "users": [{"name": u.user} for u in job.users],
        "max_ini_bytes": MAX_INI_BYTES,
        "hooks": sorted({p for u in job.users for p in u.target.resolved.profile.hooks.programs()}),
        "log_patterns": [REGISTERED, REGISTRATION_FAILED],
        "log_tail_bytes": LOG_TAIL_BYTES,
    }
    reply = agent.request(request)
    latency = time.monotonic() - clock
    result = CheckResult(job.host)
    result.add("winrm", PASS, f"reachable, answered in {latency * 1000:.0f} ms", latency)
    users = by_user(reply, [u.user for u in job.users])
    exes = [u["exe"] for u in users.values() if isinstance(u.get("exe"), dict)]
    _judge_exe(result, exes[0] if exes else None, now)
    hooks = {h["path"]: bool(h.get("exists")) for h in reply.get("hooks") or [] if isinstance(h, dict)}
    for path, present in sorted(hooks.items()):
        result.add(f"hook {path}", PASS if present else FAIL, "present" if present else "program not found")
    devices: set[str] | None = set(reply.get("devices") or [])
    if reply.get("devices_error") or reply.get("devices") is None:
        devices = None  # Win32_PnPEntity could not be asked (some Windows lack PNPClass)
        why = reply.get("devices_error") or "no answer"
        result.add("audio devices", WARN, f"could not be listed: {why}; the audio device checks are skipped")
    for user in job.users:
        _judge_user(result, user, users[user.user.casefold()], devices, key)
    recovered_checks(result, agent)
    return result


def recovered_checks(result: CheckResult, agent: Agent) -> None:
    """What the conversation's recover step did: MicroSIP an earlier run left closed."""
    for entry in agent.recovered:
        result.add(f"{entry.get('name')}: recovered", WARN if entry.get("restarted") else FAIL, recovered_note(entry))


def _judge_exe(result: CheckResult, exe: dict[str, Any] | None, now: float) -> None:
    if exe is None:
        result.add("microsip", SKIP, "no user to look for it with")
        return
    if not exe.get("exists"):
        result.add("microsip", FAIL, f"not installed: {exe.get('path')} not found")
        return
    result.add("microsip", PASS, f"version {exe.get('version') or 'unknown'}")
    built = exe.get("build_time")
    if not isinstance(built, int):
        result.add("build age", WARN, "build date unreadable")
        return
    age = now - built
    date = datetime.fromtimestamp(built, UTC).date().isoformat()
    detail = f"built {date}, {age / (365 * DAY):.1f} years ago"
    if age >= BUILD_AGE_FAIL:
        result.add("build age", FAIL, detail + "; MicroSIP refuses to start after 2.5 years")
    elif age >= BUILD_AGE_WARN:
        result.add("build age", WARN, detail + "; MicroSIP warns after 1.5 years")
    else:
        result.add("build age", PASS, detail)


def _judge_user(
    result: CheckResult, user: UserJob, entry: dict[str, Any], devices: set[str] | None, key: bytes
) -> None:
    name = user.user
    if entry.get("status") == UserStatus.NO_PROFILE:
        result.add(f"{name}: ini", WARN, "never logged on to this host")
        return
    if entry.get("status") in (UserStatus.REDIRECTED, UserStatus.FAILED, UserStatus.TOO_LARGE):
        result.add(f"{name}: ini", FAIL, str(entry.get("reason") or "cannot read the ini"))
        return
    if entry.get("warning"):
        result.add(f"{name}: place", WARN, str(entry["warning"]))
    if not entry.get("exists"):
        result.add(f"{name}: ini", FAIL, f"missing: {entry.get('ini_path')}")
        return
    result.add(f"{name}: ini", PASS, str(entry.get("ini_path")))
    content = base64.b64decode(entry.get("content_b64") or "")
    assert user.rendered is not None
    try:
        plan = plan_target(user.rendered, user.secrets, content, user.record, key)
    except IniError as exc:
        result.add(f"{name}: drift", FAIL, f"unreadable ini: {exc.message}")
        return
    if user.record is None:
        if plan.changes:
            result.add(f"{name}: drift", WARN, f"not pushed by provision yet ({len(plan.changes)} managed keys differ)")
        else:
            result.add(f"{name}: drift", PASS, "managed keys as the profile says (not pushed from here)")
    else:
        drifted, pending = split_changes(plan.changes, user.record, plan.managed_hash)
        if drifted:
            detail = f"{len(drifted)} managed key(s) changed on the workstation since the last push: {_keys(drifted)}"
            result.add(f"{name}: drift", FAIL, detail)
        else:
            result.add(f"{name}: drift", PASS, "managed keys as pushed")
        if pending:
            detail = f"the profiles changed since the last push: {len(pending)} key(s) to push: {_keys(pending)}"
            result.add(f"{name}: pending", PENDING, detail)
    running = bool(entry.get("running"))
    result.add(f"{name}: running", PASS if running else WARN, "MicroSIP running" if running else "MicroSIP not running")
    audio = user.target.resolved.profile.audio
    for label, device in (("input", audio.input), ("output", audio.output), ("ring", audio.ring)):
        if not device:
            continue
        if devices is None:
            result.add(f"{name}: audio {label}", SKIP, f"{device}: not checked (the audio devices could not be listed)")
            continue
        present = device in devices
        result.add(f"{name}: audio {label}", PASS if present else WARN, device + ("" if present else " not found"))
    if user.target.resolved.profile.settings.enableLog:
        line = (entry.get("log") or {}).get("line")
        if line is None:
            detail = f"no registration line in the last {LOG_TAIL_BYTES // 1024} KB of the log"
            result.add(f"{name}: registration", WARN, detail)
        elif "success" in line:
            result.add(f"{name}: registration", PASS, "registered")
        else:
            result.add(f"{name}: registration", FAIL, line.strip()[:200])


def split_changes(
    changes: Sequence[KeyChange], record: PushRecord, wanted_hash: str
) -> tuple[list[KeyChange], list[KeyChange]]:
    """Which differences are drift (the workstation changed: it no longer holds what was pushed)
    and which are pending (the profiles changed since: the workstation still holds the push)."""
    pushed = record.managed_values
    drifted: list[KeyChange] = []
    pending: list[KeyChange] = []
    for change in changes:
        key = (change.section.lower(), change.key.lower())
        if change.key == "(encoding)":
            drifted.append(change)  # rewritten in another encoding: not by MicroSIP, nor by provision
        elif change.note == "no longer managed" or (
            key[1] == "password" and change.note != "not set on the workstation"
        ):
            pending.append(change)  # the profile dropped the key, or the secret changed since
        elif key[1] == "password":
            drifted.append(change)  # pushed, and gone from the file
        elif pushed is None:  # a record from before the values were kept: the hashes tell
            (drifted if record.managed_hash == wanted_hash else pending).append(change)
        elif key not in pushed or win32_value(pushed[key]) == win32_value(change.old or ""):
            pending.append(change)  # newly managed, or still what was pushed
        else:
            drifted.append(change)
    return drifted, pending


def _keys(changes: Sequence[KeyChange]) -> str:
    keys = [f"[{c.section}] {c.key}" if c.section else c.key for c in changes]
    return ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")


# smoke -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmokePlan:
    """What the smoke test needs for one host: its test ini and how to drive it."""

    ini: bytes = field(repr=False)  # secrets included: only ever sent, never shown
    number: str | None
    ready_seconds: int
    step_seconds: int


def smoke_commands(number: str | None) -> list[dict[str, Any]]:
    """One switch per launch, in this order; never /reset, /resetnoask or a switch a version lacks."""
    commands: list[dict[str, Any]] = []
    if number:
        commands.append({"name": "dial", "argument": number, "expect": [INVITE_SENT]})
    commands.append({"name": "answer", "argument": "/answer", "expect": None})
    commands.append({"name": "hangupall", "argument": "/hangupall", "expect": [HANGUP_SENT] if number else None})
    commands.append({"name": "exit", "argument": "/exit", "exits": True})
    return commands


def smoke_host(job: HostJob, connect: Connect, options: PushOptions, plan: SmokePlan) -> CheckResult:
    exe = job.install.exe or INSTALLED_EXE
    if "%" in exe:
        result = CheckResult(job.host)
        result.add("locate", FAIL, f"smoke needs a fixed microsip.exe path, not {exe}")
        return result
    folder = f"C:\\ProgramData\\provision\\smoke-{token.token_hex(4)}"
    method = "switch" if job.install.ini_switch else "copy"
    request = {
        "op": Op.SMOKE,
        "exe": exe,
        "method": method,
        "folder": folder,
        "ini_b64": base64.b64encode(plan.ini).decode("ascii"),
        "ready_ms": plan.ready_seconds * 1000,
        "step_ms": plan.step_seconds * 1000,
        "settle_ms": 1000,
        "ready_patterns": [REGISTERED, REGISTRATION_FAILED],
        "commands": smoke_commands(plan.number),
    }
    result = _converse(
        job, connect, options, lambda agent: judge_smoke(job.host, agent.request(request), request, plan)
    )
    result.method = method
    if result.kind == TIMEOUT:
        _cleanup_after_timeout(job, connect, options, folder, result)
    return result


def judge_smoke(host: str, reply: dict[str, Any], request: dict[str, Any], plan: SmokePlan) -> CheckResult:
    result = CheckResult(host, method=request["method"])
    steps = {s["name"]: s for s in reply.get("steps") or [] if isinstance(s, dict)}
    exe = reply.get("exe") or {}
    expected = ["locate", "prepare", "start", *(c["name"] for c in request["commands"])]
    for name in expected:
        step = steps.get(name)
        if step is None:
            result.add(name, SKIP, "not reached")
            continue
        seconds = (step.get("ms") or 0) / 1000 or None
        status, detail = _judge_step(name, step, exe, plan)
        result.add(name, status, detail, seconds)
    if "error" in steps:
        result.add("error", FAIL, str(steps["error"].get("reason") or "script error"))
    cleanup = reply.get("cleanup") or {}
    if cleanup.get("ok"):
        result.add("cleanup", PASS, "test copy stopped and removed")
    else:
        result.add("cleanup", FAIL, f"could not remove the test copy: {cleanup.get('reason') or 'unknown'}")
    return result


def _judge_step(name: str, step: dict[str, Any], exe: dict[str, Any], plan: SmokePlan) -> tuple[str, str]:
    line = step.get("line")
    alive = step.get("alive")
    if step.get("status") in (PASS, FAIL):
        detail = str(step.get("reason") or "")
        if name == "locate" and step["status"] == PASS:
            built = exe.get("build_time")
            date = datetime.fromtimestamp(built, UTC).date().isoformat() if isinstance(built, int) else "unknown"
            detail = f"{exe.get('path')}, version {exe.get('version') or 'unknown'}, built {date}"
        return step["status"], detail
    if name == "start":
        if line is None:
            why = "exited" if alive is False else "no registration in its log (a modal dialog?)"
            return FAIL, f"not ready within {plan.ready_seconds} s: {why}"
        if "success" in line:
            return PASS, "started minimized with its own ini; registered"
        return FAIL, f"registration failed: {line.strip()[:200]}"
    if name == "exit":
        if alive:
            return FAIL, f"still running {plan.step_seconds} s after /exit (stopped by cleanup)"
        return PASS, "exited"
    if alive is False:
        return FAIL, f"MicroSIP exited after {name}"
    if name == "dial":
        return (PASS, "INVITE sent") if line else (FAIL, f"no INVITE in the log within {plan.step_seconds} s")
    if name == "hangupall" and plan.number:
        return (PASS, "hang-up sent") if line else (FAIL, f"no BYE or CANCEL in the log within {plan.step_seconds} s")
    return PASS, "still running"


def _cleanup_after_timeout(
    job: HostJob, connect: Connect, options: PushOptions, folder: str, result: CheckResult
) -> None:
    """The agent did not answer: its shell is gone, and with it the test instance; remove the folder."""

    def talk(agent: Agent) -> tuple[str, str]:
        cleanup = agent.request({"op": Op.SMOKE_CLEANUP, "folder": folder}).get("cleanup") or {}
        if cleanup.get("ok"):
            return PASS, "removed after the timeout"
        return FAIL, str(cleanup.get("reason"))

    session = replace(options.session, timeout=min(options.timeout, 60), retries=0)
    (status, detail), _ = converse(
        job, connect, session, talk, lambda exc: (FAIL, f"could not clean up after the timeout: {exc}")
    )
    result.add("cleanup", status, detail)


def smoke_ini(rendered: RenderedIni, secrets: dict[str, Secret]) -> bytes:
    from provision.output import render_file

    return render_file(rendered, secrets).content
