"""Credential lifetimes: the VO's X.509 proxy or bearer token must outlive the pilot by a margin.

The pilot's own pool token is short-lived on purpose and renewed through the pool, so
for it the check only asks that it is valid now.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import time
from typing import Optional

from pilot.checks.base import CheckContext, metrics
from pilot.errors import VO_PROXY, CheckFailed


def x509_expiry(path: str) -> float:
    """notAfter of the first certificate in a PEM file (the proxy itself)."""
    try:
        decoded = ssl._ssl._test_decode_cert(path)  # stdlib, no cryptography needed
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ValueError(f"cannot read certificate {path}: {exc}") from None
    return float(ssl.cert_time_to_seconds(decoded["notAfter"]))


def jwt_claims(token: str) -> dict:
    parts = token.strip().split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return {}
    return claims if isinstance(claims, dict) else {}


def jwt_expiry(token: str) -> Optional[float]:
    value = jwt_claims(token).get("exp")
    return float(value) if isinstance(value, (int, float)) else None


def check_credential(context: CheckContext) -> Optional[str]:
    now = time.time()
    needed_until = context.lifetime_end + context.config.credential_margin_s
    said = []
    proxy = context.environ.get("X509_USER_PROXY", "")
    if proxy:
        try:
            expires = x509_expiry(proxy)
        except ValueError as exc:
            raise CheckFailed("credential", 2403, VO_PROXY, str(exc)) from None
        metrics(context, x509_left_s=int(expires - now))
        if expires < needed_until:
            raise CheckFailed(
                "credential", 2401, VO_PROXY,
                f"the X.509 proxy {proxy} expires in {int(expires - now)} s; the pilot may live {int(context.lifetime_end - now)} s"
                f" and needs {context.config.credential_margin_s} s more",
                {"x509_left_s": int(expires - now)},
            )  # fmt: skip
        said.append(f"proxy good for {int(expires - now)} s")
    bearer = context.environ.get("BEARER_TOKEN_FILE", "")
    if bearer and os.path.isfile(bearer):
        with open(bearer) as handle:
            expires_at = jwt_expiry(handle.read())
        if expires_at is not None:
            metrics(context, bearer_left_s=int(expires_at - now))
            if expires_at < needed_until:
                raise CheckFailed(
                    "credential",
                    2402,
                    VO_PROXY,
                    f"the bearer token {bearer} expires in {int(expires_at - now)} s, too soon",
                )
            said.append(f"bearer token good for {int(expires_at - now)} s")
    pool_expiry = jwt_expiry(context.token) if context.token else None
    if pool_expiry is not None:
        if pool_expiry <= now + 30:
            raise CheckFailed(
                "credential", 2404, VO_PROXY, "the pilot's pool token has expired (or does within 30 s)"
            )
        said.append(f"pool token valid {int(pool_expiry - now)} s (renewed as it goes)")
    return "; ".join(said) if said else "no VO credential to check"
