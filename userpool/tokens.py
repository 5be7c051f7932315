"""Pool tokens: compact JWTs (HS256) signed with the pool's key, with scopes and expiry.

The shape is a standard JWT so operators can inspect one with any JWT tool, the way
HTCondor's IDTOKENS are; the signing key never leaves the pool's home directory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from updraft.core.errors import BadRequest, Forbidden, Unauthorized
from updraft.core.protocol import Scope

ISSUER = "updraft-pool"
KEY_BYTES = 32
#: the longest lifetime a token may have when the pool's config says nothing (max_token_lifetime_s)
MAX_LIFETIME_S = 365 * 86400
#: a revocation recorded before revocations carried their time: it covers every token
REVOKED_ALWAYS = float("inf")
#: the binding a frontend's pilot tokens carry: the frontend that minted them
FRONTEND_BINDING = "frontend"


@dataclass(frozen=True)
class Identity:
    """Who is asking, as the pool authenticated them."""

    subject: str
    scopes: frozenset[Scope]
    token_id: str
    expires: float
    bindings: dict[str, str] = field(default_factory=dict)
    issued: float = 0.0

    @property
    def lifetime_s(self) -> int:
        """How long the token was made to live (a renewal gets as long again)."""
        return max(1, int(self.expires - self.issued)) if self.issued else 3600

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes

    @property
    def is_admin(self) -> bool:
        return Scope.ADMIN in self.scopes

    def require(self, *scopes: Scope) -> None:
        if not any(self.has(scope) for scope in scopes):
            wanted = " or ".join(s.value for s in scopes)
            raise Forbidden(f"{self.subject}: this needs a token with scope {wanted}")

    @property
    def name(self) -> str:
        """The identity as stamped on ads: 'subject' for users, 'scope:subject' otherwise."""
        first = sorted(s.value for s in self.scopes)[0] if self.scopes else "none"
        return self.subject if Scope.USER in self.scopes or self.is_admin else f"{first}:{self.subject}"

    @property
    def principal(self) -> str:
        """The whole identity: the name and every binding, which is what owns a claim or an ad.

        Two tokens with one subject but minted by different frontends are different callers.
        """
        if not self.bindings:
            return self.name
        bound = ",".join(f"{key}={value}" for key, value in sorted(self.bindings.items()))
        return f"{self.name}[{bound}]"

    @property
    def account(self) -> str:
        """Whose budget this caller's ads count against: a frontend's pilots share the frontend's.

        A frontend mints pilot tokens under names of its choosing; were each name a budget of its
        own, one frontend could hold the collector's memory by minting names.
        """
        frontend = self.bindings.get(FRONTEND_BINDING)
        return f"frontend:{frontend}" if frontend else self.principal


def pilot_subject(frontend: str, wanted: str) -> str:
    """The subject of a pilot token ``frontend`` mints: always ``<frontend>/...``."""
    prefix = f"{frontend}/"
    return wanted if wanted.startswith(prefix) and len(wanted) > len(prefix) else prefix + wanted


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_scopes(values: list[str] | str) -> frozenset[Scope]:
    if isinstance(values, str):
        values = [values]
    out = set()
    for value in values:
        for part in value.replace(",", " ").split():
            try:
                out.add(Scope(part.lower()))
            except ValueError:
                known = ", ".join(s.value for s in Scope)
                raise BadRequest(f"unknown scope {part!r} (known: {known})") from None
    if not out:
        raise BadRequest("a token needs at least one scope")
    return frozenset(out)


class TokenSigner:
    def __init__(self, key: bytes, max_lifetime_s: int = MAX_LIFETIME_S) -> None:
        if len(key) < 16:
            raise ValueError("signing key too short")
        self._key = key
        #: no token lives longer: issue() refuses to make one, verify() to accept one
        self.max_lifetime_s = int(max_lifetime_s)
        #: revocations, each with when it was made: "jti:<id>" (that token), "sub:<subject>" and
        #: "bind:<key>=<value>" (every such token issued up to then, e.g. all a frontend minted)
        self.revoked: dict[str, float] = {}

    @classmethod
    def from_home(cls, key_path: Path, max_lifetime_s: int = MAX_LIFETIME_S) -> TokenSigner:
        """Load the key, creating it (mode 0600) on first use."""
        key_path.parent.mkdir(parents=True, exist_ok=True)
        if not key_path.exists():
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(KEY_BYTES))
        return cls(key_path.read_bytes(), max_lifetime_s)

    def revoke(self, key: str, at: float = REVOKED_ALWAYS) -> None:
        """Refuse the tokens ``key`` names (see ``revoked``) that were issued up to ``at``."""
        self.revoked[key] = max(at, self.revoked.get(key, at))

    def _revocation(self, identity: Identity) -> str | None:
        if f"jti:{identity.token_id}" in self.revoked:
            return f"jti:{identity.token_id}"
        for key in (f"sub:{identity.subject}", *(f"bind:{k}={v}" for k, v in identity.bindings.items())):
            at = self.revoked.get(key)
            if at is not None and identity.issued <= at:
                return key
        return None

    def issue(
        self,
        subject: str,
        scopes: frozenset[Scope],
        lifetime_s: int = 3600,
        bindings: dict[str, str] | None = None,
        now: float | None = None,
    ) -> tuple[str, float]:
        if not subject or any(c.isspace() for c in subject):
            raise BadRequest(f"token subject {subject!r} must be a non-empty word")
        if not 0 < lifetime_s <= self.max_lifetime_s:
            raise BadRequest(
                f"token lifetime must be between 1 s and {self.max_lifetime_s} s (max_token_lifetime_s)"
            )
        issued = int(now if now is not None else time.time())
        expires = issued + int(lifetime_s)
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "scope": " ".join(sorted(s.value for s in scopes)),
            "iat": issued,
            "exp": expires,
            "jti": secrets.token_hex(12),
        }
        if bindings:
            claims["bnd"] = dict(bindings)
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        signature = _b64(hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return f"{header}.{payload}.{signature}", float(expires)

    def verify(self, token: str, now: float | None = None) -> Identity:
        parts = token.strip().split(".")
        if len(parts) != 3:
            raise Unauthorized("malformed token")
        header, payload, signature = parts
        expected = _b64(hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, signature):
            raise Unauthorized("token signature does not verify (forged, or from another pool)")
        try:
            claims = json.loads(_unb64(payload))
            subject = str(claims["sub"])
            scopes = parse_scopes(str(claims["scope"]))
            expires = float(claims["exp"])
            token_id = str(claims["jti"])
            bindings = {str(k): str(v) for k, v in dict(claims.get("bnd", {})).items()}
            issued = float(claims.get("iat", 0))
        except (ValueError, KeyError, TypeError, BadRequest):
            raise Unauthorized("token payload unreadable") from None
        if claims.get("iss") != ISSUER:
            raise Unauthorized("token not issued by an Updraft pool")
        if expires <= (now if now is not None else time.time()):
            raise Unauthorized(
                f"token for {subject} expired at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(expires))}"
            )
        if expires - issued > self.max_lifetime_s:
            raise Unauthorized(
                f"token for {subject} was made to live {int(expires - issued)} s; this pool accepts"
                f" at most {self.max_lifetime_s} s (max_token_lifetime_s): get a new one"
            )
        identity = Identity(subject, scopes, token_id, expires, bindings, issued)
        if self.revoked:
            hit = self._revocation(identity)
            if hit is not None:
                raise Unauthorized(f"token {token_id} for {subject} was revoked ({hit})")
        return identity
