"""Talking to the agent: JSON requests on stdin, one JSON reply line each on stdout.

The first request starts powershell.exe with the bootstrap and goes in the same Send as the
agent script. A conversation then costs one Send and one Receive per request, so a host that
needs no change costs Create, Command, Send, Receive and Delete. No Signal is sent at the
end: deleting the shell ends the processes it started (a Windows job object).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, cast

from provision.remote import agent_text, bootstrap_command
from provision.remote.protocol import Facts, Preflight
from provision.transport.base import PROTOCOL, SCRIPT, TIMEOUT, RemoteCommand, Transport, TransportError

ABORTED = "aborted"

DEFAULT_ENVELOPE_KB = 500  # WinRM's MaxEnvelopeSizekb unless an administrator changed it
ENVELOPE_OVERHEAD = 8 * 1024  # the SOAP envelope around a Send's data, with room to spare
MAX_ANSWER_BYTES = 256 * 1024 * 1024  # one answer line; far above what any request returns


# What a host lacks, as a person reads it, and the one-line fix. {name} is a fact's value.
PREFLIGHT: dict[str, tuple[str, str]] = {
    Preflight.LANGUAGE_MODE: (
        "PowerShell runs in {language_mode} mode here (an AppLocker or WDAC policy), which stops the agent",
        "exempt the WinRM administrators from the policy so their PowerShell runs in FullLanguage mode",
    ),
    Preflight.POWERSHELL: (
        "PowerShell {powershell} is too old for the agent",
        "install Windows Management Framework 5.1 (PowerShell 5.1)",
    ),
    Preflight.NOT_ADMIN: (
        "the WinRM account is not an administrator on this host",
        "add it, or a group it is in, to the host's local Administrators group",
    ),
    Preflight.UAC_FILTERED: (
        "the WinRM account is a local administrator, but UAC filters its token over the network",
        "use a domain account in the local Administrators group, or set the DWORD LocalAccountTokenFilterPolicy=1 "
        "under HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System",
    ),
    Preflight.TASK_SCHEDULER: (
        "Task Scheduler is {task_scheduler} here, and MicroSIP is closed and started through it",
        "Set-Service Schedule -StartupType Automatic; Start-Service Schedule",
    ),
}


# A line of the conversation, for a transcript: (direction, text), direction "send" or "receive".
Recorder = Callable[[str, str], None]
SECRET_FIELDS = frozenset({"content_b64", "ini_b64"})  # an ini, with its passwords


def masked(line: str) -> str:
    """A request or reply line as a transcript shows it: every ini by size and digest, any
    password field masked. Lines that are not JSON objects are returned as they are."""
    try:
        data = json.loads(line)
    except ValueError:
        return line
    return json.dumps(_mask(data), ensure_ascii=False)


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        shown = {}
        for key, item in value.items():
            if key in SECRET_FIELDS and isinstance(item, str):
                raw = base64.b64decode(item + "=" * (-len(item) % 4), validate=False)
                shown[key] = f"<{len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()[:16]}>"
            elif "password" in key.lower():
                shown[key] = "********"
            else:
                shown[key] = _mask(item)
        return shown
    if isinstance(value, list):
        return [_mask(item) for item in value]
    return value


class PreflightError(TransportError):
    """The host lacks something the agent needs (its kind is a Preflight word); facts says what was found."""

    def __init__(self, kind: str, reason: str, facts: Facts) -> None:
        super().__init__(kind, reason)
        self.facts = facts


def preflight_error(reply: dict[str, Any]) -> PreflightError:
    kind = str(reply.get("preflight"))
    facts = reply.get("facts") if isinstance(reply.get("facts"), dict) else {}
    assert isinstance(facts, dict)
    what, fix = PREFLIGHT.get(kind, ("the agent cannot work on this host ({kind})", "see provision doctor"))
    values = {name: facts.get(name, "unknown") for name in ("language_mode", "powershell", "task_scheduler")}
    reason = f"{what.format(kind=kind, **values)}. Fix: {fix}"
    return PreflightError(kind, reason, cast(Facts, {k: v for k, v in facts.items() if k in Facts.__annotations__}))


def send_limit(max_envelope_kb: int | None) -> int:
    """The most stdin bytes one Send may carry on a host: WinRS base64-encodes them into the
    envelope, which must stay within MaxEnvelopeSizekb (counted here in 1000s, to be safe)."""
    envelope = (max_envelope_kb or DEFAULT_ENVELOPE_KB) * 1000
    return max(1024, (envelope - ENVELOPE_OVERHEAD) * 3 // 4)


@cache
def agent_digest() -> str:
    return hashlib.sha256(agent_text().encode("utf-8")).hexdigest()[:16]


@cache
def agent_line() -> str:
    """The agent as the bootstrap reads it: base64 of its UTF-8 text, one line."""
    return base64.b64encode(agent_text().encode("utf-8")).decode("ascii")


class Agent:
    def __init__(
        self,
        transport: Transport,
        *,
        deadline: float,
        abort: threading.Event | None = None,
        recover: Mapping[str, Any] | None = None,
        max_send: int = send_limit(None),
        recorder: Recorder | None = None,
    ) -> None:
        """deadline: time.monotonic() value after which every wait gives up. abort: once set, no
        new piece of work is asked for (a request already sent is still answered). recover: a
        request sent before the first one, in the same Send; its reply (held back by the agent
        and written with the first one's) is kept in `recovered`. max_send: the most bytes one
        Send carries (send_limit of the host's MaxEnvelopeSizekb); longer lines go in pieces."""
        self._transport = transport
        self._deadline = deadline
        transport.set_deadline(deadline)  # every network wait of the conversation ends by then
        self._abort = abort
        self._recover = recover
        self._max_send = max_send
        self._recorder = recorder
        self._command: RemoteCommand | None = None
        self._buffer = b""
        self._stderr = b""
        self.recovered: list[dict[str, Any]] = []

    def request(self, request: Mapping[str, Any], *, finishing: bool = False) -> dict[str, Any]:
        """Ask one thing and wait for its answer. The first request starts the agent.

        finishing: the request completes work already begun on the host (restarting what was
        closed), so it is sent even when the run is being aborted."""
        if self._abort is not None and self._abort.is_set() and not finishing:
            raise TransportError(ABORTED, "stopped before this step (interrupted twice)")
        lines = [json.dumps(request)]
        first = self._command is None
        if first:
            command, arguments = bootstrap_command()
            self._command = self._transport.start(command, list(arguments))
            lines = [agent_line(), *([json.dumps(self._recover)] if self._recover else []), *lines]
            self._record("send", f"<the agent: {len(agent_text())} characters, sha256 {agent_digest()}>")
        for line in lines[1:] if first else lines:
            self._record("send", line)
        data = ("\n".join(lines) + "\n").encode("utf-8")
        for start in range(0, len(data), self._max_send):
            self._send(data[start : start + self._max_send])
        if first and self._recover:
            users = self._reply().get("users")
            self.recovered = [u for u in users if isinstance(u, dict)] if isinstance(users, list) else []
        return self._reply()

    def _record(self, direction: str, text: str) -> None:
        if self._recorder is not None:
            self._recorder(direction, masked(text))

    def _send(self, data: bytes) -> None:
        assert self._command is not None
        try:
            self._command.send(data)
        except TransportError as exc:
            if "413" in str(exc):  # the host's MaxEnvelopeSizekb is smaller than we were told
                raise TransportError(
                    exc.kind,
                    f"{exc}: the request was larger than the host accepts; set connection.max_envelope_kb "
                    "in the inventory to its WinRM MaxEnvelopeSizekb",
                ) from None
            raise

    def extend(self, seconds: float) -> None:
        """Give this conversation more time (a host with more users to change needs more)."""
        self._deadline += seconds
        self._transport.set_deadline(self._deadline)

    def remaining(self) -> float:
        """Seconds left before this conversation's deadline."""
        return self._deadline - time.monotonic()

    def close(self) -> None:
        """Done talking. The agent ends with the shell (Delete), which costs no extra round trip."""
        self._command = None

    def _reply(self) -> dict[str, Any]:
        assert self._command is not None
        while b"\n" not in self._buffer:
            if time.monotonic() > self._deadline:
                raise TransportError(TIMEOUT, "timed out waiting for the workstation to answer")
            output = self._command.receive()
            self._buffer += output.stdout
            if len(self._buffer) > MAX_ANSWER_BYTES:
                raise TransportError(PROTOCOL, "the workstation's answer is too large")
            self._stderr += output.stderr
            if output.done and b"\n" not in self._buffer:
                message = stderr_message(self._stderr) or "no answer"
                raise TransportError(SCRIPT, f"PowerShell exited with status {output.exit_code}: {message}")
        line, _, self._buffer = self._buffer.partition(b"\n")
        self._record("receive", line.decode("utf-8", "replace").rstrip("\r"))
        try:
            reply = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise TransportError(PROTOCOL, "the workstation's answer is not JSON") from None
        if not isinstance(reply, dict):
            raise TransportError(PROTOCOL, "the workstation's answer is not a JSON object")
        if not reply.get("ok"):
            if reply.get("preflight"):
                raise preflight_error(reply)
            raise TransportError(SCRIPT, f"script error: {reply.get('error', 'unknown')}")
        return reply


_CLIXML_ERROR = re.compile(r'<S S="Error">(.*?)</S>', re.DOTALL)


def stderr_message(stderr: bytes) -> str:
    """The first line of a PowerShell error, from CLIXML or plain text."""
    text = stderr.decode("utf-8", errors="replace")
    if text.startswith("#< CLIXML"):
        parts = _CLIXML_ERROR.findall(text)
        text = "".join(parts).replace("_x000D_", "").replace("_x000A_", "\n")
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""
