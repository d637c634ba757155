"""doctor's probes and judgements that need no lab: TLS chain, name and expiry against a small
TLS server on loopback; the authentication a listener offers; WinRM settings."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provision.doctor import FAIL, OK, WARN, Diagnosis, auth_step, dotnet_version, judge_winrm, tls_step
from provision.jobs import Endpoint
from provision.session import SessionOptions

NOW = dt.datetime.now(dt.UTC)


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, text)])


def certificates(folder: Path, ip: str, *, days: int = 365, expired: bool = False) -> tuple[Path, Path, Path]:
    """(ca.pem, cert.pem, key.pem): a CA and a server certificate for `ip` it signed."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=400))
        .not_valid_after(NOW + dt.timedelta(days=400))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = (
        (NOW - dt.timedelta(days=30), NOW - dt.timedelta(days=1)) if expired else (NOW, NOW + dt.timedelta(days=days))
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(ip))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - dt.timedelta(minutes=1))
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@contextmanager
def tls_server(cert: Path, key: Path) -> Iterator[int]:
    """A TLS server on 127.0.0.1 that completes handshakes until closed; yields its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.mark.parametrize(
    ("case", "status", "words"),
    [
        ("good", OK, "trusted, name matches"),
        ("expiring", WARN, "expires in"),
        ("expired", FAIL, "expired on"),
        ("other name", FAIL, "not for 127.0.0.1"),
        ("unknown CA", FAIL, "not trusted"),
    ],
)
def test_the_certificate_is_judged_on_chain_name_and_expiry(tmp_path: Path, case: str, status: str, words: str) -> None:
    ip = "127.0.0.2" if case == "other name" else "127.0.0.1"
    ca, cert, key = certificates(tmp_path, ip, days=5 if case == "expiring" else 365, expired=case == "expired")
    (tmp_path / "other").mkdir()
    bundle = certificates(tmp_path / "other", "127.0.0.1")[0] if case == "unknown CA" else ca
    with tls_server(cert, key) as port:
        step = tls_step("127.0.0.1", port, bundle)
    assert step.status == status and words in step.detail, step
    if status != OK:
        assert step.fix


TARGET = Endpoint("ws-01", "https", 5986, "ntlm", None, None)


def test_the_authentication_offered_is_read_from_the_401() -> None:
    ok = auth_step(401, ["Negotiate", 'Basic realm="WSMAN"'], TARGET)
    assert ok.status == OK and "Basic, Negotiate" in ok.detail
    basic_only = auth_step(401, ['Basic realm="WSMAN"'], TARGET)
    assert basic_only.status == FAIL and "not ntlm" in basic_only.detail
    kerberos = auth_step(401, ["Negotiate"], Endpoint("ws-01", "https", 5986, "kerberos", None, None))
    assert kerberos.status == OK
    assert auth_step(200, [], TARGET).status == WARN


def test_dotnet_release_numbers_name_the_version() -> None:
    assert dotnet_version(528040) == "4.8" and dotnet_version(461814) == "4.7.2"
    assert dotnet_version(378389) == "4.5" and dotnet_version(1000) is None and dotnet_version(None) is None


def test_winrm_settings_are_judged_against_the_inventory() -> None:
    def judged(winrm: dict[str, int], declared: int | None = None) -> dict[str, str]:
        result = Diagnosis("h", "")
        target = Endpoint("h", "https", 5986, "ntlm", None, declared)
        defaults = {"MaxMemoryPerShellMB": 1024, "MaxShellsPerUser": 30, "MaxConcurrentOperationsPerUser": 1500}
        judge_winrm(result, {**defaults, "IdleTimeout": 7200000, **winrm}, target, SessionOptions(timeout=120))
        return {s.name: s.status for s in result.steps}

    assert judged({"MaxEnvelopeSizekb": 500})["MaxEnvelopeSizekb"] == OK
    assert judged({"MaxEnvelopeSizekb": 150})["MaxEnvelopeSizekb"] == FAIL
    assert judged({"MaxEnvelopeSizekb": 150}, 150)["MaxEnvelopeSizekb"] == OK
    assert judged({"MaxEnvelopeSizekb": 500}, 2000)["MaxEnvelopeSizekb"] == FAIL
    assert judged({"MaxEnvelopeSizekb": 500, "IdleTimeout": 60000})["IdleTimeout"] == WARN
