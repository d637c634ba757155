"""The wire under WinRM: HTTP/1.1 with a time limit on every socket wait, and failures put into words.

Every socket read of either transport is bounded by the time left before the caller's
deadline (and by a cap per wait), so a server that trickles its reply a byte at a time cannot
stretch a conversation past --timeout: each read may only wait for what is left.

- `HTTPChannel` is the lean transport's connection: one keep-alive socket, each request
  written in one piece, replies parsed here. Measured against http.client on the same
  socket it costs about half the CPU per request (http.client writes headers and body
  separately, and parses headers through the email package), which matters at six
  requests per host.
- `DeadlineResponse` is an http.client response with the same bound, for the stock path
  (requests and urllib3 read their replies through http.client).
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from provision.transport.base import PROTOCOL, REFUSED, RESET, TIMEOUT, TLS, UNREACHABLE, TransportError


class Clock:
    """The limits on every network wait of one transport: the caller's deadline, and a cap per wait."""

    def __init__(self, cap: float, where: str) -> None:
        self.cap = cap
        self.where = where
        self.deadline: float | None = None  # a time.monotonic() value

    def wait(self) -> float:
        """How long the next wait may last; a TIMEOUT failure once the deadline has passed."""
        if self.deadline is None:
            return self.cap
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.expired_error()
        return min(self.cap, left)

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline - 0.001

    def expired_error(self) -> TransportError:
        return TransportError(TIMEOUT, f"timed out: the time limit ran out waiting for {self.where}")


class _DeadlineReader(io.RawIOBase):
    """Socket reads, each allowed only the time the clock has left."""

    def __init__(self, sock: socket.socket, clock: Clock) -> None:
        self._sock = sock
        self._clock = clock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(self._clock.wait())
        return self._sock.recv_into(buffer)


class _SocketView:
    """The one thing http.client's response asks of its socket: a file to read the reply from."""

    def __init__(self, sock: socket.socket, clock: Clock) -> None:
        self._sock = sock
        self._clock = clock

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._clock))


class DeadlineResponse(http.client.HTTPResponse):
    """An HTTP reply read under a Clock: make it with functools.partial(DeadlineResponse, clock)."""

    def __init__(
        self, clock: Clock, sock: socket.socket, debuglevel: int = 0, method: str | None = None, url: str | None = None
    ) -> None:
        super().__init__(_SocketView(sock, clock), debuglevel, method, url)  # type: ignore[arg-type]


MAX_HEAD = 64 * 1024  # a reply's status line and headers, at most
MAX_BODY = 16 * 1024 * 1024  # far above the 150 kB envelopes we ask for; a bound, not a limit in use


class BadReplyError(Exception):
    """The listener's reply is not HTTP/1.x as we speak it."""


@dataclass
class Reply:
    status: int
    headers: dict[str, list[str]]  # lower-case names, every value in order
    body: bytes

    def header(self, name: str) -> str:
        values = self.headers.get(name)
        return values[0] if values else ""


