"""Connections that cannot hold the pool hostage: header and idle timeouts, a cap per client.

uvicorn times out a keep-alive connection between two requests, but not one that never
sends a request, nor one that sends its headers or body a byte a minute: 3,000 such
connections held 3,000 descriptors for ever.  This protocol, uvicorn's own with three
timers and a count, closes

- a connection whose request headers are not complete ``header_timeout_s`` after its first
  byte (or after the connection was made);
- a request whose body stops arriving for ``body_idle_timeout_s``;
- a new connection from a client address that already holds ``max_per_client`` of them.

Long polls are untouched: once a request is read, answering it takes as long as it takes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

security_log = logging.getLogger("updraft.pool.security")


@dataclass
class ConnectionLimits:
    header_timeout_s: float = 20.0
    body_idle_timeout_s: float = 60.0
    max_per_client: int = 4096
    open: Counter[str] = field(default_factory=Counter)
    #: the last time each kind of closing was logged per client (a line a minute, not one per connection)
    _logged: dict[tuple[str, str], float] = field(default_factory=dict)

    def log_once(self, host: str, kind: str, message: str) -> None:
        now = time.monotonic()
        key = (host, kind)
        if now - self._logged.get(key, -1e9) >= 60.0:
            if len(self._logged) > 10_000:
                self._logged.clear()
            self._logged[key] = now
            security_log.warning("connection from %s closed: %s", host, message)


SHUTDOWN_LINGER_S = 1.0  # how long a closed connection may take to say goodbye when the pool stops


def guarded_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with ``limits`` applied (pass as ``http=`` to uvicorn)."""

    class GuardedProtocol(HttpToolsProtocol):
        _timer: asyncio.TimerHandle | None = None
        _host: str | None = None

        def _arm(self, seconds: float, kind: str, why: str) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, self._expire, kind, why)

        def _arm_body(self) -> None:
            self._arm(
                limits.body_idle_timeout_s,
                "body",
                f"request body stalled for {limits.body_idle_timeout_s:g} s",
            )

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expire(self, kind: str, why: str) -> None:
            self._timer = None
            if not self.transport.is_closing():
                limits.log_once(self._host or "?", kind, why)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            host = self.client[0] if self.client else "?"
            if limits.open[host] >= limits.max_per_client:
                limits.log_once(
                    host,
                    "cap",
                    f"it already holds {limits.max_per_client} connections (max_connections_per_client)",
                )
                transport.abort()
                return
            limits.open[host] += 1
            self._host = host
            self._arm(
                limits.header_timeout_s,
                "headers",
                f"no complete request within {limits.header_timeout_s:g} s",
            )

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._host is not None:
                limits.open[self._host] -= 1
                if limits.open[self._host] <= 0:
                    del limits.open[self._host]
                self._host = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm(
                    limits.header_timeout_s,
                    "headers",
                    f"request headers not complete within {limits.header_timeout_s:g} s",
                )
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._arm_body()
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if self._timer is not None:
                self._arm_body()
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._disarm()  # the request is read: answering it takes what it takes (long polls)
            super().on_message_complete()

        def shutdown(self) -> None:
            """The server stops. An idle TLS connection is closed with a close_notify that a
            client which is not reading (a pooled keep-alive connection) never answers, and
            asyncio waits 30 s for that answer, holding up the stop: cut it after a second,
            once what was written has had time to leave."""
            super().shutdown()
            if self.transport.is_closing():
                self.loop.call_later(SHUTDOWN_LINGER_S, self.transport.abort)

    return GuardedProtocol


__all__: list[Any] = ["ConnectionLimits", "guarded_protocol"]
