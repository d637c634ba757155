"""NTLM through pyspnego: the password hashes once per credentials, one context per connection.

pyspnego computes the LM and NT hashes of a password (DES and MD4 in pure Python) whenever a
context is made from it. A fleet run uses one account, so the first context is kept as a
template and every connection gets `template.new_context()`, which carries the hashes, not
the password. The channel binding (RFC 5929, over HTTPS) is given per connection, since each
workstation has its own certificate.

Over HTTP the messages themselves are sealed (MS-WSMV 2.2.9.1.1, "Negotiate" encryption):
a multipart/encrypted body holding the original length, the NTLM signature and the sealed
SOAP envelope.
"""

from __future__ import annotations

import hashlib
import struct
import threading

import spnego
import spnego.exceptions
from spnego.channel_bindings import GssChannelBindings

_LOCK = threading.Lock()
_TEMPLATES: dict[tuple[str, bytes], spnego.ContextProxy] = {}

BOUNDARY = b"--Encrypted Boundary"
PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
CONTENT_TYPE = f'multipart/encrypted;protocol="{PROTOCOL}";boundary="Encrypted Boundary"'


class SealError(ValueError):
    """An encrypted reply that does not unseal: tampered with, or not ours."""


def new_context(username: str, password: str) -> spnego.ContextProxy:
    """An NTLM initiator for one connection; the hashes are computed once per (username, password)."""
    key = (username, hashlib.sha256(password.encode("utf-8")).digest())
    template = _TEMPLATES.get(key)
    if template is None:
        with _LOCK:
            template = _TEMPLATES.get(key)
            if template is None:
                template = _TEMPLATES[key] = spnego.client(
                    username,
                    password,
                    service="HTTP",
                    protocol="ntlm",
                    options=spnego.NegotiateOptions.use_ntlm,
                )
    return template.new_context()


def bindings(application_data: bytes) -> GssChannelBindings:
    return GssChannelBindings(application_data=application_data)


def seal(context: spnego.ContextProxy, message: bytes) -> bytes:
    """A SOAP envelope as the multipart/encrypted body pywinrm sends."""
    wrapped = context.wrap_winrm(message)
    return b"".join(
        (
            BOUNDARY,
            b"\r\n\tContent-Type: ",
            PROTOCOL.encode(),
            b"\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=",
            str(len(message)).encode(),
            b"\r\n",
            BOUNDARY,
            b"\r\n\tContent-Type: application/octet-stream\r\n",
            struct.pack("<i", len(wrapped.header)),
            wrapped.header,
            wrapped.data,
            BOUNDARY,
            b"--\r\n",
        )
    )


def unseal(context: spnego.ContextProxy, body: bytes) -> bytes:
    """The SOAP envelope inside a multipart/encrypted reply; checks its length as pywinrm does."""
    parts = [p for p in body.split(BOUNDARY + b"\r\n") if p]
    message = b""
    for header, payload in zip(parts[0::2], parts[1::2], strict=False):
        try:
            expected = int(header.strip().split(b"Length=")[1])
            data = payload.removesuffix(BOUNDARY + b"--\r\n")
            data = data.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
            size = struct.unpack("<i", data[:4])[0]
            clear = context.unwrap_winrm(data[4 : 4 + size], data[4 + size :])
        except (IndexError, ValueError, struct.error, spnego.exceptions.SpnegoError) as exc:
            raise SealError(f"the sealed reply does not unseal ({type(exc).__name__})") from None
        if len(clear) != expected:
            raise SealError("the sealed reply's length does not match what it says")
        message += clear
    if len(parts) < 2:
        raise SealError("the sealed reply has no sealed part")
    return message
