"""Talking to the agent: JSON requests on stdin, one JSON reply line each on stdout.

A conversation costs one Send and one Receive per request on a shell already open, so a
host that needs no change costs Create, Command, Send, Receive and Delete. No Signal is
sent at the end: deleting the shell ends the processes it started (a Windows job object).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from provision.remote import agent_text, bootstrap_command
from provision.transport.base import PROTOCOL, SCRIPT, TIMEOUT, RemoteCommand, Transport, TransportError


class Agent:
    def __init__(self, transport: Transport, *, deadline: float) -> None:
        """deadline: time.monotonic() value after which every wait gives up."""
        self._transport = transport
        self._deadline = deadline
        self._command: RemoteCommand | None = None
        self._buffer = b""
        self._stderr = b""

    def start(self, first: dict[str, Any]) -> dict[str, Any]:
        """Start powershell.exe with the bootstrap; send the agent and the first request together."""
        command, arguments = bootstrap_command()
        self._command = self._transport.start(command, list(arguments))
        opening = json.dumps({"agent": agent_text()}) + "\n" + json.dumps(first) + "\n"
        self._command.send(opening.encode("utf-8"))
        return self._reply()

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._command is not None, "start() first"
        self._command.send((json.dumps(request) + "\n").encode("utf-8"))
        return self._reply()

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
            self._stderr += output.stderr
            if output.done and b"\n" not in self._buffer:
                message = stderr_message(self._stderr) or "no answer"
                raise TransportError(SCRIPT, f"PowerShell exited with status {output.exit_code}: {message}")
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            reply = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise TransportError(PROTOCOL, "the workstation's answer is not JSON") from None
        if not isinstance(reply, dict):
            raise TransportError(PROTOCOL, "the workstation's answer is not a JSON object")
        if not reply.get("ok"):
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
