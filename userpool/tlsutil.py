"""A private CA and a server certificate for the pool's optional HTTPS, made on first start."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _covers(server_pem: Path, hosts: list[str]) -> bool:
    """Whether the certificate already names every host asked for."""
    try:
        cert = x509.load_pem_x509_certificate(server_pem.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    have = {str(n) for n in names.get_values_for_type(x509.DNSName)}
    have |= {str(n) for n in names.get_values_for_type(x509.IPAddress)}
    return all(host in have for host in hosts)


def ensure_certificates(directory: Path, hosts: list[str]) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key) in ``directory``: made on first start, and the server's
    certificate made again (by the same CA, so clients keep trusting it) when new names are asked for."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_pem, server_pem, server_key = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_key_path = directory / "ca.key"
    if ca_pem.exists() and server_pem.exists() and server_key.exists() and _covers(server_pem, hosts):
        return ca_pem, server_pem, server_key
    now = datetime.datetime.now(datetime.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Updraft pool CA")])
    if ca_pem.exists() and ca_key_path.exists():
        kept = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
        if isinstance(kept, ec.EllipticCurvePrivateKey):
            _server(directory, hosts, kept, x509.load_pem_x509_certificate(ca_pem.read_bytes()), now)
            return ca_pem, server_pem, server_key
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(
        ca_key_path,
        ca_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    os.chmod(directory, 0o755)  # clients on this host read the CA; the keys stay 0600
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(ca_pem, 0o644)
    _server(directory, hosts, ca_key, ca_cert, now)
    return ca_pem, server_pem, server_key


def _server(
    directory: Path, hosts: list[str], ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
    now: datetime.datetime,
) -> None:  # fmt: skip
    """A server certificate for ``hosts``, signed by the pool's CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_pem = directory / "server.pem"
    server_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(server_pem, 0o644)
    _write_private(
        directory / "server.key",
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
