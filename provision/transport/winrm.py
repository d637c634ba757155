"""WinRM through pywinrm's Protocol: one shell per host, commands with stdin, our own deadlines.

pywinrm's exceptions are not one tree and network failures arrive as requests exceptions,
so they are caught by name here and turned into TransportError, with a reason a person
understands and never a credential. get_command_output would retry OperationTimeout
forever; receive() does one round and the caller's deadline decides.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import requests
import urllib3
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from provision.remote import check_command_line
from provision.secrets import Secret
from provision.transport.base import (
    AUTH,
    FAULT,
    PROTOCOL,
    REFUSED,
    RESET,
    TIMEOUT,
    TLS,
    UNREACHABLE,
    Output,
    TransportError,
)

T = TypeVar("T")

# Fault codes (WSManFault @Code or MSFT_WmiError error_Code) worth a retry on a new shell.
ERROR_BUSY = 170
SHELL_NOT_FOUND = 2150858843
QUOTA_MAX_OPERATIONS = 2150859174


@dataclass(frozen=True)
class WinRMSettings:
    address: str
    scheme: str
    port: int
    auth: str
    username: str
    password: Secret = field(repr=False)
    verify_tls: bool = True
    ca_bundle: str | None = None
    operation_timeout: int = 20

    @property
    def endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{self.port}/wsman"


class WinRMTransport:
    def __init__(self, settings: WinRMSettings) -> None:
        if settings.auth == "basic" and settings.scheme != "https":
            raise TransportError(AUTH, "basic auth is allowed only over https")
        self.settings = settings
        self._protocol: Protocol | None = None
        self._shell: str | None = None

    def open(self) -> None:
        s = self.settings
        if not s.verify_tls:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        try:
            self._protocol = Protocol(
                s.endpoint,
                transport=s.auth,  # type: ignore[arg-type]  # checked by the inventory model
                username=s.username,
                password=s.password.reveal(),
                server_cert_validation="validate" if s.verify_tls else "ignore",
                # A CA bundle of the inventory's, or the system's; never REQUESTS_CA_BUNDLE by surprise.
                ca_trust_path=s.ca_bundle if s.ca_bundle else None,  # type: ignore[arg-type]
                operation_timeout_sec=s.operation_timeout,
                read_timeout_sec=s.operation_timeout + 10,
                proxy=None,
            )
        except WinRMError as exc:
            raise TransportError(PROTOCOL, f"cannot set up WinRM: {type(exc).__name__}") from None
        # No proxy (proxy=None above), so requests need not scan the environment for one on every
        # request: about a tenth of the controller's time per host. (Over HTTP with NTLM this
        # also sets up message encryption, which is a request.)
        self._call(lambda p: setattr(p.transport.build_session(), "trust_env", False))
        self._shell = self._call(lambda p: p.open_shell(codepage=65001, noprofile=True))

    def start(self, command: str, arguments: list[str]) -> WinRMCommand:
        check_command_line(command, arguments)
        if self._shell is None:
            self.open()
        shell = self._shell
        assert shell is not None
        command_id = self._call(lambda p: p.run_command(shell, command, arguments, console_mode_stdin=False))
        return WinRMCommand(self, shell, command_id)

    def close(self) -> None:
        protocol, shell = self._protocol, self._shell
        self._shell = None
        if protocol is not None and shell is not None:
            # If this fails the shell times out on its own on the workstation.
            with contextlib.suppress(
                WinRMError, WinRMTransportError, WinRMOperationTimeoutError, requests.RequestException
            ):
                protocol.close_shell(shell)

    def _call(self, action: Callable[[Protocol], T]) -> T:
        assert self._protocol is not None
        try:
            return action(self._protocol)
        except Exception as exc:  # noqa: BLE001 - translated below, re-raised if not ours
            raise translate(exc, self.settings) from None


class WinRMCommand:
    def __init__(self, transport: WinRMTransport, shell: str, command_id: str) -> None:
        self._transport = transport
        self._shell = shell
        self._id = command_id

    def send(self, data: bytes, *, end: bool = False) -> None:
        self._transport._call(lambda p: p.send_command_input(self._shell, self._id, data, end))

    def receive(self) -> Output:
        try:
            stdout, stderr, code, done = self._transport._call(
                lambda p: p.get_command_output_raw(self._shell, self._id)
            )
        except TransportError as exc:
            if exc.kind == TIMEOUT and exc.transient:
                return Output(b"", b"", False, None)  # the server's wait ran out; try again
            raise
        return Output(stdout, stderr, done, code if done else None)


def translate(exc: BaseException, settings: WinRMSettings) -> TransportError:
    """One line for a person, a kind for the report; never the password."""
    where = f"{settings.address}:{settings.port}"
    if isinstance(exc, WinRMOperationTimeoutError):
        return TransportError(TIMEOUT, "WinRM operation timed out", transient=True)
    if isinstance(exc, InvalidCredentialsError):
        return TransportError(AUTH, f"credentials rejected by {where} ({settings.auth})")
    if isinstance(exc, WSManFaultError):
        code = exc.wmierror_code or exc.wsman_fault_code
        transient = code in (ERROR_BUSY, SHELL_NOT_FOUND, QUOTA_MAX_OPERATIONS)
        reason = (exc.reason or "").strip().split("\n")[0][:200]
        return TransportError(FAULT, f"WinRM fault {code}: {reason}", transient=transient)
    if isinstance(exc, WinRMTransportError):
        if exc.code == 401:
            return TransportError(AUTH, f"credentials rejected by {where} ({settings.auth})")
        return TransportError(PROTOCOL, f"HTTP {exc.code} from {where}")
    if isinstance(exc, requests.exceptions.SSLError):
        detail = "certificate not trusted" if "CERTIFICATE_VERIFY_FAILED" in str(exc) else "handshake failed"
        return TransportError(TLS, f"TLS {detail} for {where} (use the inventory's ca_bundle)")
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return TransportError(TIMEOUT, f"no answer from {where} within {settings.operation_timeout + 10} s")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return TransportError(UNREACHABLE, f"cannot reach {where} (connect timed out)")
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc)
        if "Connection refused" in text or "Errno 111" in text:
            return TransportError(REFUSED, f"connection refused by {where} (is the WinRM listener on?)")
        if "reset" in text.lower() or "aborted" in text.lower():
            return TransportError(RESET, f"connection to {where} was reset", transient=True)
        return TransportError(UNREACHABLE, f"cannot reach {where}")
    if isinstance(exc, PermissionError):  # requests_ntlm: the server would not start an NTLM login
        return TransportError(AUTH, f"credentials rejected by {where} ({settings.auth}: no challenge)")
    if isinstance(exc, WinRMError):
        return TransportError(PROTOCOL, f"WinRM error from {where}: {type(exc).__name__}")
    if isinstance(exc, TransportError):
        return exc
    raise exc
