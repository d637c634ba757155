"""WinRM through pywinrm's Protocol: one shell per host, commands with stdin, our own deadlines.

pywinrm's exceptions are not one tree and network failures arrive as requests exceptions,
so they are caught by name here and turned into TransportError, with a reason a person
understands and never a credential. get_command_output would retry OperationTimeout
forever; receive() does one round and the caller's deadline decides.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
import requests.adapters
import urllib3
import urllib3.connection
import winrm.transport
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
from provision.transport.envelopes import ReplyError
from provision.transport.tls import system_trust_location
from provision.transport.wire import Clock, DeadlineResponse, network_error

T = TypeVar("T")

# Fault codes (WSManFault @Code or MSFT_WmiError error_Code) worth a retry on a new shell.
ERROR_BUSY = 170
SHELL_NOT_FOUND = 2150858843
QUOTA_MAX_OPERATIONS = 2150859174
CLOSE_GRACE = 2.0  # seconds past the deadline to delete the shell, at most (5% of the time limit)


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
    # Hears every WS-Management envelope sent and received, in the clear (for doctor's
    # transcript, which masks the payload): ("request" | "reply", envelope).
    trace: Trace | None = field(default=None, repr=False, compare=False)

    @property
    def endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{self.port}/wsman"


Trace = Callable[[str, bytes], None]


class WinRMTransport:
    """Stock pywinrm: its Protocol over requests (Kerberos, and whatever the lean transport does not cover).

    Subclasses change only how the Protocol is made (LeanTransport, transport/lean.py)."""

    def __init__(self, settings: WinRMSettings) -> None:
        if settings.auth == "basic" and settings.scheme != "https":
            raise TransportError(AUTH, "basic auth is allowed only over https")
        if settings.auth == "basic" and not settings.verify_tls:
            raise TransportError(
                AUTH,
                "basic auth with --no-verify-tls would send the password to whoever answers: "
                "give the host's CA in ca_bundle instead, or use ntlm or kerberos",
            )
        if settings.auth == "kerberos" and _is_ip_address(settings.address):
            raise TransportError(
                AUTH,
                f"Kerberos needs the host's DNS name, not the IP address {settings.address}: its ticket is for "
                "the service principal HTTP/<name> (set the host's address to its name, or use ntlm)",
            )
        self.settings = settings
        host = f"[{settings.address}]" if ":" in settings.address else settings.address
        self.clock = Clock(settings.operation_timeout + 10, f"{host}:{settings.port}")
        self._protocol: Protocol | None = None
        self._shell: str | None = None
        self._grace = CLOSE_GRACE

    def set_deadline(self, deadline: float) -> None:
        """Every network wait from now on ends by `deadline` (a time.monotonic() value)."""
        self.clock.deadline = deadline
        self._grace = max(0.05, min(CLOSE_GRACE, 0.05 * (deadline - time.monotonic())))

    def open(self) -> None:
        self._protocol = self._make_protocol()
        self._shell = self._call(lambda p: p.open_shell(codepage=65001, noprofile=True))

    def _make_protocol(self) -> Protocol:
        s = self.settings
        if not s.verify_tls:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        options: dict[str, Any] = {
            "username": s.username,
            "password": s.password.reveal(),
            "server_cert_validation": "validate" if s.verify_tls else "ignore",
            # The inventory's CA bundle, or the system's trust store (not certifi's, not REQUESTS_CA_BUNDLE).
            "ca_trust_path": s.ca_bundle or system_trust_location(),
            "read_timeout_sec": s.operation_timeout + 10,
            "proxy": None,
        }
        try:
            protocol = Protocol(
                s.endpoint,
                transport=s.auth,  # type: ignore[arg-type]  # checked by the inventory model
                operation_timeout_sec=s.operation_timeout,
                **options,
            )
            protocol.transport = _BoundedTransport(
                self.clock, s.trace, endpoint=s.endpoint, auth_method=s.auth, **options
            )
        except WinRMError as exc:
            raise TransportError(PROTOCOL, f"cannot set up WinRM: {type(exc).__name__}") from None
        return protocol

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
        if protocol is None:
            return
        if shell is not None:
            if self.clock.expired():
                # Out of time, but a shell left open keeps its processes for hours: a short last try.
                self.clock.deadline = time.monotonic() + self._grace
            # If this fails the shell times out on its own on the workstation.
            with contextlib.suppress(TransportError):
                self._call(lambda p: p.close_shell(shell))
        protocol.transport.close_session()

    def _call(self, action: Callable[[Protocol], T]) -> T:
        assert self._protocol is not None
        try:
            return action(self._protocol)
        except Exception as exc:  # noqa: BLE001 - translated below, re-raised if not ours
            raise translate(exc, self.settings, self.clock) from None


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


class _DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose replies are read under the transport's Clock (see wire.DeadlineResponse)."""

    def __init__(self, clock: Clock) -> None:
        self._respond = functools.partial(DeadlineResponse, clock)
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        respond = self._respond

        class _HTTPConnection(urllib3.connection.HTTPConnection):
            response_class = respond  # type: ignore[assignment]

        class _HTTPSConnection(urllib3.connection.HTTPSConnection):
            response_class = respond  # type: ignore[assignment]

        class _HTTPPool(urllib3.HTTPConnectionPool):
            ConnectionCls = _HTTPConnection

        class _HTTPSPool(urllib3.HTTPSConnectionPool):
            ConnectionCls = _HTTPSConnection

        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


