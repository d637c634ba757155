"""The lean WinRM transport: pywinrm's Protocol on one persistent connection per host.

What it takes out of the stock path (requests, urllib3, xmltodict) and what it keeps:
- one HTTP/1.1 connection per host, kept alive for the whole conversation (wire.HTTPChannel:
  standard-library sockets; http.client cost twice the CPU per request, see wire.py);
- authentication once per connection: NTLM through pyspnego (channel binding over HTTPS,
  message sealing over HTTP) with the password hashes computed once per run; Basic (HTTPS only)
  sent with every request, as Windows expects;
- one `ssl.SSLContext` per process and CA bundle, the system trust store by default;
- envelopes from string templates, replies parsed with ElementTree (transport/envelopes.py);
- pywinrm's Protocol still reads faults (send_message), so the errors are pywinrm's own.

NTLM over HTTPS costs one request more than Basic for the whole conversation: the
negotiate leg. Its authenticate leg carries the first envelope. Over HTTP the authenticate
leg is empty, as sealing starts only once the context is complete (what pywinrm does too).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable

import spnego
from winrm.exceptions import InvalidCredentialsError, WinRMTransportError
from winrm.protocol import Protocol

from provision.transport import envelopes, ntlm, tls
from provision.transport.base import AUTH, PROTOCOL, TransportError
from provision.transport.winrm import WinRMSettings, WinRMTransport
from provision.transport.wire import Clock, HTTPChannel, Reply

USER_AGENT = "Python WinRM client"  # pywinrm's, so a listener's logs show the same client
SOAP = "application/soap+xml;charset=UTF-8"


class Connection:
    """One authenticated HTTP(S) connection to a WinRM listener.

    send_message() keeps pywinrm's Transport contract, so Protocol.send_message can read
    faults: the reply body on 2xx, InvalidCredentialsError on 401, WinRMTransportError with
    the (unsealed) body otherwise. Network failures are TransportError already.
    """

    def __init__(self, settings: WinRMSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        context = tls.client_context(settings.ca_bundle, settings.verify_tls) if settings.scheme == "https" else None
        self._channel = HTTPChannel(settings.address, settings.port, context, clock)
        self._context: spnego.ContextProxy | None = None
        self._sealed = False
        self._pending_auth: str | None = None  # an NTLM authenticate token riding on the next request
        self._basic: str | None = None
        if settings.auth == "basic":
            pair = f"{settings.username}:{settings.password.reveal()}"
            try:
                raw = pair.encode("latin-1")  # what requests sends
            except UnicodeEncodeError:
                raw = pair.encode("utf-8")
            self._basic = "Basic " + base64.b64encode(raw).decode("ascii")

    def send_message(self, message: bytes) -> bytes:
        trace = self.settings.trace
        if trace is not None:
            trace("request", message)
        if not self._channel.open:
            self._connect()
        headers = {"Content-Type": SOAP, "User-Agent": USER_AGENT}
        body = message
        if self._basic is not None:
            headers["Authorization"] = self._basic
        elif self._pending_auth is not None:
            headers["Authorization"] = self._pending_auth
            self._pending_auth = None
        sealed = self._sealed
        if sealed:
            assert self._context is not None
            body = ntlm.seal(self._context, message)
            headers["Content-Type"] = ntlm.CONTENT_TYPE
        reply = self._post(body, headers)
        data = reply.body
        if sealed and f'protocol="{ntlm.PROTOCOL}"' in reply.header("content-type"):
            assert self._context is not None
            try:
                data = ntlm.unseal(self._context, data)
            except ntlm.SealError as exc:
                self.close()
                raise TransportError(PROTOCOL, f"{exc} from {self.clock.where}") from None
        elif sealed and 200 <= reply.status < 300:
            # A clear reply on a sealed connection is not the listener's: whoever sits between
            # could write it. Errors (401, faults) may come clear; they only ever fail a host.
            self.close()
            raise TransportError(PROTOCOL, f"an unsealed reply on a sealed connection from {self.clock.where}: refused")
        if reply.status == 401:
            self.close()
            raise InvalidCredentialsError("the specified credentials were rejected by the server")
        if trace is not None:
            trace("reply", data if data else f"(HTTP {reply.status}, no body)".encode())
        if not 200 <= reply.status < 300:
            raise WinRMTransportError("http", reply.status, data.decode("utf-8", "replace"))
        return data

    def close(self) -> None:
        """Drop the connection (and its authentication); the next message opens a new one."""
        self._channel.close()
        self._forget_auth()

    close_session = close  # pywinrm's name for it

    # Connecting ----------------------------------------------------------------------------

    def _forget_auth(self) -> None:
        self._context = None
        self._sealed = False
        self._pending_auth = None

    def _connect(self) -> None:
        """A new connection authenticates anew (NTLM authenticates a connection, not a client)."""
        self._forget_auth()
        self._channel.connect()
        if self.settings.auth == "ntlm":
            self._authenticate()

    def _authenticate(self) -> None:
        s = self.settings
        context = ntlm.new_context(s.username, s.password.reveal())
        bindings = None
        certificate = self._channel.peer_certificate()
        if certificate:
            bindings = ntlm.bindings(tls.channel_binding(certificate))
        negotiate = context.step() or b""
        reply = self._post(b"", {"Authorization": "Negotiate " + base64.b64encode(negotiate).decode()})
        challenge = _challenge(reply.headers.get("www-authenticate", [])) if reply.status == 401 else None
        if challenge is None:
            self.close()
            raise TransportError(AUTH, f"credentials rejected by {self.clock.where} (ntlm: no challenge)")
        try:
            authenticate = context.step(challenge, channel_bindings=bindings) or b""
        except spnego.exceptions.SpnegoError:
            self.close()
            raise TransportError(AUTH, f"credentials rejected by {self.clock.where} (ntlm: bad challenge)") from None
        token = "Negotiate " + base64.b64encode(authenticate).decode()
        self._context = context
        if s.scheme == "https":
            self._pending_auth = token  # carried by the first envelope
            return
        reply = self._post(b"", {"Authorization": token})
        if reply.status == 401:
            self.close()
            raise InvalidCredentialsError("the specified credentials were rejected by the server")
        if not 200 <= reply.status < 300:
            self.close()
            raise WinRMTransportError("http", reply.status, "")
        self._sealed = True

    def _post(self, body: bytes, headers: dict[str, str]) -> Reply:
        # A reply may end the connection (Connection: close); its context still unseals the
        # reply, and the next message reconnects (send_message), authenticating again.
        headers.setdefault("User-Agent", USER_AGENT)
        return self._channel.post("/wsman", headers, body)


def _challenge(values: list[str]) -> bytes | None:
    """The NTLM challenge in a 401's WWW-Authenticate headers, if the listener sent one."""
    for value in values:
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() in ("negotiate", "ntlm") and token.strip():
            try:
                return base64.b64decode(token.strip(), validate=True)
            except ValueError:
                return None
    return None


