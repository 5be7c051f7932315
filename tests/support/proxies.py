"""Throwaway X.509 material for tests: a self-signed user certificate and an RFC 3820 proxy."""

from __future__ import annotations

import datetime
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

PROXY_CERT_INFO = ObjectIdentifier("1.3.6.1.5.5.7.1.14")
PCI_INHERIT_ALL = bytes.fromhex("300c300a06082b06010505071501")  # ProxyCertInfo: inherit all


def make_user_proxy(path: Path, hours: float = 12, common_name: str = "Alice Tester") -> str:
    """Write a proxy (proxy cert, its key, the user cert) to ``path``; returns the user DN."""
    now = datetime.datetime.now(datetime.UTC)
    user_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    user_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Updraft Tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    user_cert = (
        x509.CertificateBuilder()
        .subject_name(user_name)
        .issuer_name(user_name)
        .public_key(user_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(user_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    serial = secrets.randbits(31) | 1
    proxy = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([*user_name, x509.NameAttribute(NameOID.COMMON_NAME, str(serial))]))
        .issuer_name(user_name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=hours))
        .add_extension(x509.UnrecognizedExtension(PROXY_CERT_INFO, PCI_INHERIT_ALL), critical=True)
        .sign(user_key, hashes.SHA256())
    )
    pem = (
        proxy.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        + user_cert.public_bytes(serialization.Encoding.PEM)
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return "/C=US/O=Updraft Tests/CN=" + common_name