class HTTPChannel:
    """One HTTP/1.1 connection, kept alive; plain or TLS. Every wait is under the Clock."""

    def __init__(self, address: str, port: int, context: ssl.SSLContext | None, clock: Clock) -> None:
        self.address = address
        self.port = port
        self.clock = clock
        self._context = context
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        host = f"[{address}]" if ":" in address else address
        self._host = f"{host}:{port}"

    @property
    def open(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        """TCP, then TLS if the channel has a context; any failure is a TransportError."""
        sock: socket.socket | None = None
        try:
            sock = socket.create_connection((self.address, self.port), timeout=self.clock.wait())
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._context is not None:
                sock.settimeout(self.clock.wait())
                sock = self._context.wrap_socket(sock, server_hostname=self.address)
        except Exception as exc:  # noqa: BLE001 - every failure to connect is put into words
            if sock is not None:
                sock.close()
            raise network_error(exc, self.clock) from None
        self._sock = sock
        self._buffer.clear()

    def peer_certificate(self) -> bytes | None:
        """The server certificate (DER) of a TLS channel, for channel binding."""
        sock = self._sock
        return sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None

    def post(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """One request and its reply. A failure closes the channel and is a TransportError."""
        sock = self._sock
        assert sock is not None, "connect() first"
        lines = [f"POST {path} HTTP/1.1", f"Host: {self._host}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            sock.settimeout(self.clock.wait())
            sock.sendall(head + body)
            reply, keep = self._read_reply()
        except Exception as exc:  # noqa: BLE001 - the channel is unusable after any of these
            self.close()
            if isinstance(exc, BadReplyError):
                raise TransportError(PROTOCOL, f"bad HTTP reply from {self.clock.where}: {exc}") from None
            raise network_error(exc, self.clock) from None
        if not keep:
            self.close()  # the listener ends the connection; the caller opens a new one
        return reply

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._buffer.clear()
        if sock is not None:
            sock.close()

    # Reading -------------------------------------------------------------------------------

    def _fill(self, started: bool) -> None:
        sock = self._sock
        assert sock is not None
        sock.settimeout(self.clock.wait())
        data = sock.recv(65536)
        if not data:
            if started:
                raise http.client.IncompleteRead(bytes(self._buffer))
            raise http.client.RemoteDisconnected("the listener closed the connection")
        self._buffer += data

    def _read_reply(self) -> tuple[Reply, bool]:
        while True:
            status, version, headers = self._read_head()
            if status >= 200:
                break  # 1xx: an interim reply; the real one follows
        connection = ",".join(headers.get("connection", [])).lower()
        keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        encoding = ",".join(headers.get("transfer-encoding", [])).lower()
        if status in (204, 304):
            body = b""
        elif "chunked" in encoding:
            body = self._read_chunked()
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"][0])
            except ValueError:
                raise BadReplyError("bad Content-Length") from None
            if not 0 <= length <= MAX_BODY:
                raise BadReplyError("reply too large")
            body = self._read_exactly(length)
        else:  # the body runs to the end of the connection
            body = self._read_to_close()
            keep = False
        return Reply(status, headers, body), keep

    def _read_head(self) -> tuple[int, str, dict[str, list[str]]]:
        started = bool(self._buffer)
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if len(self._buffer) > MAX_HEAD:
                raise BadReplyError("reply headers too long")
            self._fill(started)
            started = True
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        status_line, *header_lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1."):
            raise BadReplyError("not an HTTP/1.x reply")
        try:
            status = int(rest[:3])
        except ValueError:
            raise BadReplyError("bad status line") from None
        headers: dict[str, list[str]] = {}
        for line in header_lines:
            name, colon, value = line.partition(":")
            if colon:
                headers.setdefault(name.strip().lower(), []).append(value.strip())
        return status, version, headers

    def _read_exactly(self, length: int) -> bytes:
        while len(self._buffer) < length:
            self._fill(True)
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        return body

    def _read_line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            if len(self._buffer) > MAX_HEAD:
                raise BadReplyError("chunk header too long")
            self._fill(True)
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            try:
                size = int(self._read_line().split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadReplyError("bad chunk size") from None
            if size == 0:
                while self._read_line():  # trailers, up to the blank line
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise BadReplyError("reply too large")
            parts.append(self._read_exactly(size))
            self._read_exactly(2)  # the CRLF after each chunk

    def _read_to_close(self) -> bytes:
        sock = self._sock
        assert sock is not None
        while True:
            sock.settimeout(self.clock.wait())
            data = sock.recv(65536)
            if not data:
                body = bytes(self._buffer)
                self._buffer.clear()
                return body
            self._buffer += data
            if len(self._buffer) > MAX_BODY:
                raise BadReplyError("reply too large")


RESET_ERRORS = (
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    http.client.RemoteDisconnected,
    http.client.IncompleteRead,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


def network_error(exc: BaseException, clock: Clock) -> TransportError:
    """A socket, TLS or HTTP failure, as the report names it; None of it carries a credential."""
    where = clock.where
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, TimeoutError | socket.timeout):
        if clock.expired():
            return clock.expired_error()
        return TransportError(TIMEOUT, f"no answer from {where} within {clock.cap:g} s")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TransportError(TLS, f"TLS certificate not trusted for {where} (use the inventory's ca_bundle)")
    if isinstance(exc, RESET_ERRORS):
        return TransportError(RESET, f"connection to {where} was reset", transient=True)
    if isinstance(exc, ssl.SSLError):
        return TransportError(TLS, f"TLS handshake failed for {where}")
    if isinstance(exc, ConnectionRefusedError):
        return TransportError(REFUSED, f"connection refused by {where} (is the WinRM listener on?)")
    if isinstance(exc, socket.gaierror):
        return TransportError(UNREACHABLE, f"cannot resolve {where}")
    if isinstance(exc, http.client.HTTPException):
        return TransportError(PROTOCOL, f"bad HTTP reply from {where} ({type(exc).__name__})")
    if isinstance(exc, OSError):
        return TransportError(UNREACHABLE, f"cannot reach {where}")
    raise exc
