"""The small interface a transport offers: start a command, talk to it on stdin/stdout, close.

Every failure is a TransportError with a kind (what went wrong, for the report and the exit
status) and a one-line reason a person understands. No credential ever goes into one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from provision.errors import ProvisionError

# Kinds of failure, as the report shows them.
UNREACHABLE = "unreachable"  # no connection at all: off, no route, no name
REFUSED = "refused"  # nothing listens on the port
RESET = "reset"  # the connection was cut in the middle of a conversation
TLS = "tls"
AUTH = "auth"
TIMEOUT = "timeout"
FAULT = "fault"
SCRIPT = "script"
PROTOCOL = "protocol"


class TransportError(ProvisionError):
    def __init__(self, kind: str, reason: str, *, transient: bool = False) -> None:
        super().__init__(reason)
        self.kind = kind
        self.transient = transient


@dataclass(frozen=True)
class Output:
    stdout: bytes
    stderr: bytes
    done: bool
    exit_code: int | None


class RemoteCommand(Protocol):
    def send(self, data: bytes, *, end: bool = False) -> None: ...

    def receive(self) -> Output:
        """One round of output: what arrived, or nothing if the server's wait expired."""
        ...


class Transport(Protocol):
    def start(self, command: str, arguments: list[str]) -> RemoteCommand: ...

    def set_deadline(self, deadline: float) -> None:
        """Every network wait from now on ends by `deadline`, a time.monotonic() value: a reply
        that has not fully arrived by then is a TIMEOUT failure, however slowly it trickles."""
        ...

    def close(self) -> None: ...