class LeanProtocol(Protocol):
    """pywinrm's Protocol with its envelopes from templates, on a lean Connection."""

    def __init__(self, settings: WinRMSettings, connection: Connection) -> None:
        super().__init__(
            settings.endpoint,
            transport="plaintext",
            username=settings.username,
            password="",  # the password stays with the connection
            read_timeout_sec=settings.operation_timeout + 10,
            operation_timeout_sec=settings.operation_timeout,
            proxy=None,
        )
        self.transport = connection  # type: ignore[assignment]  # what Protocol.send_message calls
        self.connection = connection
        self._timeout = int(settings.operation_timeout)

    def _send(self, message: envelopes.Envelope) -> bytes:
        # Protocol.send_message reads the faults; it passes bytes through as they are.
        return self.send_message(message.text)  # type: ignore[arg-type]

    def open_shell(
        self,
        i_stream: str = "stdin",
        o_stream: str = "stdout stderr",
        working_directory: str | None = None,
        env_vars: dict[str, str] | None = None,
        noprofile: bool = False,
        codepage: int = 437,
        lifetime: None = None,
        idle_timeout: str | int | None = None,
    ) -> str:
        message = envelopes.create(
            self._timeout,
            codepage=codepage,
            noprofile=noprofile,
            input_streams=i_stream,
            output_streams=o_stream,
            working_directory=working_directory,
            environment=env_vars,
            idle_timeout=idle_timeout,
        )
        return envelopes.shell_id(self._send(message))

    def run_command(
        self,
        shell_id: str,
        command: str,
        arguments: Iterable[str | bytes] = (),
        console_mode_stdin: bool = True,
        skip_cmd_shell: bool = False,
    ) -> str:
        message = envelopes.command(
            self._timeout,
            shell_id,
            command,
            [a if isinstance(a, str) else a.decode("utf-8") for a in arguments],
            console_mode_stdin=console_mode_stdin,
            skip_cmd_shell=skip_cmd_shell,
        )
        return envelopes.command_id(self._send(message))

    def send_command_input(self, shell_id: str, command_id: str, stdin_input: str | bytes, end: bool = False) -> None:
        data = stdin_input.encode("437") if isinstance(stdin_input, str) else stdin_input
        self._send(envelopes.send(self._timeout, shell_id, command_id, data, end=end))

    def get_command_output_raw(self, shell_id: str, command_id: str) -> tuple[bytes, bytes, int, bool]:
        return envelopes.output(self._send(envelopes.receive(self._timeout, shell_id, command_id)))

    def cleanup_command(self, shell_id: str, command_id: str) -> None:
        message = envelopes.signal(self._timeout, shell_id, command_id)
        self._check_relates_to(message, self._send(message))

    def close_shell(self, shell_id: str, close_session: bool = True) -> None:
        message = envelopes.delete(self._timeout, shell_id)
        try:
            reply = self._send(message)
        finally:
            if close_session:
                self.connection.close()
        self._check_relates_to(message, reply)

    @staticmethod
    def _check_relates_to(message: envelopes.Envelope, reply: bytes) -> None:
        relates = envelopes.relates_to(reply)
        try:
            same = uuid.UUID(relates.removeprefix("uuid:")) == uuid.UUID(message.message_id)
        except ValueError:
            same = False
        if not same:
            raise envelopes.ReplyError("the reply relates to another request")


class LeanTransport(WinRMTransport):
    """The Transport interface over LeanProtocol: the default where it applies (see open_transport)."""

    def _make_protocol(self) -> Protocol:
        return LeanProtocol(self.settings, Connection(self.settings, self.clock))
