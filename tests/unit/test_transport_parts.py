"""The transport's parts: envelopes as pywinrm writes them, replies read as pywinrm reads them,
the HTTP channel against scripted loopback replies, faults, time limits, NTLM and TLS helpers."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import spnego
import xmltodict
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from winrm.exceptions import WinRMOperationTimeoutError, WinRMTransportError, WSManFaultError
from winrm.protocol import Protocol

from provision.lab.certs import make_certificates
from provision.secrets import Secret
from provision.transport import envelopes, ntlm, open_transport, tls
from provision.transport.base import AUTH, FAULT, PROTOCOL, RESET, TIMEOUT, TransportError
from provision.transport.lean import Connection, LeanProtocol, LeanTransport
from provision.transport.winrm import WinRMSettings, WinRMTransport, translate
from provision.transport.wire import Clock, HTTPChannel, Reply

SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
NS = (
    'xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
    'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
    'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell" '
    'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer"'
)


def settings(address: str = "127.0.0.1", scheme: str = "https", auth: str = "ntlm", **more: Any) -> WinRMSettings:
    port = 5986 if scheme == "https" else 5985
    return WinRMSettings(address, scheme, port, auth, "admin", Secret("pw"), **more)


# Envelopes: the same XML pywinrm sends ---------------------------------------------------------


def reply_to(message: str | bytes) -> bytes:
    """A listener's 200 reply to a request, in the shapes the lab (and Windows) send."""
    root = ET.fromstring(message)
    message_id = root.findtext(".//{http://schemas.xmlsoap.org/ws/2004/08/addressing}MessageID") or ""
    action = root.findtext(".//{http://schemas.xmlsoap.org/ws/2004/08/addressing}Action") or ""
    body = ""
    if action.endswith("Create"):
        selector = '<w:SelectorSet><w:Selector Name="ShellId">S-1</w:Selector></w:SelectorSet>'
        body = f"<x:ResourceCreated>{selector}</x:ResourceCreated>"
    elif action.endswith("Command"):
        body = "<rsp:CommandResponse><rsp:CommandId>C-1</rsp:CommandId></rsp:CommandResponse>"
    elif action.endswith("Receive"):
        body = RECEIVE_DONE
    header = f"<s:Header><a:RelatesTo>{message_id}</a:RelatesTo></s:Header>"
    return f"<s:Envelope {NS}>{header}<s:Body>{body}</s:Body></s:Envelope>".encode()


RECEIVE_DONE = (
    '<rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="C-1">'
    + base64.b64encode(b"hello ").decode()
    + '</rsp:Stream><rsp:Stream Name="stderr" CommandId="C-1">'
    + base64.b64encode(b"warn").decode()
    + '</rsp:Stream><rsp:Stream Name="stdout" CommandId="C-1">'
    + base64.b64encode(b"world").decode()
    + '</rsp:Stream><rsp:Stream Name="stdout" CommandId="C-1" End="true"></rsp:Stream>'
    + f'<rsp:CommandState CommandId="C-1" State="{SHELL}CommandState/Done"><rsp:ExitCode>3</rsp:ExitCode>'
    + "</rsp:CommandState></rsp:ReceiveResponse>"
)


class Recorder:
    """Stands in for pywinrm's Transport (or the lean Connection): records requests, answers them."""

    def __init__(self, answer: Callable[[bytes], bytes] = reply_to) -> None:
        self.sent: list[bytes] = []
        self.answer = answer

    def send_message(self, message: str | bytes) -> bytes:
        data = message.encode() if isinstance(message, str) else message
        self.sent.append(data)
        return self.answer(data)

    def close(self) -> None:
        pass

    close_session = close


def normalised(message: bytes) -> Any:
    text = re.sub(rb"uuid:[0-9a-f-]{36}", b"uuid:*", message)
    return xmltodict.parse(text)


