"""A throwaway test CA and one server certificate for every lab address (IP SANs).

The CA looks like an internal Active Directory Certificate Services root, the kind an
admin's workstations trust through their system store: a name under the domain's DC
components and the CA Version extension AD CS puts in every CA certificate
(szOID_CERTSRV_CA_VERSION, 1.3.6.1.4.1.311.21.1; value 0 for a CA's first key).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

BLOCK = 250  # addresses per workstation certificate
SERVER_CERTIFICATES = "server-certificates.json"
CA_VERSION = x509.ObjectIdentifier("1.3.6.1.4.1.311.21.1")  # szOID_CERTSRV_CA_VERSION
CA_NAME = x509.Name(
    [
        x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example"),
        x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "lab"),
        x509.NameAttribute(NameOID.COMMON_NAME, "provision lab test CA"),
    ]
)


def make_certificates(folder: Path, addresses: list[str]) -> tuple[Path, Path, Path, bytes]:
    """Write ca.pem, the workstation certificates and their key (server.key) into folder.

    One certificate per BLOCK addresses (server.pem for the first, server-1.pem, ...; the file
    server-certificates.json says which address has which): a client checks an address against
    a certificate's names one by one, so one certificate naming every address of a large lab
    would make each handshake cost more as the lab grows, which no real workstation does.
    Returns the CA, the first certificate, the key, and the first certificate as DER."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = CA_NAME
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.UnrecognizedExtension(CA_VERSION, b"\x02\x01\x00"), critical=False)  # INTEGER 0
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())  # one key for every workstation certificate
    folder.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    blocks = [addresses[i : i + BLOCK] for i in range(0, len(addresses), BLOCK)] or [[]]
    index: dict[str, str] = {}
    first = b""
    for number, block in enumerate(blocks):
        sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(a)) for a in block]
        sans.append(x509.DNSName("localhost"))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provision lab workstation")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        path = cert_path if number == 0 else folder / f"server-{number}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        index |= dict.fromkeys(block, path.name)
        first = first or cert.public_bytes(serialization.Encoding.DER)
    (folder / SERVER_CERTIFICATES).write_text(json.dumps(index), "utf-8")
    return ca_path, cert_path, key_path, first
