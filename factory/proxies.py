"""GSI proxy certificates (RFC 3820): delegating the factory's proxy to a CE, in Python.

A CE that wants a credential for its jobs (ARC's delegation interface, CREAM's delegation
service) sends a certificate request; the factory signs it with its own proxy's key and
sends back the new proxy with the chain above it.  The delegated proxy never outlives
the one it comes from.
"""

from __future__ import annotations

import base64
import datetime
import os
import re
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

PROXY_CERT_INFO = ObjectIdentifier("1.3.6.1.5.5.7.1.14")
PCI_INHERIT_ALL = bytes.fromhex("300c300a06082b06010505071501")  # ProxyCertInfo: policy inheritAll
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)
_PEM_KEY = re.compile(
    rb"-----BEGIN (?:RSA |EC )?PRIVATE KEY-----.*?-----END (?:RSA |EC )?PRIVATE KEY-----", re.S
)


class ProxyError(ValueError):
    pass


def load_proxy(pem: bytes) -> tuple[x509.Certificate, rsa.RSAPrivateKey, list[x509.Certificate]]:
    """(proxy certificate, its key, every certificate in the file) from a GSI proxy file."""
    certificates = [x509.load_pem_x509_certificate(block) for block in _PEM_CERT.findall(pem)]
    key_block = _PEM_KEY.search(pem)
    if not certificates or key_block is None:
        raise ProxyError("not a proxy file: it needs a certificate and its private key")
    key = serialization.load_pem_private_key(key_block.group(0), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ProxyError("the proxy's key is not an RSA key")
    return certificates[0], key, certificates


def time_left(path: Path) -> float:
    """Seconds until the proxy in ``path`` expires (negative: expired)."""
    certificate = load_proxy(path.read_bytes())[0]
    return (certificate.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).total_seconds()


def _der_length(data: bytes | bytearray, index: int) -> tuple[int, int]:
    first = data[index]
    if first < 0x80:
        return first, index + 1
    count = first & 0x7F
    return int.from_bytes(data[index + 1 : index + 1 + count], "big"), index + 1 + count


def load_request(pem: bytes) -> x509.CertificateSigningRequest:
    """A CE's certificate request.  A-REX 6.17 writes version 2 where 0 belongs, which
    ``cryptography`` refuses; only the public key is used, so the version byte is mended."""
    try:
        return x509.load_pem_x509_csr(pem)
    except (ValueError, x509.InvalidVersion):
        pass
    body = b"".join(line for line in pem.strip().splitlines() if not line.startswith(b"-----"))
    der = bytearray(base64.b64decode(body))
    _, info = _der_length(der, 1)
    _, version = _der_length(der, info + 1)
    if der[0] != 0x30 or der[info] != 0x30 or der[version] != 0x02 or der[version + 1] != 0x01:
        raise ProxyError("cannot read the CE's certificate request")
    der[version + 2] = 0
    return x509.load_der_x509_csr(bytes(der))


def sign_proxy(
    issuer: x509.Certificate, issuer_key: rsa.RSAPrivateKey, public_key: rsa.RSAPublicKey, hours: float = 12.0
) -> x509.Certificate:
    """An RFC 3820 impersonation proxy for ``public_key``; it ends no later than its issuer."""
    serial = secrets.randbits(31) | 1
    now = datetime.datetime.now(datetime.UTC)
    not_after = min(now + datetime.timedelta(hours=hours), issuer.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([*issuer.subject, x509.NameAttribute(NameOID.COMMON_NAME, str(serial))]))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.UnrecognizedExtension(PROXY_CERT_INFO, PCI_INHERIT_ALL), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def delegate(proxy_pem: bytes, request_pem: bytes, hours: float = 12.0) -> bytes:
    """The answer to a CE's delegation request: the new proxy, then our proxy and its chain (PEM)."""
    proxy, key, chain = load_proxy(proxy_pem)
    public_key = load_request(request_pem).public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ProxyError("the CE's certificate request does not hold an RSA key")
    delegated = sign_proxy(proxy, key, public_key, hours)
    return delegated.public_bytes(serialization.Encoding.PEM) + b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in chain
    )


def make_proxy(cert_path: Path, key_path: Path, out_path: Path, hours: float = 12.0) -> None:
    """grid-proxy-init in Python: proxy certificate, its key, then the user certificate (mode 0600)."""
    user = x509.load_pem_x509_certificate(cert_path.read_bytes())
    user_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(user_key, rsa.RSAPrivateKey):
        raise ProxyError("the user key is not an RSA key")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    proxy = sign_proxy(user, user_key, key.public_key(), hours)
    pem = (
        proxy.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        + user.public_bytes(serialization.Encoding.PEM)
    )
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(out_path, 0o600)