def conversation(protocol: Protocol) -> None:
    shell = protocol.open_shell(codepage=65001, noprofile=True)
    protocol.open_shell(working_directory="C:\\Temp", env_vars={"A": "1 & 2"}, idle_timeout=60)
    command = protocol.run_command(shell, "powershell.exe", ["-Command", "'<a & b>'"], console_mode_stdin=False)
    protocol.run_command(shell, "cmd", [b"/c", "dir"], skip_cmd_shell=True)
    protocol.run_command(shell, "hostname")
    protocol.send_command_input(shell, command, b"\x00binary\xff", end=False)
    protocol.send_command_input(shell, command, "text in cp437: \u00e9", end=True)
    protocol.get_command_output_raw(shell, command)
    protocol.cleanup_command(shell, command)
    protocol.close_shell(shell)


def test_envelopes_are_the_ones_pywinrm_builds() -> None:
    stock = Protocol("https://127.0.0.1:5986/wsman", username="u", password="p", operation_timeout_sec=5)
    stock.transport = Recorder()
    conversation(stock)
    lean = LeanProtocol(settings(operation_timeout=5), Recorder())  # type: ignore[arg-type]
    conversation(lean)
    theirs, ours = stock.transport.sent, lean.transport.sent
    assert len(ours) == len(theirs) == 10
    for mine, pywinrm in zip(ours, theirs, strict=True):
        assert normalised(mine) == normalised(pywinrm)


def test_replies_are_read_as_pywinrm_reads_them() -> None:
    running = (
        f'<rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="C-1">{base64.b64encode(b"part").decode()}'
        f'</rsp:Stream><rsp:CommandState CommandId="C-1" State="{SHELL}CommandState/Running"/></rsp:ReceiveResponse>'
    )
    for body in (RECEIVE_DONE, running):
        reply = f"<s:Envelope {NS}><s:Body>{body}</s:Body></s:Envelope>".encode()
        stock = Protocol("https://h:5986/wsman", username="u", password="p")
        stock.transport = Recorder(lambda _, r=reply: r)
        assert envelopes.output(reply) == stock.get_command_output_raw("S-1", "C-1")
    assert envelopes.output(f"<s:Envelope {NS}><s:Body>{RECEIVE_DONE}</s:Body></s:Envelope>".encode()) == (
        b"hello world",
        b"warn",
        3,
        True,
    )


def test_a_reply_without_what_the_operation_returns_is_a_protocol_failure() -> None:
    lean = LeanTransport(settings())
    empty = f"<s:Envelope {NS}><s:Body/></s:Envelope>".encode()
    lean._protocol = LeanProtocol(lean.settings, Recorder(lambda _: empty))  # type: ignore[arg-type]
    with pytest.raises(TransportError) as caught:
        lean._call(lambda p: p.open_shell())
    assert caught.value.kind == PROTOCOL and "names no shell" in caught.value.message
    lean._protocol = LeanProtocol(lean.settings, Recorder(lambda _: b"not xml"))  # type: ignore[arg-type]
    with pytest.raises(TransportError) as caught:
        lean._call(lambda p: p.open_shell())
    assert caught.value.kind == PROTOCOL


# Faults: pywinrm's reading, our words --------------------------------------------------------------


def fault(code: int, *, wmi: bool = False) -> str:
    detail = f'<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="{code}"/>'
    if wmi:
        detail += (
            '<p:MSFT_WmiError xmlns:p="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/MSFT_WmiError">'
            f"<p:error_Code>{code}</p:error_Code></p:MSFT_WmiError>"
        )
    return (
        f"<s:Envelope {NS}><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">Something went wrong.\nSecond line.</s:Text></s:Reason>'
        f"<s:Detail>{detail}</s:Detail></s:Fault></s:Body></s:Envelope>"
    )


class Failing(Recorder):
    def __init__(self, status: int, body: str) -> None:
        super().__init__()
        self.status, self.body = status, body

    def send_message(self, message: str | bytes) -> bytes:
        raise WinRMTransportError("http", self.status, self.body)


