"""A job's own X.509 proxy: the attributes condor_submit derives from it."""

from __future__ import annotations

import time

from cryptography import x509
from cryptography.x509.oid import NameOID

from updraft.core.errors import BadRequest
from updraft.core.protocol import quote

_SHORT = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.EMAIL_ADDRESS: "emailAddress",
}


def openssl_dn(name: x509.Name) -> str:
    """'/C=US/O=Org/CN=Name', the form grid tools and grid-mapfiles use."""
    return "".join(f"/{_SHORT.get(a.oid, a.oid.dotted_string)}={a.value}" for a in name)


def load_chain(path: str) -> list[x509.Certificate]:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise BadRequest(f"cannot read proxy file {path}: {exc.strerror}") from None
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise BadRequest(f"{path} holds no PEM certificate") from None
    return chain


def identity_of(chain: list[x509.Certificate]) -> x509.Certificate:
    """The end-entity certificate: the first one in the chain that is not an RFC 3820 proxy."""
    for cert in chain:
        try:
            cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14"))
        except x509.ExtensionNotFound:
            return cert
    return chain[-1]


def proxy_attributes(path: str, now: float | None = None) -> dict[str, str]:
    chain = load_chain(path)
    proxy = chain[0]
    expires = int(proxy.not_valid_after_utc.timestamp())
    if expires <= (now if now is not None else time.time()):
        raise BadRequest(
            f"the proxy in {path} expired at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(expires))}"
        )
    return {
        "x509userproxy": quote(path),
        "x509userproxysubject": quote(openssl_dn(identity_of(chain).subject)),
        "x509UserProxyExpiration": str(expires),
    }
