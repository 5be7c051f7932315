"""The pool's front door: who is calling is known before a byte of the body is read, and no body
is read past its limit.

FastAPI reads a request's whole body before it resolves any dependency, so a check of the
token in a dependency comes too late: an unauthenticated 200 MiB JSON body would already be in
memory (twice, once parsed).  This ASGI layer sits in front of the routes and:

- lets the open paths through (``/v1/ping``; the monitor, ``/metrics`` and the API document
  while ``monitor.public`` is on, as HTCondor's READ level is open);
- answers 401 to anything else without a token that verifies, before reading the body;
- answers 413 to a ``Content-Length`` over the route's limit, and cuts off a streamed body the
  moment it passes the limit (the route sees the client as gone; the caller gets the 413).

The verified identity travels to the routes in the request's state, so they do not verify twice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson

from updraft.core import protocol
from updraft.core.errors import PoolError, Unauthorized
from userpool.tokens import Identity, TokenSigner

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

security_log = logging.getLogger("updraft.pool.security")

#: paths nobody needs a token for, whatever the configuration
ALWAYS_OPEN = frozenset({protocol.PING})
#: aggregates readable without a token while ``monitor.public`` is on
PUBLIC_READ = frozenset(
    {
        protocol.METRICS,
        protocol.MONITOR_PAGE,
        protocol.MONITOR,
        protocol.MONITOR_STREAM,
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
    }
)


def _route(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")


_BLOB = _route(protocol.BLOB)
_MONITOR_JOB = _route(protocol.MONITOR_JOB)
_CLAIM_OUTPUT = _route(protocol.CLAIM_OUTPUT)


@dataclass(frozen=True)
class BodyLimits:
    """The most a request body may carry, by kind of route (bytes)."""

    json: int  # every JSON body (a submission of a big cluster is the largest)
    blob: int  # one input file (PUT /v1/blobs/{digest})
    output: int  # one job's output tar (PUT /v1/claims/{id}/output)

    def for_request(self, method: str, path: str) -> tuple[int, str, str]:
        """(limit, what the body is, the knob that sets the limit)."""
        if method == "PUT" and _BLOB.match(path):
            return self.blob, "file", "max_input_file_mb: the per-file limit"
        if method == "PUT" and _CLAIM_OUTPUT.match(path):
            return self.output, "output sandbox", "max_output_sandbox_mb"
        return self.json, "request body", "max_request_body_mb"


def log_refusal(scope: Scope, who: Identity | None, status: int, message: str) -> None:
    """One line an operator can grep for: the request, the caller, where from, and why."""
    caller = f"{who.subject} ({','.join(sorted(s.value for s in who.scopes))})" if who else "unauthenticated"
    client = scope.get("client")
    host = client[0] if client else "?"
    security_log.warning(
        "refused %s %s from %s at %s: %d %s",
        scope.get("method", "?"),
        scope.get("path", "?"),
        caller,
        host,
        status,
        message,
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def bearer_identity(signer: TokenSigner, authorization: str | None) -> Identity:
    if not authorization:
        raise Unauthorized("no token: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("expected 'Authorization: Bearer <token>'")
    return signer.verify(token)


async def _answer(send: Send, status: int, kind: str, message: str) -> None:
    body = orjson.dumps({"error": {"type": kind, "message": message}})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],  # no "connection: close": the server discards the unread body, so the client hears us
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """The ASGI layer described in the module docstring."""

    def __init__(
        self, app: App, signer: TokenSigner, limits: BodyLimits, public_read: Callable[[], bool]
    ) -> None:
        self.app = app
        self.signer = signer
        self.limits = limits
        self.public_read = public_read

    def is_open(self, path: str) -> bool:
        public = path in PUBLIC_READ or _MONITOR_JOB.match(path) is not None
        return path in ALWAYS_OPEN or (public and self.public_read())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        who: Identity | None = None
        if not self.is_open(path):
            try:
                who = bearer_identity(self.signer, _header(scope, b"authorization"))
            except PoolError as exc:
                log_refusal(scope, None, exc.http_status, str(exc))
                await _answer(send, exc.http_status, type(exc).__name__, str(exc))
                return
            scope.setdefault("state", {})["who"] = who
        limit, what, knob = self.limits.for_request(scope.get("method", ""), path)
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            message = f"{what} of {length} bytes exceeds {limit} bytes ({knob})"
            log_refusal(scope, who, 413, message)
            await _answer(send, 413, "TooLarge", message)
            return
        await _Bounded(
            self.app, scope, receive, send, limit, f"{what} exceeds {limit} bytes ({knob})", who
        ).run()


class _Bounded:
    """One request whose body is counted as it arrives; past the limit the caller gets 413."""

    def __init__(
        self,
        app: App,
        scope: Scope,
        receive: Receive,
        send: Send,
        limit: int,
        refusal: str,
        who: Identity | None,
    ) -> None:
        self.app, self.scope, self._receive, self._send = app, scope, receive, send
        self.limit, self.refusal, self.who = limit, refusal, who
        self.seen = 0
        self.started = False
        self.cut_off = False

    async def run(self) -> None:
        await self.app(self.scope, self.receive, self.send)

    async def receive(self) -> Message:
        if self.cut_off:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.cut_off = True
                log_refusal(self.scope, self.who, 413, self.refusal)
                if not self.started:
                    self.started = True
                    await _answer(self._send, 413, "TooLarge", self.refusal)
                return {"type": "http.disconnect"}  # the route stops reading: the client is "gone"
        return message

    async def send(self, message: Message) -> None:
        if self.cut_off:
            return  # the 413 is the answer; whatever the route makes of the cut-off body is dropped
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
