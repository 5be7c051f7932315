"""HTTP routes: parse, authenticate, call the pool, format.  No decisions live here."""

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)

import updraft
from updraft.core import payloads, protocol
from updraft.core.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PoolError,
    SandboxRefused,
    TooCostly,
    TooLarge,
)
from updraft.core.protocol import AdType, Scope
from userpool.analyze import analysis_report, gather
from userpool.diskspace import is_disk_full
from userpool.guard import BodyLimits, RequestGuard, bearer_identity, log_refusal
from userpool.monitor import SHOWN_EVENTS, event_view, monitor_html
from userpool.pool import Pool
from userpool.sandbox import check_digest
from userpool.summary import summarize
from userpool.tokens import FRONTEND_BINDING, Identity, parse_scopes, pilot_subject


class FastJSON(Response):
    """orjson-rendered JSON, for the large answers (job queries, polls) where speed matters."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


#: refusals worth an operator's eye: no or bad credentials, a right not held, an oversized upload
REFUSALS_LOGGED = (401, 403, 413)
log = logging.getLogger("updraft.pool")


def _log_refusal(request: Request, status: int, message: str) -> None:
    log_refusal(request.scope, getattr(request.state, "who", None), status, message)


def _refusals_logged(request: Request, result: payloads.ActResult) -> payloads.ActResult:
    """Jobs an action may not touch are refused one by one in the answer, and logged."""
    for job_id, reason in list(result.refused.items())[:20]:
        _log_refusal(request, 403, f"job {job_id}: {reason}")
    return result


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse(
        payloads.ErrorAnswer(payloads.ErrorDetail(kind, message)).to_dict(), status_code=status
    )


def build_app(pool: Pool) -> FastAPI:
    app = FastAPI(
        title="Updraft pool",
        version=updraft.__version__,
        description="The global queue (schedd), collector and negotiator of an Updraft pool.",
    )

    @app.exception_handler(PoolError)
    async def pool_error(request: Request, exc: PoolError) -> JSONResponse:
        if exc.http_status in REFUSALS_LOGGED or isinstance(exc, (SandboxRefused, TooCostly)):
            _log_refusal(request, exc.http_status, str(exc))
        return _error(exc.http_status, type(exc).__name__, str(exc))

    @app.exception_handler(protocol.ProtocolError)
    async def protocol_error(_request: Request, exc: protocol.ProtocolError) -> JSONResponse:
        return _error(400, "ProtocolError", str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e.get('loc', ()) if x != 'body') or 'body'}: {e.get('msg')}"
            for e in exc.errors()[:5]
        )
        # the offending input is not echoed back: it may be large, binary, or a secret
        detail = [{k: e.get(k) for k in ("loc", "msg", "type")} for e in exc.errors()[:20]]
        return JSONResponse(
            {"error": {"type": "BadRequest", "message": problems}, "detail": detail}, status_code=422
        )

    @app.exception_handler(OSError)
    async def os_error(_request: Request, exc: OSError) -> JSONResponse:
        if is_disk_full(
            exc
        ):  # an upload or a spool write on a full disk: not the client's fault, not a crash
            return _error(507, "InsufficientStorage", f"no space left on the pool's disk: {exc.strerror}")
        log.exception("unexpected OS error", exc_info=exc)
        return _error(500, "InternalError", "the pool could not complete the request; see its log")

    @app.exception_handler(OverflowError)
    async def overflow_error(_request: Request, exc: OverflowError) -> JSONResponse:
        # an id, offset or limit beyond SQLite's 64-bit integers: the client's number, not our fault
        return _error(400, "BadRequest", f"a number in the request is out of range (at most 2**63-1): {exc}")

    def identity(request: Request, authorization: Annotated[str | None, Header()] = None) -> Identity:
        who = getattr(request.state, "who", None)  # the guard verified it before reading the body
        if who is None:
            who = bearer_identity(pool.tokens, authorization)
            request.state.who = who  # for the log line of a refusal
        return who

    Who = Annotated[Identity, Depends(identity)]

    # -- general ---------------------------------------------------------------------------
    @app.get(protocol.PING)
    async def ping() -> payloads.PingResult:
        return payloads.PingResult(
            protocol.SERVICE_NAME,
            updraft.__version__,
            protocol.PROTOCOL_VERSION,
            time.time(),
            pool.disk.reason,
            pool.events.last_committed,
        )

    @app.get(protocol.METRICS, response_class=PlainTextResponse)
    async def metrics() -> str:
        return pool.metrics()

    # -- the monitor: aggregates, readable without a token like /metrics -----------------------
    @app.get(protocol.MONITOR_PAGE, response_class=HTMLResponse)
    async def monitor_page() -> str:
        return monitor_html()

    @app.get(protocol.MONITOR)
    async def monitor() -> Response:
        return FastJSON(pool.monitor.snapshot())

    @app.get(protocol.MONITOR_JOB)
    async def monitor_job(job_id: str) -> Response:
        """One job's events as the monitor shows them (what ``updraft logging-info`` prints, redacted alike)."""
        cluster_id, proc_id = protocol.parse_job_id(job_id)
        events = pool.events.for_job(cluster_id, proc_id)
        if not events:
            raise NotFound(f"no events for job {job_id}")
        show = pool.config.monitor.show_reasons
        return FastJSON({"job": job_id, "events": [event_view(event, show) for event in events]})

    @app.get(protocol.MONITOR_STREAM)
    async def monitor_stream(after: int = -1) -> StreamingResponse:
        return StreamingResponse(
            _sse(pool, after, lambda event: _monitor_event(event, pool.config.monitor.show_reasons)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    # -- schedd ----------------------------------------------------------------------------
    @app.post(protocol.CLUSTERS)
    async def reserve(who: Who) -> payloads.ReserveResult:
        return payloads.ReserveResult(await pool.reserve(who))

    @app.post(protocol.JOBS)
    async def submit(who: Who, body: payloads.SubmitRequest) -> payloads.SubmitResult:
        return await pool.submit(who, body)

    @app.post(protocol.JOBS_QUERY)
    async def query(who: Who, body: payloads.QueryRequest) -> Response:
        return FastJSON(pool_query(pool, body).to_dict())

    @app.post(protocol.JOBS_SUMMARY)
    async def summary(who: Who, body: payloads.SummaryRequest) -> Response:
        result = summarize(pool.schedd.queue, body)
        return FastJSON(result.to_dict())

    @app.post(protocol.JOBS_ACT)
    async def act(request: Request, who: Who, body: payloads.ActRequest) -> payloads.ActResult:
        result, tx = pool.actions.act(who, body)
        await pool.commit(tx)
        return _refusals_logged(request, result)

    @app.post(protocol.JOBS_EDIT)
    async def edit(request: Request, who: Who, body: payloads.EditRequest) -> payloads.ActResult:
        return _refusals_logged(request, await pool.edit(who, body))

    @app.post(protocol.JOBS_CREDENTIAL)
    async def refresh_credential(
        request: Request, who: Who, body: payloads.CredentialRequest
    ) -> payloads.ActResult:
        result, tx = pool.actions.refresh_credential(who, body, pool.blobs.has(body.digest))
        await pool.commit(tx)
        return _refusals_logged(request, result)

    @app.post(protocol.JOBS_ANALYZE)
    async def analyze(who: Who, body: payloads.AnalyzeRequest) -> payloads.AnalysisResult:
        return await pool.matcher.run(analysis_report, gather(pool, body.job_id, body.constraint))

    @app.get(protocol.JOB_EVENTS)
    async def job_events(who: Who, job_id: str) -> list[payloads.Event]:
        cluster_id, proc_id = protocol.parse_job_id(job_id)
        events = pool.events.for_job(cluster_id, proc_id)
        if not events:
            raise NotFound(f"no events for job {job_id}")
        return events

    @app.get(protocol.JOB_OUTPUT)
    async def job_output(who: Who, job_id: str) -> Response:
        cluster_id, proc_id = protocol.parse_job_id(job_id)
        if proc_id is None:
            raise BadRequest("name one job (CLUSTER.PROC)")
        who.require(Scope.USER)
        owner = pool.owner_of(cluster_id, proc_id)
        if owner != who.subject and not who.is_admin:
            raise Forbidden(f"job {job_id} belongs to {owner}")
        data = await asyncio.to_thread(pool.spool.tar, cluster_id, proc_id)
        return Response(data, media_type="application/gzip")

    @app.get(protocol.AUTOCLUSTERS)
    async def autoclusters(who: Who) -> list[payloads.AutoclusterRow]:
        return pool.schedd.index.summary()

    @app.post(protocol.HISTORY_QUERY)
    async def history(who: Who, body: payloads.QueryRequest) -> Response:
        ads = await asyncio.to_thread(
            pool.history.query, body.ids, body.owners, body.constraint, body.projection, body.limit
        )
        return FastJSON(payloads.QueryResult(ads).to_dict())

    # -- bookkeeping -------------------------------------------------------------------------
    @app.post(protocol.EVENTS)
    async def record_event(who: Who, body: payloads.EventRequest) -> payloads.Event:
        return await pool.record_event(who, body)

    @app.get(protocol.EVENTS)
    async def events(
        who: Who, after: int = 0, limit: Annotated[int, Query(ge=1, le=10000)] = 1000
    ) -> list[payloads.Event]:
        return pool.events.after(after, limit)

    @app.get(protocol.EVENTS_STREAM)
    async def event_stream(who: Who, after: int = -1, dag: int = 0, job: str = "") -> StreamingResponse:
        """Every event; ``job`` (CLUSTER or CLUSTER.PROC): one job's; ``dag``: those of one DAG's job
        and its nodes (what its engine follows)."""
        render = None
        if job:
            cluster_id, proc_id = protocol.parse_job_id(job)

            def render(event: payloads.Event) -> bytes | None:
                mine = event.cluster_id == cluster_id and (proc_id is None or event.proc_id in (proc_id, -1))
                return _sse_event(event) if mine else None

        elif dag:
            owner = pool.owner_of(dag, 0)
            if owner != who.subject and not who.is_admin:
                raise Forbidden(f"DAG {dag} belongs to {owner}")

            def render(event: payloads.Event) -> bytes | None:
                if event.cluster_id == dag or pool.dags.dag_of(event.cluster_id) == dag:
                    return _sse_event(event)
                return None

        return StreamingResponse(
            _sse(pool, after, render), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    # -- sandboxes ---------------------------------------------------------------------------
    @app.post(protocol.BLOBS_MISSING)
    async def blobs_missing(who: Who, body: payloads.BlobsQuery) -> payloads.MissingBlobs:
        who.require(Scope.USER)
        for digest in body.digests:
            check_digest(digest)
        return payloads.MissingBlobs(pool.blobs.missing(body.digests))

    @app.put(protocol.BLOB)
    async def blob_put(who: Who, digest: str, request: Request) -> payloads.BlobStored:
        who.require(Scope.USER)
        check_digest(digest)
        pool.refuse_new_work()
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > pool.blobs.max_file_bytes:
            raise TooLarge(f"file of {length} bytes; the per-file limit is {pool.blobs.max_file_bytes}")
        size = await pool.blobs.put(digest, request.stream())
        return payloads.BlobStored(digest, size)

    @app.get(protocol.BLOB)
    async def blob_get(
        who: Who, digest: str, x_updraft_claim: Annotated[str | None, Header()] = None
    ) -> FileResponse:
        check_digest(digest)
        pool.pilots.may_read_blob(who, x_updraft_claim, digest)
        return FileResponse(pool.blobs.open(digest), media_type="application/octet-stream")

    # -- collector ---------------------------------------------------------------------------
    @app.post(protocol.ADS)
    async def advertise(who: Who, body: payloads.AdvertiseRequest) -> payloads.AdCount:
        stored = pool.collector.advertise(who, AdType.parse(body.ad_type), body.ads, body.lifetime_s)
        return payloads.AdCount(len(stored))

    @app.post(protocol.ADS_QUERY)
    async def ads_query(who: Who, body: payloads.AdQuery) -> Response:
        kind = None if body.ad_type.lower() == "any" else AdType.parse(body.ad_type)
        return FastJSON(
            payloads.AdsResult(pool.collector.query(kind, body.constraint, body.projection)).to_dict()
        )

    @app.post(protocol.ADS_INVALIDATE)
    async def invalidate(who: Who, body: payloads.InvalidateRequest) -> payloads.AdCount:
        return payloads.AdCount(
            pool.collector.invalidate(who, AdType.parse(body.ad_type), body.names, body.constraint)
        )

    # -- pilots ------------------------------------------------------------------------------
    @app.post(protocol.PILOT_POLL)
    async def poll(who: Who, body: payloads.PollRequest) -> Response:
        result = await pool.pilots.poll(who, body)
        return FastJSON(result.to_dict())

    @app.get(protocol.CLAIM_SANDBOX)
    async def claim_sandbox(who: Who, claim_id: str) -> payloads.ClaimSandbox:
        claim = pool.pilots.claim_of(who, claim_id)
        job = claim.job
        return payloads.ClaimSandbox(job.job_id, list(job.cluster.inputs_of(job.proc_id)))

    @app.put(protocol.CLAIM_OUTPUT)
    async def claim_output(who: Who, claim_id: str, request: Request) -> payloads.OutputStored:
        pool.pilots.claim_of(who, claim_id)
        limit = pool.spool.max_output_bytes
        fd, name = tempfile.mkstemp(prefix="output-", dir=pool.config.spool_dir)
        try:
            size = 0
            with os.fdopen(fd, "wb") as handle:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(f"output sandbox exceeds {limit} bytes")
                    handle.write(chunk)
            from pathlib import Path

            files = await pool.pilots.accept_output(who, claim_id, Path(name))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        return payloads.OutputStored(files)

    @app.post(protocol.CLAIM_REPORT)
    async def claim_report(who: Who, claim_id: str, body: payloads.ClaimReport) -> Response:
        return FastJSON((await pool.pilots.report(who, claim_id, body)).to_dict())

    # -- tokens and priorities ---------------------------------------------------------------
    @app.post(protocol.TOKENS)
    async def mint(who: Who, body: payloads.TokenRequest) -> payloads.TokenResult:
        scopes = parse_scopes(body.scopes)
        lifetime = min(int(body.lifetime_s), pool.config.max_token_lifetime_s)
        bindings = dict(body.bindings)
        subject = body.subject
        if not who.is_admin:
            if protocol.DAG_BINDING in bindings:
                raise Forbidden("a token bound to a DAG is made by the pool for that DAG's engine only")
            if who.has(Scope.FRONTEND) and scopes == {Scope.PILOT}:
                # a frontend mints pilot tokens bound to itself, named in its own namespace: it can
                # never mint the name of another frontend's pilot, a factory's pilot or a user
                bindings[FRONTEND_BINDING] = who.subject
                subject = pilot_subject(who.subject, body.subject)
            elif scopes == {Scope.USER} and body.subject == who.subject and who.has(Scope.USER):
                pass  # a user may mint more tokens for themself
            else:
                raise Forbidden(
                    f"{who.name} may not mint {', '.join(sorted(s.value for s in scopes))} tokens for {body.subject}"
                )
        token, expires = pool.tokens.issue(subject, frozenset(scopes), lifetime, bindings)
        return payloads.TokenResult(token, expires, subject, sorted(s.value for s in scopes))

    @app.post(protocol.TOKENS_RENEW)
    async def renew(who: Who) -> payloads.TokenResult:
        lifetime = min(who.lifetime_s, pool.config.max_token_lifetime_s)
        token, expires = pool.tokens.issue(who.subject, who.scopes, lifetime, who.bindings)
        return payloads.TokenResult(token, expires, who.subject, sorted(s.value for s in who.scopes))

    @app.post(protocol.TOKENS_REVOKE)
    async def revoke(who: Who, body: payloads.RevokeRequest) -> payloads.RevokeResult:
        return payloads.RevokeResult(await pool.revoke(who, body))

    @app.get(protocol.ACCOUNTANT)
    async def accountant(who: Who) -> list[payloads.AccountantRow]:
        return pool.schedd.accountant.report()

    @app.post(protocol.ACCOUNTANT_FACTOR)
    async def set_factor(who: Who, body: payloads.FactorRequest) -> payloads.FactorRequest:
        who.require(Scope.ADMIN)
        try:
            pool.schedd.accountant.set_factor(body.submitter, body.factor)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return body

    config = pool.config
    limits = BodyLimits(
        json=config.max_request_body_mb << 20,
        blob=config.max_input_file_mb << 20,
        output=config.max_output_sandbox_mb << 20,
    )
    app.add_middleware(
        RequestGuard, signer=pool.tokens, limits=limits, public_read=lambda: config.monitor.public
    )
    return app


def pool_query(pool: Pool, body: payloads.QueryRequest) -> payloads.QueryResult:
    schedd = pool.schedd
    if body.totals_only and not body.ids and not body.owners and not body.constraint:
        return payloads.QueryResult([], schedd.queue.totals())
    jobs, _missing = schedd.select(body.ids, body.owners, body.constraint)
    totals = schedd.queue.totals(jobs) if (body.totals or body.totals_only) else None
    if body.totals_only:
        return payloads.QueryResult([], totals)
    if body.limit > 0:
        jobs = jobs[: body.limit]
    ads = [job.project(body.projection) for job in jobs] if body.projection else [job.ad() for job in jobs]
    return payloads.QueryResult(ads, totals)


async def _sse(
    pool: Pool, after: int, render: Callable[[payloads.Event], bytes | None] | None = None
) -> AsyncIterator[bytes]:
    """Server-sent events: replay committed events after ``after``, then follow live.

    ``render`` writes one event (None: leave it out); the default writes it whole.
    """
    render = render or _sse_event
    subscriber = pool.events.subscribe()
    try:
        last = after
        replayed: set[int] = set()  # sent from the store: not again when the live copy arrives
        if after >= 0:
            while True:
                backlog = pool.events.after(last, 1000)
                for event in backlog:
                    last = event.id
                    replayed.add(event.id)
                    chunk = render(event)
                    if chunk is not None:
                        yield chunk
                if len(backlog) < 1000:
                    break
        while True:
            try:
                event = await asyncio.wait_for(subscriber.get(), timeout=15.0)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if event is None:  # we fell behind: the client resumes with ?after=
                return
            # ids are given when an event is recorded, not when it is committed: a lower id than the
            # last one sent can still arrive live, and is sent unless the backlog already had it
            if event.id in replayed or (event.id <= after):
                continue
            chunk = render(event)
            if chunk is not None:
                yield chunk
    finally:
        pool.events.unsubscribe(subscriber)


def _monitor_event(event: payloads.Event, show_reasons: bool) -> bytes | None:
    if event.type not in SHOWN_EVENTS:
        return None
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        event.id,
        event.type.encode(),
        orjson.dumps(event_view(event, show_reasons)),
    )


def _sse_event(event: payloads.Event) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.id, event.type.encode(), orjson.dumps(event.to_dict()))