@pytest.mark.parametrize(
    ("status", "body", "kind", "transient", "words"),
    [
        (500, fault(170), FAULT, True, "WinRM fault 170: Something went wrong."),
        (500, fault(2150858843), FAULT, True, "WinRM fault 2150858843"),
        (500, fault(2150859174, wmi=True), FAULT, True, "WinRM fault 2150859174"),
        (500, fault(2150858817), FAULT, False, "WinRM fault 2150858817"),
        (500, fault(2150858793), TIMEOUT, True, "timed out"),
        (413, "", PROTOCOL, False, "MaxEnvelopeSizekb"),
        (503, "<html>busy</html>", PROTOCOL, False, "HTTP 503"),
    ],
)
def test_faults_are_read_by_pywinrm_and_put_into_words(
    status: int, body: str, kind: str, transient: bool, words: str
) -> None:
    lean = LeanTransport(settings())
    lean._protocol = LeanProtocol(lean.settings, Failing(status, body))  # type: ignore[arg-type]
    with pytest.raises(TransportError) as caught:
        lean._call(lambda p: p.run_command("S-1", "hostname"))
    assert (caught.value.kind, caught.value.transient) == (kind, transient)
    assert words in caught.value.message
    assert "\n" not in caught.value.message


def test_the_servers_wait_running_out_is_an_empty_round_not_a_failure() -> None:
    lean = LeanTransport(settings())
    lean._protocol = LeanProtocol(lean.settings, Failing(500, fault(2150858793)))  # type: ignore[arg-type]
    lean._shell = "S-1"
    from provision.transport.winrm import WinRMCommand

    output = WinRMCommand(lean, "S-1", "C-1").receive()
    assert (output.stdout, output.done, output.exit_code) == (b"", False, None)


def test_stock_exceptions_keep_their_meaning() -> None:
    s = settings()
    cut = translate(requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"), s)
    assert (cut.kind, cut.transient) == (RESET, True) and "reset" in cut.message
    clock = Clock(30, "127.0.0.1:5986")
    clock.deadline = time.monotonic() - 1
    late = translate(requests.exceptions.ReadTimeout("read timed out"), s, clock)
    assert late.kind == TIMEOUT and "time limit" in late.message
    assert isinstance(translate(WSManFaultError(500, "", "", "r", wsman_fault_code=170), s), TransportError)
    assert translate(WinRMOperationTimeoutError(), s).transient


# Which transport -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "auth", "prefer", "chosen"),
    [
        ("https", "ntlm", "auto", LeanTransport),
        ("http", "ntlm", "auto", LeanTransport),
        ("https", "basic", "auto", LeanTransport),
        ("https", "kerberos", "auto", WinRMTransport),
        ("http", "kerberos", "auto", WinRMTransport),
        ("https", "ntlm", "pywinrm", WinRMTransport),
        ("https", "ntlm", "lean", LeanTransport),
    ],
)
def test_open_transport_takes_the_lean_one_where_it_applies(
    scheme: str, auth: str, prefer: str, chosen: type[WinRMTransport]
) -> None:
    transport = open_transport(settings("ws-01.corp.example", scheme, auth), prefer)
    assert type(transport) is chosen


def test_open_transport_refuses_what_cannot_work() -> None:
    with pytest.raises(TransportError) as caught:
        open_transport(settings("ws-01.corp.example", "https", "kerberos"), "lean")
    assert caught.value.kind == AUTH
    with pytest.raises(TransportError):
        open_transport(settings(scheme="http", auth="basic"))
    for prefer in ("auto", "pywinrm"):  # a password for whoever answers: never
        with pytest.raises(TransportError, match="no-verify-tls") as caught:
            open_transport(settings(scheme="https", auth="basic", verify_tls=False), prefer)
        assert caught.value.kind == AUTH
    with pytest.raises(ValueError, match="unknown transport"):
        open_transport(settings(), "fastest")


