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

from updraft.core import payloads, protocol
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
    """$UPDRAFT_HOME, else ~/.updraft, else (installed system-wide) /var/lib/updraft/pool."""
    from updraft.core.layout import pool_home

    return pool_home()


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
                "no pool: set UPDRAFT_POOL to its URL, or UPDRAFT_HOME to the pool's home directory,"
                " or start one with 'updraft pool' (it writes %s)" % (home / "pool.json")
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
            headers[protocol.AUTH_HEADER] = "Bearer " + self.token
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
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                answer = payloads.ErrorAnswer.from_dict(data)
                kind, message = answer.error.type, answer.error.message
            elif isinstance(data, dict) and "detail" in data:  # a 422 from the framework itself
                message = json.dumps(data["detail"])[:500]
        except (ValueError, protocol.ProtocolError):
            pass
        return ClientError(status, kind, message)

    def call(self, method: str, path: str, payload: Any = None, timeout: float | None = None) -> Any:
        body = None
        headers = {}
        if payload is not None:
            body = payload.to_json() if isinstance(payload, payloads._Payload) else payloads._dumps(payload)
            headers["Content-Type"] = "application/json"
        response = self.request_raw(method, path, body, headers, timeout)
        raw = response.read()
        return json.loads(raw) if raw else None

    # -- schedd ------------------------------------------------------------------------------
    def ping(self) -> payloads.PingResult:
        return payloads.PingResult.from_dict(self.call("GET", protocol.PING))

    def reserve_cluster(self) -> int:
        return payloads.ReserveResult.from_dict(self.call("POST", protocol.CLUSTERS)).cluster_id

    def submit(self, request: payloads.SubmitRequest) -> payloads.SubmitResult:
        return payloads.SubmitResult.from_dict(
            self.call("POST", protocol.JOBS, request, timeout=max(self.timeout, 600))
        )

    def query(self, request: payloads.QueryRequest, history: bool = False) -> payloads.QueryResult:
        return payloads.QueryResult.from_dict(
            self.call("POST", protocol.HISTORY_QUERY if history else protocol.JOBS_QUERY, request)
        )

    def summary(
        self, request: payloads.SummaryRequest, timeout: float | None = None
    ) -> payloads.SummaryResult:
        return payloads.SummaryResult.from_dict(
            self.call("POST", protocol.JOBS_SUMMARY, request, timeout=timeout)
        )

    def act(self, request: payloads.ActRequest) -> payloads.ActResult:
        return payloads.ActResult.from_dict(self.call("POST", protocol.JOBS_ACT, request))

    def edit(self, request: payloads.EditRequest) -> payloads.ActResult:
        return payloads.ActResult.from_dict(self.call("POST", protocol.JOBS_EDIT, request))

    def refresh_credential(self, request: payloads.CredentialRequest) -> payloads.ActResult:
        return payloads.ActResult.from_dict(self.call("POST", protocol.JOBS_CREDENTIAL, request))

    def analyze(self, job_id: str, constraint: str = "") -> payloads.AnalysisResult:
        return payloads.AnalysisResult.from_dict(
            self.call("POST", protocol.JOBS_ANALYZE, payloads.AnalyzeRequest(job_id, constraint))
        )

    def job_events(self, job_id: str) -> list[payloads.Event]:
        return [
            payloads.Event.from_dict(e) for e in self.call("GET", protocol.JOB_EVENTS.format(job_id=job_id))
        ]

    def events(self, after: int = 0, limit: int = 1000) -> list[payloads.Event]:
        return [
            payloads.Event.from_dict(e)
            for e in self.call("GET", f"{protocol.EVENTS}?after={after}&limit={limit}")
        ]

    def record_event(self, kind: str, details: dict[str, Any]) -> payloads.Event:
        return payloads.Event.from_dict(
            self.call("POST", protocol.EVENTS, payloads.EventRequest(kind, details))
        )

    def stream_events(
        self, after: int = -1, timeout: float = 60.0, dag: int = 0, job: str = ""
    ) -> Iterator[payloads.Event]:
        """Follow the event stream (server-sent events) until the connection ends; ``dag``: only
        the events of that DAG's job and its nodes; ``job``: only that job's (CLUSTER or CLUSTER.PROC)."""
        query = f"?after={after}" + (f"&dag={dag}" if dag else "") + (f"&job={job}" if job else "")
        response = self.request_raw("GET", f"{protocol.EVENTS_STREAM}{query}", timeout=timeout, stream=True)
        data: list[str] = []
        for raw in response:
            line = raw.decode().rstrip("\n").rstrip("\r")
            if not line:
                if data:
                    yield payloads.Event.from_dict(json.loads("\n".join(data)))
                    data = []
                continue
            if line.startswith("data:"):
                data.append(line[5:].strip())

    def job_output(self, job_id: str) -> bytes:
        return self.request_raw("GET", protocol.JOB_OUTPUT.format(job_id=job_id)).read()

    def autoclusters(self) -> list[payloads.AutoclusterRow]:
        return [payloads.AutoclusterRow.from_dict(row) for row in self.call("GET", protocol.AUTOCLUSTERS)]

    def accountant(self) -> list[payloads.AccountantRow]:
        return [payloads.AccountantRow.from_dict(row) for row in self.call("GET", protocol.ACCOUNTANT)]

    def set_priority_factor(self, submitter: str, factor: float) -> payloads.FactorRequest:
        request = payloads.FactorRequest(submitter, factor)
        return payloads.FactorRequest.from_dict(self.call("POST", protocol.ACCOUNTANT_FACTOR, request))

    # -- sandboxes ---------------------------------------------------------------------------
    def missing_blobs(self, digests: Sequence[str]) -> list[str]:
        answer = self.call("POST", protocol.BLOBS_MISSING, payloads.BlobsQuery(list(digests)))
        return payloads.MissingBlobs.from_dict(answer).missing

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
        answer = self._put_file(protocol.BLOB.format(digest=digest), path, "application/octet-stream")
        return payloads.BlobStored.from_dict(answer).size

    def get_blob(self, digest: str, destination: Path, claim_id: str | None = None) -> None:
        headers = {protocol.CLAIM_HEADER: claim_id} if claim_id else {}
        response = self.request_raw("GET", protocol.BLOB.format(digest=digest), headers=headers, stream=True)
        with open(destination, "wb") as handle:
            _copy(response, handle)

    # -- collector ---------------------------------------------------------------------------
    def advertise(self, ad_type: str, ads: list[dict[str, str]], lifetime_s: int | None = None) -> int:
        answer = self.call("POST", protocol.ADS, payloads.AdvertiseRequest(ad_type, ads, lifetime_s))
        return payloads.AdCount.from_dict(answer).count

    def query_ads(
        self, ad_type: str = "any", constraint: str = "", projection: Sequence[str] = ()
    ) -> list[dict[str, str]]:
        answer = self.call(
            "POST", protocol.ADS_QUERY, payloads.AdQuery(ad_type, constraint, list(projection))
        )
        return payloads.AdsResult.from_dict(answer).ads

    def invalidate(self, ad_type: str, names: Sequence[str] = (), constraint: str = "") -> int:
        request = payloads.InvalidateRequest(ad_type, list(names), constraint)
        return payloads.AdCount.from_dict(self.call("POST", protocol.ADS_INVALIDATE, request)).count

    # -- pilots ------------------------------------------------------------------------------
    def poll(self, request: payloads.PollRequest) -> payloads.PollResult:
        data = self.call("POST", protocol.PILOT_POLL, request, timeout=float(request.wait_s) + 30.0)
        return payloads.PollResult.from_dict(data)

    def claim_sandbox(self, claim_id: str) -> list[payloads.SandboxFile]:
        answer = self.call("GET", protocol.CLAIM_SANDBOX.format(claim_id=claim_id))
        return payloads.ClaimSandbox.from_dict(answer).inputs

    def put_output(self, claim_id: str, tar_path: Path) -> list[str]:
        answer = self._put_file(
            protocol.CLAIM_OUTPUT.format(claim_id=claim_id), tar_path, "application/x-tar"
        )
        return payloads.OutputStored.from_dict(answer).files

    def report(self, claim_id: str, report: payloads.ClaimReport) -> payloads.ReportResult:
        return payloads.ReportResult.from_dict(
            self.call("POST", protocol.CLAIM_REPORT.format(claim_id=claim_id), report)
        )

    # -- tokens ------------------------------------------------------------------------------
    def mint_token(self, request: payloads.TokenRequest) -> payloads.TokenResult:
        return payloads.TokenResult.from_dict(self.call("POST", protocol.TOKENS, request))

    def revoke_tokens(self, request: payloads.RevokeRequest) -> list[str]:
        return payloads.RevokeResult.from_dict(self.call("POST", protocol.TOKENS_REVOKE, request)).revoked

    def renew_token(self) -> payloads.TokenResult:
        result = payloads.TokenResult.from_dict(self.call("POST", protocol.TOKENS_RENEW))
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


def wait_for_pool(client: Client, timeout: float = 30.0) -> payloads.PingResult:
    """Ping until the pool answers (start-up scripts and tests)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.ping()
        except PoolUnreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
