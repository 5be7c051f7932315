"""The pool's client: one object per pool, one method per API call, standard library only.

The CLI, the frontend, the factory and the pilot all talk to the pool through this
module (the pilot bundles it, so it must import on Python 3.9 with nothing but the
standard library).  It keeps one HTTP/1.1 connection alive and reconnects once when
the server closed it.

Where a client finds its pool: ``UPDRAFT_POOL`` (a URL) or ``$UPDRAFT_HOME/pool.json``
written by the running pool; its token: ``UPDRAFT_TOKEN`` (the token itself),
``UPDRAFT_TOKEN_FILE``, or ``$UPDRAFT_HOME/tokens/local.token``.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from updraft.core import protocol as p
from updraft.core.errors import UpdraftError
from updraft.core.transport import PoolUnreachable, Response, make_transport

DEFAULT_TIMEOUT_S = 120.0
CHUNK = 1 << 20


class ClientError(UpdraftError):
    """The pool answered with an error; ``status`` is the HTTP status, ``kind`` the error type."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        self.status = status
        self.kind = kind
        self.message = message
        super().__init__(message)


def default_home() -> Path:
    return Path(os.environ.get("UPDRAFT_HOME") or (Path.home() / ".updraft"))


def read_pool_file(home: Path) -> dict[str, Any]:
    path = home / "pool.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise PoolUnreachable(f"cannot read {path}: {exc}") from None


