"""HTTP for the pool's client: the standard library's http.client, or requests when asked and importable.

Standard library only at import (the pilot bundles this module onto bare worker nodes).
Both transports keep one connection alive, stream file bodies, and turn every network
failure into PoolUnreachable so that callers handle one error, not a library's dozen.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import urllib.parse
from collections.abc import Iterator
from typing import Any

from updraft.core.errors import UpdraftError


class PoolUnreachable(UpdraftError):
    """No answer from the pool at all (not running, wrong address, network)."""


class Response:
    """The part of a response the client uses, whichever library made it."""

    def __init__(self, status: int, reader: Any, lines: Any) -> None:
        self.status = status
        self._reader = reader
        self._lines = lines

    def read(self, amount: int | None = None) -> bytes:
        return self._reader(amount) if amount is not None else self._reader()

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._lines())


class StdlibTransport:
    name = "stdlib"

    def __init__(self, url: str, ca_file: str | None) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.url = url
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.https = parsed.scheme == "https"
        self.context: ssl.SSLContext | None = None
        if self.https:
            self.context = (
                ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
            )
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def request(
        self, method: str, path: str, body: Any, headers: dict[str, str], timeout: float, stream: bool
    ) -> Response:
        file_body = hasattr(body, "read")
        for attempt in (1, 2):
            if self._connection is None or stream:
                connection = self._connect(timeout)
                if not stream:
                    self._connection = connection
            else:
                connection = self._connection
                connection.timeout = timeout
                if connection.sock is not None:
                    connection.sock.settimeout(timeout)
            try:
                if file_body:
                    connection.request(
                        method,
                        path,
                        body=body,
                        headers=headers,
                        encode_chunked="Content-Length" not in headers,
                    )
                else:
                    connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
            except (
                http.client.RemoteDisconnected,
                BrokenPipeError,
                ConnectionResetError,
                http.client.CannotSendRequest,
            ) as exc:
                self.close()
                if attempt == 2 or file_body:  # a file already partly sent cannot be sent again from here
                    raise PoolUnreachable(f"the pool at {self.url} closed the connection: {exc}") from None
                continue
            except socket.timeout:  # not yet the same as TimeoutError on Python 3.9
                self.close()
                raise PoolUnreachable(
                    f"no answer from the pool at {self.url} within {timeout:.0f} s"
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise PoolUnreachable(f"cannot reach the pool at {self.url}: {exc}{fix_hint(exc)}") from None
            return Response(response.status, response.read, lambda r=response: r)
        raise PoolUnreachable("unreachable")  # pragma: no cover


def fix_hint(exc: BaseException) -> str:
    """What to do about a failure the user can fix from the client side."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return " (the pool's CA is not trusted: set UPDRAFT_CA to its ca.pem, or UPDRAFT_HOME to the pool's home)"
    if "Connection refused" in text:
        return " (is the pool running? UPDRAFT_POOL or UPDRAFT_HOME's pool.json say where it should be)"
    return ""


class RequestsTransport:
    name = "requests"

    def __init__(self, url: str, ca_file: str | None) -> None:
        import requests

        self.url = url
        self.requests = requests
        self.session = requests.Session()
        if ca_file:
            self.session.verify = ca_file

    def close(self) -> None:
        self.session.close()

    def request(
        self, method: str, path: str, body: Any, headers: dict[str, str], timeout: float, stream: bool
    ) -> Response:
        errors = self.requests.exceptions
        try:
            response = self.session.request(
                method, self.url + path, data=body, headers=headers, timeout=timeout, stream=stream
            )
        except errors.Timeout:
            raise PoolUnreachable(f"no answer from the pool at {self.url} within {timeout:.0f} s") from None
        except errors.RequestException as exc:
            raise PoolUnreachable(f"cannot reach the pool at {self.url}: {exc}{fix_hint(exc)}") from None

        def read(amount: int | None = None) -> bytes:
            if amount is None:
                return response.content if not stream else response.raw.read()
            return response.raw.read(amount)

        def lines() -> Iterator[bytes]:
            for line in response.iter_lines(chunk_size=1):
                yield line + b"\n"

        return Response(response.status_code, read, lines)


def make_transport(url: str, ca_file: str | None, preference: str = "stdlib") -> Any:
    """``preference``: stdlib, requests, or auto (requests when importable; UPDRAFT_TRANSPORT overrides)."""
    choice = os.environ.get("UPDRAFT_TRANSPORT", preference)
    if choice in ("auto", "requests"):
        try:
            import requests  # noqa: F401
        except ImportError:
            if choice == "requests":
                raise PoolUnreachable(
                    "the requests transport was asked for, but requests is not installed"
                ) from None
        else:
            return RequestsTransport(url, ca_file)
    return StdlibTransport(url, ca_file)