class _BoundedTransport(winrm.transport.Transport):
    """pywinrm's requests transport with every wait under the Clock, and no proxy from the environment."""

    def __init__(self, clock: Clock, trace: Trace | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.trace = trace

    def _bound(self, session: requests.Session) -> None:
        if not isinstance(session.get_adapter("https://"), _DeadlineAdapter):
            # No proxy (proxy=None), so requests need not scan the environment for one on every request.
            session.trust_env = False
            session.mount("https://", _DeadlineAdapter(self.clock))
            session.mount("http://", _DeadlineAdapter(self.clock))
        self.read_timeout_sec = self.clock.wait()  # type: ignore[assignment]  # requests takes a float

    def setup_encryption(self, session: requests.Session) -> None:
        self._bound(session)  # NTLM over HTTP sets up sealing with a first request of its own
        super().setup_encryption(session)

    def _get_message_response_text(self, response: requests.Response) -> bytes:
        encryption = self.encryption
        if encryption is not None and response.ok:
            # pywinrm takes a clear reply on a sealed connection as it is; only someone between
            # could have written it. (Errors may come clear: they only ever fail the host.)
            sealed = f'protocol="{encryption.protocol_string.decode()}"'
            if sealed not in response.headers.get("Content-Type", ""):
                raise TransportError(
                    PROTOCOL, f"an unsealed reply on a sealed connection from {self.clock.where}: refused"
                )
        text: bytes = super()._get_message_response_text(response)
        return text

    def send_message(self, message: str | bytes) -> bytes:
        self._bound(self.build_session())
        if self.trace is None:
            return super().send_message(message)
        self.trace("request", message.encode("utf-8") if isinstance(message, str) else message)
        reply: bytes = super().send_message(message)
        self.trace("reply", reply)
        return reply


def _is_ip_address(address: str) -> bool:
    try:
        ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return True


_RESET_WORDS = ("reset", "aborted", "remotedisconnected", "incompleteread", "broken pipe", "eof occurred")


def translate(exc: BaseException, settings: WinRMSettings, clock: Clock | None = None) -> TransportError:
    """One line for a person, a kind for the report; never the password."""
    where = f"{settings.address}:{settings.port}"
    clock = clock or Clock(settings.operation_timeout + 10, where)
    if isinstance(exc, TransportError):
        return exc
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
        if exc.code == 413:  # Windows answers an envelope over MaxEnvelopeSizekb with 413, not a fault
            return TransportError(PROTOCOL, f"HTTP 413 from {where}: the request is over MaxEnvelopeSizekb")
        return TransportError(PROTOCOL, f"HTTP {exc.code} from {where}")
    if isinstance(exc, ReplyError):
        return TransportError(PROTOCOL, f"unexpected reply from {where}: {exc}")
    if isinstance(exc, requests.exceptions.SSLError):
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return TransportError(TLS, f"TLS certificate not trusted for {where} (use the inventory's ca_bundle)")
        if any(word in text.lower() for word in _RESET_WORDS):
            return TransportError(RESET, f"connection to {where} was reset", transient=True)
        return TransportError(TLS, f"TLS handshake failed for {where}")
    if isinstance(exc, requests.exceptions.ConnectionError) and any(
        isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args
    ):  # requests' name for a read that timed out while the body was streaming
        exc = requests.exceptions.ReadTimeout(*exc.args)
    if isinstance(exc, requests.exceptions.ReadTimeout | requests.exceptions.ConnectTimeout) and clock.expired():
        return clock.expired_error()
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return TransportError(TIMEOUT, f"no answer from {where} within {clock.cap:g} s")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return TransportError(UNREACHABLE, f"cannot reach {where} (connect timed out)")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):  # the reply was cut off: a reset
        return TransportError(RESET, f"connection to {where} was reset", transient=True)
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc)
        if "Connection refused" in text or "Errno 111" in text:
            return TransportError(REFUSED, f"connection refused by {where} (is the WinRM listener on?)")
        if any(word in text.lower() for word in _RESET_WORDS):
            return TransportError(RESET, f"connection to {where} was reset", transient=True)
        return TransportError(UNREACHABLE, f"cannot reach {where}")
    if isinstance(exc, PermissionError):  # requests_ntlm: the server would not start an NTLM login
        return TransportError(AUTH, f"credentials rejected by {where} ({settings.auth}: no challenge)")
    if isinstance(exc, OSError | http.client.HTTPException):
        return network_error(exc, clock)
    if isinstance(exc, WinRMError):
        return TransportError(PROTOCOL, f"WinRM error from {where}: {type(exc).__name__}")
    raise exc