class Client:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        ca_file: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: str = "stdlib",
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise PoolUnreachable(f"pool address {url!r} is not an http(s) URL")
        self.url = url.rstrip("/")
        self.token = token
        self.ca_file = ca_file
        self.timeout = timeout
        self.transport = make_transport(self.url, ca_file, transport)

    @classmethod
    def from_environment(
        cls,
        pool: str | None = None,
        token: str | None = None,
        token_file: str | None = None,
        home: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: str = "stdlib",
    ) -> Client:
        home = home or default_home()
        info: dict[str, Any] = {}
        url = pool or os.environ.get("UPDRAFT_POOL")
        if not url:
            info = read_pool_file(home)
            url = info.get("url")
        if not url:
            raise PoolUnreachable(
                "no pool: set UPDRAFT_POOL to its URL, or start one with 'updraft pool' (it writes %s)"
                % (home / "pool.json")
            )
        if token is None:
            token = os.environ.get("UPDRAFT_TOKEN")
        if token is None:
            path = token_file or os.environ.get("UPDRAFT_TOKEN_FILE") or str(home / "tokens" / "local.token")
            try:
                token = Path(path).read_text().strip()
            except OSError:
                token = None
        ca_file = os.environ.get("UPDRAFT_CA") or info.get("ca")
        if not ca_file and str(url).startswith("https") and (home / "tls" / "ca.pem").exists():
            ca_file = str(home / "tls" / "ca.pem")
        return cls(str(url), token, ca_file, timeout, transport)

    # -- transport ---------------------------------------------------------------------------
    def close(self) -> None:
        self.transport.close()

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers[p.AUTH_HEADER] = "Bearer " + self.token
        if extra:
            headers.update(extra)
        return headers

    def request_raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        stream: bool = False,
    ) -> Response:
        """Send a request and return the response with a 2xx status; raise otherwise."""
        wait = timeout if timeout is not None else self.timeout
        response = self.transport.request(method, path, body, self._headers(headers), wait, stream)
        if response.status >= 400:
            raise self._error(response.status, response.read())
        return response

    @staticmethod
    def _error(status: int, raw: bytes) -> ClientError:
        kind, message = "HTTPError", raw.decode(errors="replace")[:500] or f"HTTP {status}"
        try:
            data = json.loads(raw)
            error = data.get("error") if isinstance(data, dict) else None
            if isinstance(error, dict):
                kind = str(error.get("type", kind))
                message = str(error.get("message", message))
            elif isinstance(data, dict) and "detail" in data:
                message = json.dumps(data["detail"])[:500]
        except ValueError:
            pass
        return ClientError(status, kind, message)

    def call(self, method: str, path: str, payload: Any = None, timeout: float | None = None) -> Any:
        body = None
        headers = {}
        if payload is not None:
            body = payload.to_json() if isinstance(payload, p._Payload) else p._dumps(payload)
            headers["Content-Type"] = "application/json"
        response = self.request_raw(method, path, body, headers, timeout)
        raw = response.read()
        return json.loads(raw) if raw else None

    # -- schedd ------------------------------------------------------------------------------
    def ping(self) -> dict[str, Any]:
        return self.call("GET", p.PING)

    def reserve_cluster(self) -> int:
        return int(self.call("POST", p.CLUSTERS)["cluster_id"])

    def submit(self, request: p.SubmitRequest) -> p.SubmitResult:
        return p.SubmitResult.from_dict(self.call("POST", p.JOBS, request, timeout=max(self.timeout, 600)))

    def query(self, request: p.QueryRequest, history: bool = False) -> p.QueryResult:
        data = self.call("POST", p.HISTORY_QUERY if history else p.JOBS_QUERY, request)
        return p.QueryResult(data["ads"], data.get("totals"))

    def summary(self, request: p.SummaryRequest, timeout: float | None = None) -> p.SummaryResult:
        return p.SummaryResult.from_dict(self.call("POST", p.JOBS_SUMMARY, request, timeout=timeout))

    def act(self, request: p.ActRequest) -> p.ActResult:
        return p.ActResult.from_dict(self.call("POST", p.JOBS_ACT, request))

    def edit(self, request: p.EditRequest) -> p.ActResult:
        return p.ActResult.from_dict(self.call("POST", p.JOBS_EDIT, request))

    def refresh_credential(self, request: p.CredentialRequest) -> p.ActResult:
        return p.ActResult.from_dict(self.call("POST", p.JOBS_CREDENTIAL, request))

    def analyze(self, job_id: str, constraint: str = "") -> dict[str, Any]:
        return self.call("POST", p.JOBS_ANALYZE, p.AnalyzeRequest(job_id, constraint))

    def job_events(self, job_id: str) -> list[p.Event]:
        return [p.Event.from_dict(e) for e in self.call("GET", p.JOB_EVENTS.format(job_id=job_id))]

    def events(self, after: int = 0, limit: int = 1000) -> list[p.Event]:
        return [p.Event.from_dict(e) for e in self.call("GET", f"{p.EVENTS}?after={after}&limit={limit}")]

    def record_event(self, kind: str, details: dict[str, Any]) -> p.Event:
        return p.Event.from_dict(self.call("POST", p.EVENTS, p.EventRequest(kind, details)))

    def stream_events(self, after: int = -1, timeout: float = 60.0) -> Iterator[p.Event]:
        """Follow the event stream (server-sent events) until the connection ends."""
        response = self.request_raw("GET", f"{p.EVENTS_STREAM}?after={after}", timeout=timeout, stream=True)
        data: list[str] = []
        for raw in response:
            line = raw.decode().rstrip("\n").rstrip("\r")
            if not line:
                if data:
                    yield p.Event.from_dict(json.loads("\n".join(data)))
                    data = []
                continue
            if line.startswith("data:"):
                data.append(line[5:].strip())

    def job_output(self, job_id: str) -> bytes:
        return self.request_raw("GET", p.JOB_OUTPUT.format(job_id=job_id)).read()

    def autoclusters(self) -> list[dict[str, Any]]:
        return self.call("GET", p.AUTOCLUSTERS)

    def accountant(self) -> list[dict[str, Any]]:
        return self.call("GET", p.ACCOUNTANT)

    def set_priority_factor(self, submitter: str, factor: float) -> dict[str, Any]:
        return self.call("POST", p.ACCOUNTANT + "/factor", {"submitter": submitter, "factor": factor})

    # -- sandboxes ---------------------------------------------------------------------------
    def missing_blobs(self, digests: Sequence[str]) -> list[str]:
        return list(self.call("POST", p.BLOBS_MISSING, {"digests": list(digests)})["missing"])

    def _put_file(self, path: str, local: Path, content_type: str) -> Any:
        """PUT a local file as the body (streamed, with its length), return the JSON answer."""
        size = local.stat().st_size
        with open(local, "rb") as handle:
            headers = {"Content-Type": content_type, "Content-Length": str(size)}
            response = self.request_raw(
                "PUT", path, handle, headers, timeout=max(self.timeout, 600), stream=True
            )
            return json.loads(response.read())

    def put_blob(self, digest: str, path: Path) -> int:
        return int(self._put_file(p.BLOB.format(digest=digest), path, "application/octet-stream")["size"])

    def get_blob(self, digest: str, destination: Path, claim_id: str | None = None) -> None:
        headers = {p.CLAIM_HEADER: claim_id} if claim_id else {}
        response = self.request_raw("GET", p.BLOB.format(digest=digest), headers=headers, stream=True)
        with open(destination, "wb") as handle:
            _copy(response, handle)

    # -- collector ---------------------------------------------------------------------------
    def advertise(self, ad_type: str, ads: list[dict[str, str]], lifetime_s: int | None = None) -> int:
        return int(self.call("POST", p.ADS, p.AdvertiseRequest(ad_type, ads, lifetime_s))["count"])

    def query_ads(
        self, ad_type: str = "any", constraint: str = "", projection: Sequence[str] = ()
    ) -> list[dict[str, str]]:
        return list(self.call("POST", p.ADS_QUERY, p.AdQuery(ad_type, constraint, list(projection)))["ads"])

    def invalidate(self, ad_type: str, names: Sequence[str] = (), constraint: str = "") -> int:
        return int(
            self.call("POST", p.ADS_INVALIDATE, p.InvalidateRequest(ad_type, list(names), constraint))[
                "count"
            ]
        )

    # -- pilots ------------------------------------------------------------------------------
    def poll(self, request: p.PollRequest) -> p.PollResult:
        data = self.call("POST", p.PILOT_POLL, request, timeout=float(request.wait_s) + 30.0)
        return p.PollResult.from_dict(data)

    def claim_sandbox(self, claim_id: str) -> list[p.SandboxFile]:
        data = self.call("GET", p.CLAIM_SANDBOX.format(claim_id=claim_id))
        return [p.SandboxFile.from_dict(f) for f in data["inputs"]]

    def put_output(self, claim_id: str, tar_path: Path) -> list[str]:
        return list(
            self._put_file(p.CLAIM_OUTPUT.format(claim_id=claim_id), tar_path, "application/x-tar")["files"]
        )

    def report(self, claim_id: str, report: p.ClaimReport) -> dict[str, Any]:
        return self.call("POST", p.CLAIM_REPORT.format(claim_id=claim_id), report)

    # -- tokens ------------------------------------------------------------------------------
    def mint_token(self, request: p.TokenRequest) -> p.TokenResult:
        return p.TokenResult.from_dict(self.call("POST", p.TOKENS, request))

    def revoke_tokens(self, request: p.RevokeRequest) -> list[str]:
        return list(self.call("POST", p.TOKENS_REVOKE, request)["revoked"])

    def renew_token(self) -> p.TokenResult:
        result = p.TokenResult.from_dict(self.call("POST", p.TOKENS_RENEW))
        self.token = result.token
        return result


def token_claims(token: str | None) -> dict[str, Any]:
    """The unverified claims of a pool token (who a client is, for defaults like condor_q's owner)."""
    if not token or token.count(".") != 2:
        return {}
    import base64

    payload = token.split(".")[1]
    try:
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return {}


def _copy(source: Any, destination: BinaryIO) -> None:
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            return
        destination.write(chunk)


def wait_for_pool(client: Client, timeout: float = 30.0) -> dict[str, Any]:
    """Ping until the pool answers (start-up scripts and tests)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.ping()
        except PoolUnreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
