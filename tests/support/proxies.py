"""Throwaway X.509 material for tests: a CA, host and user certificates, RFC 3820 proxies.

The proxy signing is the factory's own (factory.proxies); this module only makes the
certificates above it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from factory.proxies import make_proxy


def _name(*parts: tuple[object, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts])


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _certificate(
    subject: x509.Name, issuer: x509.Name, public_key: rsa.RSAPublicKey, signer: rsa.RSAPrivateKey, days: int, ca: bool = False,
    host: str | None = None,
) -> x509.Certificate:  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if host:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


@dataclass
class GridCredentials:
    """A CA, a host certificate for localhost and a user with a proxy: a grid in a directory."""

    directory: Path
    user_dn: str

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def host_cert(self) -> Path:
        return self.directory / "hostcert.pem"

    @property
    def host_key(self) -> Path:
        return self.directory / "hostkey.pem"

    @property
    def user_cert(self) -> Path:
        return self.directory / "usercert.pem"

    @property
    def user_key(self) -> Path:
        return self.directory / "userkey.pem"

    @property
    def proxy(self) -> Path:
        return self.directory / "x509up"

    def new_proxy(self, hours: float = 12, path: Path | None = None) -> Path:
        make_proxy(self.user_cert, self.user_key, path or self.proxy, hours)
        return path or self.proxy


def make_grid(directory: Path, user: str = "Updraft Factory") -> GridCredentials:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = _name((NameOID.ORGANIZATION_NAME, "UpdraftTest"), (NameOID.COMMON_NAME, "Updraft Test CA"))
    ca = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, 3650, ca=True)
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    host_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    host_name = _name((NameOID.ORGANIZATION_NAME, "UpdraftTest"), (NameOID.COMMON_NAME, "localhost"))
    host = _certificate(host_name, ca_name, host_key.public_key(), ca_key, 365, host="localhost")
    (directory / "hostcert.pem").write_bytes(host.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / "hostkey.pem", host_key)
    user_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    user_name = _name(
        (NameOID.ORGANIZATION_NAME, "UpdraftTest"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "People"),
        (NameOID.COMMON_NAME, user),
    )
    user_cert = _certificate(user_name, ca_name, user_key.public_key(), ca_key, 365)
    (directory / "usercert.pem").write_bytes(user_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / "userkey.pem", user_key)
    grid = GridCredentials(directory, f"/O=UpdraftTest/OU=People/CN={user}")
    grid.new_proxy(48)
    return grid


def make_user_proxy(path: Path, hours: float = 12, common_name: str = "Alice Tester") -> str:
    """A proxy for a self-signed user (what the pilot tests need); returns the user's DN."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = _name(
        (NameOID.COUNTRY_NAME, "US"),
        (NameOID.ORGANIZATION_NAME, "Updraft Tests"),
        (NameOID.COMMON_NAME, common_name),
    )
    certificate = _certificate(name, name, key.public_key(), key, 30)
    cert_path, key_path = path.with_name(path.name + ".usercert"), path.with_name(path.name + ".userkey")
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    try:
        make_proxy(cert_path, key_path, path, hours)
    finally:
        cert_path.unlink()
        key_path.unlink()
    return "/C=US/O=Updraft Tests/CN=" + common_name
