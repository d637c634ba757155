"""The lab's HTTP(S) side: WS-Management endpoints on loopback addresses, one event loop for all.

HTTP/1.1 with keep-alive; TLS with the lab CA; Basic (over HTTPS only, as Windows' default
AllowUnencrypted=false demands) and NTLM through pyspnego, with WinRM message encryption
over HTTP and channel binding checked over HTTPS.

Transport faults happen here: a reset before the reply (reset_on) or in the middle of it
(reset_mid_response: headers and part of the body, then a TCP reset), and replies sent at
trickle_bytes_per_s.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import spnego
from spnego._ntlm_raw.crypto import lmowfv1, ntowfv1
from spnego.channel_bindings import GssChannelBindings

from provision.lab.certs import SERVER_CERTIFICATES
from provision.lab.faults import Faults
from provision.lab.host import SimulatedHost
from provision.lab.wsman import WSManService

BOUNDARY = b"--Encrypted Boundary"
ENCRYPTED_TYPE = b"application/HTTP-SPNEGO-session-encrypted"
HTTP_PORT, HTTPS_PORT = 5985, 5986
_NTLM_STORE_LOCK = threading.Lock()


@dataclass
class Endpoint:
    address: str
    host: SimulatedHost
    service: WSManService


@dataclass
class _Connection:
    tls: bool
    context: Any = None  # pyspnego acceptor, once NTLM started
    authenticated: bool = False
    encrypted: bool = False


@dataclass
class Request:
    method: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int  # -1: reset the connection instead of answering
    headers: list[tuple[str, str]]
    body: bytes
    action: str = ""  # the WS-Management action answered, if any


class LabServer:
    """Serves every endpoint on HTTP (5985) and HTTPS (5986) of its own address."""

    def __init__(
        self,
        endpoints: list[Endpoint],
        *,
        username: str,
        password: str,
        cert: Path,
        key: Path,
        cert_der: bytes,
        http_port: int = HTTP_PORT,
        https_port: int = HTTPS_PORT,
    ) -> None:
        self.endpoints = {e.address: e for e in endpoints}
        self.username, self.password = username, password
        _store_ntlm_hashes(cert.parent / "ntlm-hashes", username, password)
        self.http_port, self.https_port = http_port, https_port
        self._tls, self._bindings = _server_tls(cert, key, cert_der, list(self.endpoints))
        self._servers: dict[str, list[asyncio.base_events.Server]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # Running ------------------------------------------------------------------------------

    def start_in_thread(self) -> None:
        """Run the event loop in a daemon thread (tests, and the lab daemon)."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start_all())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close_all())
            loop.close()

        self._thread = threading.Thread(target=run, name="provision-lab", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            raise errors[0]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def set_listening(self, address: str, listening: bool) -> None:
        """Close or reopen one host's listeners (a refused connection)."""
        assert self._loop is not None
        action = self._listen(address) if listening else self._unlisten(address)
        asyncio.run_coroutine_threadsafe(action, self._loop).result(timeout=10)

    async def _start_all(self) -> None:
        for address in self.endpoints:
            if not self.endpoints[address].host.faults.refuse:
                await self._listen(address)

    async def _close_all(self) -> None:
        for address in list(self._servers):
            await self._unlisten(address)

    async def _listen(self, address: str) -> None:
        if address in self._servers:
            return
        servers = []
        for port, tls in ((self.http_port, False), (self.https_port, True)):
            servers.append(
                await asyncio.start_server(
                    self._handler(address, tls),
                    address,
                    port,
                    ssl=self._tls[address] if tls else None,
                    reuse_address=True,
                    backlog=256,
                )
            )
        self._servers[address] = servers

    def _handler(
        self, address: str, tls: bool
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(reader, writer, address, tls)

        return serve

    async def _unlisten(self, address: str) -> None:
        for server in self._servers.pop(address, []):
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    # HTTP ---------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str, tls: bool) -> None:
        endpoint = self.endpoints[address]
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(tls=tls)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                endpoint.host.stats["requests"] += 1
                faults = endpoint.host.faults
                if faults.latency_ms:
                    await asyncio.sleep(faults.latency_ms / 1000)
                reply = await self._respond(endpoint, connection, request)
                if reply.status == -1:  # reset the connection instead of answering
                    _reset(writer)
                    return
                data = _response(reply.status, reply.headers, reply.body)
                if faults.reset_mid_response and reply.action == faults.reset_mid_response:
                    # The headers and part of the body go out, then the connection is reset.
                    await _send(writer, data[: len(data) - len(reply.body) + len(reply.body) // 2], faults)
                    await asyncio.sleep(0.05)  # let the part reach the client before the reset
                    _reset(writer)
                    return
                await _send(writer, data, faults)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, ValueError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _respond(self, endpoint: Endpoint, connection: _Connection, request: Request) -> Reply:
        faults = endpoint.host.faults
        challenge = [("WWW-Authenticate", "Negotiate")]
        if connection.tls:
            challenge.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        if request.method != "POST":
            return Reply(405, [], b"")
        if faults.reject_auth:
            return Reply(401, challenge, b"")
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        body = request.body
        if scheme.lower() == "basic":
            if not connection.tls:
                return Reply(401, challenge, b"")  # AllowUnencrypted=false: no Basic over HTTP
            user, _, password = base64.b64decode(token).decode("utf-8", "replace").partition(":")
            if (user, password) != (self.username, self.password):
                return Reply(401, challenge, b"")
        elif scheme.lower() in ("negotiate", "ntlm"):
            if connection.context is None or connection.authenticated:
                connection.context = spnego.server(
                    protocol="ntlm", channel_bindings=self._bindings[endpoint.address] if connection.tls else None
                )
                connection.authenticated = False
            try:
                out = connection.context.step(base64.b64decode(token))
            except Exception:  # noqa: BLE001 - any failure of the handshake is a rejected login
                connection.context = None
                return Reply(401, challenge, b"")
            if not connection.context.complete:
                return Reply(401, [("WWW-Authenticate", f"{scheme} {base64.b64encode(out or b'').decode()}")], b"")
            connection.authenticated = True
            connection.encrypted = not connection.tls
            if not body:
                return Reply(200, [], b"")
        elif connection.authenticated:
            if connection.encrypted:
                try:
                    body = _decrypt(connection.context, request)
                except (ValueError, KeyError, IndexError, struct.error):
                    return Reply(400, [], b"")
        else:
            return Reply(401, challenge, b"")
        action = _action_of(body)
        if faults.reset_on and action == faults.reset_on:
            return Reply(-1, [], b"", action)
        status, reply = await endpoint.service.handle(body)
        if connection.authenticated and connection.encrypted:
            headers, sealed = _encrypt(connection.context, reply)
            return Reply(status, headers, sealed, action)
        return Reply(status, [("Content-Type", "application/soap+xml;charset=UTF-8")], reply, action)


async def _send(writer: asyncio.StreamWriter, data: bytes, faults: Faults) -> None:
    """Write a reply; at faults.trickle_bytes_per_s, a few bytes at a time, twenty times a second."""
    rate = faults.trickle_bytes_per_s
    if not rate or rate <= 0:
        writer.write(data)
        await writer.drain()
        return
    step = max(1, int(rate / 20))
    for start in range(0, len(data), step):
        writer.write(data[start : start + step])
        await writer.drain()
        await asyncio.sleep(step / rate)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), over HTTP and HTTPS alike."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _server_tls(
    cert: Path, key: Path, cert_der: bytes, addresses: list[str]
) -> tuple[dict[str, ssl.SSLContext], dict[str, GssChannelBindings]]:
    """A TLS context and channel binding per address: the certificate make_certificates gave each
    (see certs.SERVER_CERTIFICATES), or the one certificate given for all."""
    index_path = cert.parent / SERVER_CERTIFICATES
    index: dict[str, str] = json.loads(index_path.read_text("utf-8")) if index_path.is_file() else {}
    made: dict[str, tuple[ssl.SSLContext, GssChannelBindings]] = {}
    contexts, bindings = {}, {}
    for address in addresses:
        path = cert.parent / index.get(address, cert.name)
        if path.name not in made:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(path, key)
            der = cert_der if path == cert else ssl.PEM_cert_to_DER_cert(path.read_text("ascii"))
            made[path.name] = (context, GssChannelBindings(application_data=_end_point(der)))
        contexts[address], bindings[address] = made[path.name]
    return contexts, bindings


def _end_point(der: bytes) -> bytes:
    """RFC 5929 tls-server-end-point of the lab's certificates (ECDSA with SHA-256)."""
    return b"tls-server-end-point:" + hashlib.sha256(der).digest()


def _store_ntlm_hashes(store: Path, username: str, password: str) -> None:
    """pyspnego's NTLM acceptor reads the account from the file NTLM_USER_FILE names, on every
    login, and for a DOMAIN:USER:PASSWORD line computes the LM and NT hashes (pure-Python DES
    and MD4) each time. Put this account first in that file in the smbpasswd form, whose hashes
    it reads as they are: the lab no longer spends a millisecond per connection on them.
    The lines already there (other labs in this process) follow it."""
    line = f"{username}:1000:{lmowfv1(password).hex().upper()}:{ntowfv1(password).hex().upper()}:[U]:LCT-00000000\n"
    with _NTLM_STORE_LOCK:
        current = os.environ.get("NTLM_USER_FILE")
        existing = Path(current).read_text("utf-8") if current and Path(current).is_file() else ""
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_text(line + existing, "utf-8")
        os.environ["NTLM_USER_FILE"] = str(store)


def _action_of(body: bytes) -> str:
    start = body.find(b"Action")
    window = body[start : start + 300] if start >= 0 else b""
    for name in ("Create", "Delete", "Command", "Send", "Receive", "Signal"):
        if f"/{name}<".encode() in window:
            return name
    return ""


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    line = await reader.readline()
    if not line:
        return None
    method = line.decode("latin-1").split(" ", 1)[0]
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return Request(method, headers, body)


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 405: "Method Not Allowed", 500: "Internal Server Error"}


def _response(status: int, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "Server: Microsoft-HTTPAPI/2.0"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines += [f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def _decrypt(context: Any, request: Request) -> bytes:
    """multipart/encrypted as pywinrm writes it: a length, the NTLM signature, the sealed message."""
    parts = [p for p in request.body.split(BOUNDARY + b"\r\n") if p]
    header, payload = parts[0], parts[1]
    expected = int(header.split(b"Length=")[1].strip())
    payload = payload.removesuffix(BOUNDARY + b"--\r\n")
    data = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
    size = struct.unpack("<i", data[:4])[0]
    message = context.unwrap_winrm(data[4 : 4 + size], data[4 + size :])
    if len(message) != expected:
        raise ValueError("length mismatch")
    return bytes(message)


def _encrypt(context: Any, message: bytes) -> tuple[list[tuple[str, str]], bytes]:
    wrapped = context.wrap_winrm(message)
    stream = struct.pack("<i", len(wrapped.header)) + wrapped.header + wrapped.data
    body = (
        BOUNDARY + b"\r\n\tContent-Type: " + ENCRYPTED_TYPE + b"\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
        + str(len(message)).encode()
        + b"\r\n"
        + BOUNDARY
        + b"\r\n\tContent-Type: application/octet-stream\r\n"
        + stream
        + BOUNDARY
        + b"--\r\n"
    )
    content_type = (
        'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted";boundary="Encrypted Boundary"'
    )
    return [("Content-Type", content_type)], body
