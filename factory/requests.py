"""The frontends' requests (glideclient ads), read and authenticated (what the factory publishes: advertising.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from factory.config import FactoryConfig
from factory.limits import Request
from updraft.core import protocol
from updraft.core.sealed import KeyPair, SealError, open_sealed


@dataclass
class Rejected:
    name: str
    why: str


def read_requests(
    ads: list[dict[str, str]], config: FactoryConfig, keys: KeyPair
) -> tuple[dict[tuple[str, str], Request], list[Rejected]]:
    """Requests addressed to our entries, keyed by (entry, client), and what was refused and why.

    A request counts only if the identity the pool authenticated is the frontend it names,
    and that frontend may use the entry.
    """
    accepted: dict[tuple[str, str], Request] = {}
    rejected: list[Rejected] = []
    for texts in ads:
        name = str(protocol.ad_value(texts, protocol.ATTR_NAME, "?"))
        entry_name = str(protocol.ad_value(texts, protocol.ATTR_REQ_ENTRY, ""))
        client = str(protocol.ad_value(texts, protocol.ATTR_CLIENT_NAME, ""))
        frontend = str(protocol.ad_value(texts, protocol.ATTR_FRONTEND_NAME, ""))
        forged = protocol.forged_author(texts, protocol.Scope.FRONTEND, frontend)
        if forged:
            rejected.append(Rejected(name, forged))
            continue
        entry = config.entry(entry_name)
        if entry is None:
            rejected.append(Rejected(name, f"no entry {entry_name!r} in this factory"))
            continue
        if not entry.allows(frontend):
            rejected.append(Rejected(name, f"frontend {frontend!r} may not use entry {entry_name}"))
            continue
        params = {
            key[len(protocol.PARAM_PREFIX) :]: str(protocol.ad_value(texts, key, ""))
            for key in texts
            if key.startswith(protocol.PARAM_PREFIX)
        }
        user_pool = params.pop(protocol.PARAM_USER_POOL, "")
        user_pool_ca = params.pop(protocol.PARAM_USER_POOL_CA, "")
        problem = check_user_pool(user_pool, user_pool_ca)
        if problem:
            rejected.append(Rejected(name, problem))
            continue
        token = ""
        sealed_key = protocol.ad_value(texts, protocol.ATTR_REQ_ENC_KEY)
        sealed_token = protocol.ad_value(texts, protocol.ENC_PARAM_PREFIX + "Token")
        if sealed_key and sealed_token:
            if protocol.ad_value(texts, protocol.ATTR_REQ_PUBKEY_ID) not in (None, keys.key_id):
                rejected.append(Rejected(name, "sealed for another key of this factory (an old one?)"))
                continue
            try:
                token = open_sealed(keys.open_key(str(sealed_key)), str(sealed_token))
            except SealError as exc:
                rejected.append(Rejected(name, str(exc)))
                continue
        try:
            request = Request(
                entry=entry_name,
                client=client or frontend,
                frontend=frontend,
                idle=max(0, int(protocol.ad_value(texts, protocol.ATTR_REQ_IDLE, 0))),
                max_glideins=max(0, int(protocol.ad_value(texts, protocol.ATTR_REQ_MAX_RUN, 0))),
                remove=str(protocol.ad_value(texts, protocol.ATTR_REQ_REMOVE_EXCESS, "NO")).upper(),
                margin=max(0, int(protocol.ad_value(texts, protocol.ATTR_REQ_REMOVE_MARGIN, 0))),
                idle_lifetime_s=max(0, int(protocol.ad_value(texts, protocol.ATTR_REQ_IDLE_LIFETIME, 0))),
                params=params,
                token=token,
                remove_busy=protocol.ad_value(texts, protocol.ATTR_REQ_REMOVE_BUSY, False) is True,
                user_pool=user_pool,
                user_pool_ca=user_pool_ca,
            )
        except (TypeError, ValueError) as exc:
            rejected.append(Rejected(name, f"unreadable numbers: {exc}"))
            continue
        accepted[(entry_name, request.client)] = request
    return accepted, rejected


USER_POOL_URL = re.compile(r"^https?://[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?(/[A-Za-z0-9._/-]*)?$")
MAX_CA_BYTES = 64 * 1024


def check_user_pool(url: str, ca_pem: str) -> str:
    """Why a request's user pool (URL, CA) cannot be given to pilots, or "" when it can.

    The URL goes into every pilot's configuration and the CA into every glidein, so both are
    checked for what they are: an http(s) URL with a host (no user, no query), and PEM
    certificates only (no keys, a bounded size).
    """
    if not url:
        return "a user pool's CA without its URL" if ca_pem else ""
    if not USER_POOL_URL.match(url):
        return f"the user pool {url[:100]!r} is not an http(s) URL of a host"
    if not ca_pem:
        return ""
    if len(ca_pem) > MAX_CA_BYTES:
        return f"the user pool's CA is over {MAX_CA_BYTES // 1024} KiB"
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(ca_pem.encode())
    except ValueError:
        return "the user pool's CA is not PEM certificates"
    if "PRIVATE KEY" in ca_pem:
        return "the user pool's CA holds a private key"
    return ""