@pytest.mark.parametrize("address", ["10.1.2.3", "fe80::1", "[2001:db8::7]"])
def test_kerberos_to_an_ip_address_is_refused_with_the_reason(address: str) -> None:
    with pytest.raises(TransportError) as caught:
        open_transport(settings(address, "https", "kerberos"))
    assert caught.value.kind == AUTH
    assert "Kerberos needs the host's DNS name" in caught.value.message and "HTTP/<name>" in caught.value.message


def test_the_deadline_reaches_the_transport() -> None:
    deadline = time.monotonic() + 7
    transport = open_transport(settings(), deadline=deadline)
    assert isinstance(transport, WinRMTransport) and transport.clock.deadline == deadline


def test_clock_bounds_each_wait_by_what_is_left() -> None:
    clock = Clock(30, "h:1")
    assert clock.wait() == 30
    clock.deadline = time.monotonic() + 5
    assert 4 < clock.wait() <= 5
    clock.deadline = time.monotonic() - 0.01
    with pytest.raises(TransportError) as caught:
        clock.wait()
    assert caught.value.kind == TIMEOUT and not caught.value.transient


# The HTTP channel against scripted replies ------------------------------------------------------


class Scripted:
    """A loopback listener for one connection: each step answers one request with raw bytes,
    "close" ends the connection, "silence" holds the request unanswered."""

    def __init__(self, steps: list[bytes | str]) -> None:
        self.steps = steps
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            buffer = b""
            for step in self.steps:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + buffer[:length])
                buffer = buffer[length:]
                if step == "close":
                    return
                if step == "silence":
                    time.sleep(3)
                    return
                assert isinstance(step, bytes)
                for i in range(0, len(step), 7):  # in small pieces, as a slow network delivers them
                    conn.sendall(step[i : i + 7])

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def scripted() -> Iterator[Callable[[list[bytes | str]], tuple[Scripted, HTTPChannel]]]:
    made: list[Scripted] = []

    def make(steps: list[bytes | str]) -> tuple[Scripted, HTTPChannel]:
        server = Scripted(steps)
        made.append(server)
        channel = HTTPChannel("127.0.0.1", server.port, None, Clock(5, f"127.0.0.1:{server.port}"))
        channel.connect()
        return server, channel

    yield make
    for server in made:
        server.close()


def test_replies_by_length_chunks_and_interim_status(scripted: Any) -> None:
    server, channel = scripted(
        [
            b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Negotiate\r\n"
            b"WWW-Authenticate: Basic realm=WSMAN\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 500 Error\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno",
        ]
    )
    first = channel.post("/wsman", {"Content-Type": "application/soap+xml"}, b"<one/>")
    assert (first.status, first.body, first.header("content-type")) == (200, b"hello", "text/xml")
    assert channel.post("/wsman", {}, b"").body == b"abcde"
    denied = channel.post("/wsman", {}, b"")
    assert denied.status == 401 and denied.headers["www-authenticate"] == ["Negotiate", "Basic realm=WSMAN"]
    last = channel.post("/wsman", {}, b"x" * 100_000)
    assert (last.status, last.body) == (500, b"no") and not channel.open  # the listener said close
    assert server.requests[0].startswith(b"POST /wsman HTTP/1.1\r\nHost: 127.0.0.1:")
    assert server.requests[0].endswith(b"Content-Length: 6\r\n\r\n<one/>")
    assert len(server.requests[3]) > 100_000


def test_a_reply_cut_off_is_a_transient_reset(scripted: Any) -> None:
    _, channel = scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"])
    with pytest.raises(TransportError) as caught:
        channel.post("/wsman", {}, b"")
    assert (caught.value.kind, caught.value.transient) == (RESET, True) and "reset" in caught.value.message
    assert not channel.open


