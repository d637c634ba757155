"""TLS for WinRM over HTTPS: one context per CA bundle per process, the system's trust store by default.

An internal AD CS root is usually installed in the controller's trust store, not in certifi's
bundle, so without an inventory ca_bundle the operating system's store is what verifies
(OpenSSL's default verify paths, which SSL_CERT_FILE and SSL_CERT_DIR move). A ca_bundle,
when given, is the only trust anchor: it wins over the system store.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import threading
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

_LOCK = threading.Lock()
_CONTEXTS: dict[tuple[str | None, bool], ssl.SSLContext] = {}


def client_context(ca_bundle: str | None, verify: bool) -> ssl.SSLContext:
    """The process's context for this CA bundle (None: the system store); made once, shared by threads."""
    key = (ca_bundle, verify)
    context = _CONTEXTS.get(key)
    if context is None:
        with _LOCK:
            context = _CONTEXTS.get(key)
            if context is None:
                context = _CONTEXTS[key] = _make_context(ca_bundle, verify)
    return context


def _make_context(ca_bundle: str | None, verify: bool) -> ssl.SSLContext:
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=ca_bundle)


def forget_contexts() -> None:
    """Drop the cached contexts, so the next connection reads the trust store again."""
    with _LOCK:
        _CONTEXTS.clear()


def system_trust_location() -> str | bool:
    """Where requests (the stock pywinrm path) finds the system store: OpenSSL's default CA file or folder."""
    paths = ssl.get_default_verify_paths()
    if paths.cafile and os.path.isfile(paths.cafile):
        return paths.cafile
    if paths.capath and os.path.isdir(paths.capath):
        return paths.capath
    return True  # no system store found: requests' own bundle, still verified


@lru_cache(maxsize=256)
def channel_binding(certificate_der: bytes) -> bytes:
    """RFC 5929 tls-server-end-point: the server certificate's hash, SHA-256 unless it is signed with a longer one."""
    try:
        algorithm = x509.load_der_x509_certificate(certificate_der).signature_hash_algorithm
    except (ValueError, UnsupportedAlgorithm):
        algorithm = None
    if isinstance(algorithm, hashes.SHA384):
        digest = hashlib.sha384(certificate_der).digest()
    elif isinstance(algorithm, hashes.SHA512):
        digest = hashlib.sha512(certificate_der).digest()
    else:  # MD5, SHA-1 and SHA-256 all map to SHA-256
        digest = hashlib.sha256(certificate_der).digest()
    return b"tls-server-end-point:" + digest