def test_a_connection_closed_before_the_reply_is_a_transient_reset(scripted: Any) -> None:
    _, channel = scripted(["close"])
    with pytest.raises(TransportError) as caught:
        channel.post("/wsman", {}, b"")
    assert caught.value.transient and "reset" in caught.value.message


def test_not_http_is_a_protocol_failure(scripted: Any) -> None:
    _, channel = scripted([b"SSH-2.0-OpenSSH\r\n\r\n"])
    with pytest.raises(TransportError) as caught:
        channel.post("/wsman", {}, b"")
    assert caught.value.kind == PROTOCOL


def test_a_silent_listener_ends_at_the_deadline(scripted: Any) -> None:
    _, channel = scripted(["silence"])
    channel.clock.deadline = time.monotonic() + 0.3
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        channel.post("/wsman", {}, b"")
    assert caught.value.kind == TIMEOUT and "time limit" in caught.value.message
    assert time.monotonic() - started < 2  # not the 5 s cap


# NTLM and TLS helpers ----------------------------------------------------------------------------


@pytest.fixture
def ntlm_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "users"
    store.write_text(":admin:pw\n", "utf-8")
    monkeypatch.setenv("NTLM_USER_FILE", str(store))


@pytest.mark.usefixtures("ntlm_account")
def test_sealed_messages_round_trip_and_tampering_is_caught() -> None:
    client = ntlm.new_context("admin", "pw")
    server = spnego.server(protocol="ntlm")
    challenge = server.step(client.step())
    server.step(client.step(challenge))
    assert client.complete and server.complete
    body = ntlm.seal(client, b"<env:Envelope/>")
    assert b"<env:Envelope/>" not in body and b"Length=15" in body
    sealed = body.split(b"application/octet-stream\r\n", 1)[1]
    size = int.from_bytes(sealed[:4], "little")
    clear = server.unwrap_winrm(sealed[4 : 4 + size], sealed[4 + size :].removesuffix(ntlm.BOUNDARY + b"--\r\n"))
    assert clear == b"<env:Envelope/>"
    reply = ntlm.seal(server, b"<s:Envelope>reply</s:Envelope>")
    assert ntlm.unseal(client, reply) == b"<s:Envelope>reply</s:Envelope>"
    with pytest.raises(ntlm.SealError):
        ntlm.unseal(client, ntlm.seal(server, b"x").replace(b"Length=1", b"Length=2"))


@pytest.mark.usefixtures("ntlm_account")
def test_a_clear_reply_on_a_sealed_connection_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over http with NTLM every message is sealed; a 200 that is not came from someone between."""
    connection = Connection(settings(scheme="http"), Clock(5, "ws-01:5985"))
    client = ntlm.new_context("admin", "pw")
    server = spnego.server(protocol="ntlm")
    server.step(client.step(server.step(client.step())))
    connection._context, connection._sealed = client, True
    monkeypatch.setattr(type(connection._channel), "open", property(lambda _: True))
    replies = [
        Reply(200, {"content-type": [ntlm.CONTENT_TYPE]}, ntlm.seal(server, b"<s:Envelope>ok</s:Envelope>")),
        Reply(200, {"content-type": ["application/soap+xml;charset=UTF-8"]}, b"<s:Envelope>forged</s:Envelope>"),
    ]
    monkeypatch.setattr(connection, "_post", lambda body, headers: replies.pop(0))
    assert connection.send_message(b"<one/>") == b"<s:Envelope>ok</s:Envelope>"
    with pytest.raises(TransportError) as caught:
        connection.send_message(b"<two/>")
    assert caught.value.kind == PROTOCOL and "unsealed" in caught.value.message
    assert not connection._sealed  # dropped: the next message authenticates anew


@pytest.mark.usefixtures("ntlm_account")
def test_a_sealed_reply_on_a_connection_the_listener_then_closes_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connection: close on a sealed 200: the reply is unsealed; the next message connects anew."""
    connection = Connection(settings(scheme="http"), Clock(5, "ws-01:5985"))
    client = ntlm.new_context("admin", "pw")
    server = spnego.server(protocol="ntlm")
    server.step(client.step(server.step(client.step())))
    connection._context, connection._sealed = client, True
    channel = connection._channel
    monkeypatch.setattr(type(channel), "open", property(lambda c: getattr(c, "_fake_open", True)))
    reconnects: list[bool] = []
    monkeypatch.setattr(connection, "_connect", lambda: reconnects.append(True))

    def post(path: str, headers: dict[str, str], body: bytes) -> Reply:
        channel._fake_open = False  # type: ignore[attr-defined]  # the listener closed it after replying
        return Reply(200, {"content-type": [ntlm.CONTENT_TYPE]}, ntlm.seal(server, b"<s:Envelope>ok</s:Envelope>"))

    monkeypatch.setattr(channel, "post", post)
    assert connection.send_message(b"<one/>") == b"<s:Envelope>ok</s:Envelope>"
    assert not reconnects
    with contextlib.suppress(Exception):
        connection.send_message(b"<two/>")
    assert reconnects == [True]  # a closed connection is opened (and authenticated) again


def test_pywinrm_too_refuses_a_clear_reply_on_a_sealed_connection() -> None:
    from types import SimpleNamespace

    from provision.transport.winrm import _BoundedTransport

    transport = _BoundedTransport(
        Clock(5, "ws-01:5985"), None, endpoint="http://ws-01:5985/wsman", auth_method="ntlm", username="a", password="p"
    )
    transport.encryption = SimpleNamespace(protocol_string=b"application/HTTP-SPNEGO-session-encrypted")  # type: ignore[assignment]
    forged = requests.Response()
    forged.status_code, forged._content = 200, b"<s:Envelope>forged</s:Envelope>"
    forged.headers["Content-Type"] = "application/soap+xml;charset=UTF-8"
    with pytest.raises(TransportError) as caught:
        transport._get_message_response_text(forged)
    assert caught.value.kind == PROTOCOL and "unsealed" in caught.value.message
    fault = requests.Response()
    fault.status_code, fault._content = 500, b"<s:Fault/>"
    fault.headers["Content-Type"] = "application/soap+xml;charset=UTF-8"
    transport.encryption = None  # (a clear fault is read as pywinrm reads it)
    assert transport._get_message_response_text(fault) == b"<s:Fault/>"


def test_password_hashes_are_computed_once_per_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    real = spnego.client

    def counting(*args: Any, **kwargs: Any) -> Any:
        made.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(ntlm.spnego, "client", counting)
    first = ntlm.new_context("once-only", "pw-1")
    second = ntlm.new_context("once-only", "pw-1")
    ntlm.new_context("once-only", "pw-2")
    assert made == ["once-only", "once-only"]  # one template per password, not one per connection
    assert first is not second and not first.complete


def certificate(algorithm: hashes.HashAlgorithm) -> bytes:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ws")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, algorithm)
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("algorithm", "digest"),
    [(hashes.SHA256(), hashlib.sha256), (hashes.SHA384(), hashlib.sha384), (hashes.SHA512(), hashlib.sha512)],
)
def test_channel_binding_hashes_the_certificate_as_rfc_5929_says(algorithm: Any, digest: Any) -> None:
    der = certificate(algorithm)
    assert tls.channel_binding(der) == b"tls-server-end-point:" + digest(der).digest()


def test_tls_contexts_are_made_once_per_bundle_and_the_system_store_follows_openssl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, *_ = make_certificates(tmp_path, ["127.0.0.1"])
    assert tls.client_context(str(ca), True) is tls.client_context(str(ca), True)
    assert tls.client_context(str(ca), True) is not tls.client_context(None, True)
    unchecked = tls.client_context(None, False)
    assert not unchecked.check_hostname
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    assert tls.system_trust_location() == str(ca)
