"""Carrying out a plan for one (entry, client): submit new glideins, remove excess ones.

Submission is write-ahead: the glideins go into the journal (UNSUBMITTED, with their tags)
in one transaction before the site is asked, and get their site ids after.  A crash in
between leaves rows in doubt that ``tracking.reconcile`` settles by tag, so a glidein is
never sent twice and never forgotten.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

from factory.adapters.base import GlideinSpec, Refused, Retry, Submitted
from factory.glideins import GlideinState
from factory.limits import Plan, Request
from factory.startup import POOL_CA_FILE, StagedFile, StartupSpec, render
from factory.tracking import EntryContext, cancel
from updraft.core import protocol
from updraft.core.failpoints import failpoint

log = logging.getLogger("updraft.factory")
TOKEN_FILE = "pilot.token"  # the name the startup script looks for next to itself


@dataclass(frozen=True)
class Staged:
    """Where glideins get their pilot and checks, and which pool they serve."""

    pilot: StagedFile
    checks: tuple[StagedFile, ...]
    staging_url: str
    pool_url: str
    pool_ca: bytes = b""  # the CA the pilots verify the pool with (empty: the system's)


def for_request(staged: Staged, request: Request) -> Staged:
    """What a request's glideins get: the user pool it names (and that pool's CA), else the factory's.

    In glideinWMS a factory serves many frontends, each with its own user pool, through one
    collector of its own (the WMS collector): the request names the pool (GLIDEIN_Collector).
    """
    if not request.user_pool:
        return staged
    https = request.user_pool.startswith("https:")
    ca = request.user_pool_ca.encode() if https and request.user_pool_ca else b""
    return dataclasses.replace(staged, pool_url=request.user_pool, pool_ca=ca)


@dataclass
class SubmitResult:
    submitted: int = 0
    in_doubt: int = 0  # the site did not answer clearly: reconcile will tell
    refused: int = 0
    problem: str = ""


def lease_for(ctx: EntryContext, now: float) -> float:
    """A glidein's end of life: it may wait queued, then live its lifetime; never longer."""
    lifetime = ctx.entry.walltime_s or ctx.config.glidein_lifetime_s
    return now + ctx.entry.stale.queued_s + lifetime


def submit(
    ctx: EntryContext, request: Request, count: int, staged: Staged, credential_id: str = ""
) -> SubmitResult:
    result = SubmitResult()
    if count <= 0:
        return result
    if not request.token:
        result.problem = "the request carries no pilot token: nothing submitted"
        return result
    pace = ctx.entry.pacing
    remaining = count
    while remaining > 0:
        now = time.time()
        lease = lease_for(ctx, now)
        rows = ctx.journal.new_glideins(
            ctx.config.name,
            ctx.name,
            request.client,
            min(pace.cluster_size, remaining),
            now,
            lease,
            credential_id,
        )
        remaining -= len(rows)
        specs = [
            GlideinSpec(
                glidein_id=row.glidein_id,
                tag=row.tag,
                startup_script=_script(ctx, row.glidein_id, request, staged, lease),
                files={
                    TOKEN_FILE: (request.token + "\n").encode(),
                    **({POOL_CA_FILE: staged.pool_ca} if staged.pool_ca else {}),
                },
                environment={
                    protocol.ATTR_GLIDEIN_FACTORY: ctx.config.name,
                    protocol.ATTR_GLIDEIN_ENTRY: ctx.name,
                },
                cpus=ctx.entry.cores,
                memory_mb=ctx.entry.memory_mb,
                walltime_s=ctx.entry.walltime_s,
                frontend=request.frontend,
            )
            for row in rows
        ]
        failpoint("factory.before_site_submit")
        try:
            outcomes = ctx.adapter.submit(specs)
        except Exception as exc:  # the rows stay in doubt; reconcile asks the site by tag
            log.warning("%s: submission of %d glidein(s) failed: %s", ctx.name, len(rows), exc)
            outcomes = [Retry(str(exc))] * len(rows)
        failpoint("factory.after_site_submit")
        recorded: dict[str, str] = {}
        for row, outcome in zip(rows, outcomes, strict=True):
            if isinstance(outcome, Submitted):
                ctx.journal.submitted(row, outcome.site_id)
                recorded[outcome.site_id] = row.glidein_id
                result.submitted += 1
            elif isinstance(outcome, Refused):
                ctx.journal.move(row, GlideinState.FAILED, reason=f"refused by the site: {outcome.reason}")
                result.refused += 1
                result.problem = f"the site refused: {outcome.reason}"
            else:
                ctx.journal.set(row.glidein_id, reason=f"submission in doubt: {outcome.reason}")
                result.in_doubt += 1
                result.problem = f"submission failed: {outcome.reason}"
        if recorded:
            failpoint("factory.before_commit")
            try:
                ctx.adapter.commit(recorded)  # two-phase sites run only what the journal holds
            except Exception as exc:  # the site commits at the next status poll, or the request expires
                log.warning("%s: commit of %d glidein(s) failed: %s", ctx.name, len(recorded), exc)
        if result.refused or result.in_doubt:
            break  # the site is unwell: no more this cycle
    ctx.count("submitted", result.submitted)
    if result.submitted:
        log.info("%s: submitted %d glidein(s) for %s", ctx.name, result.submitted, request.client)
    return result


def _script(ctx: EntryContext, glidein_id: str, request: Request, staged: Staged, lease: float) -> str:
    return render(
        StartupSpec(
            ctx.config, ctx.entry, glidein_id, request.client, dict(request.params), staged.pool_url,
            staged.staging_url, staged.pilot, list(staged.checks), lease, bool(staged.pool_ca),
        )
    )  # fmt: skip


def remove_excess(
    ctx: EntryContext, client: str, plan: Plan, now: float, busy: dict[str, bool] | None = None
) -> None:
    """Unsubmitted, then queued, then running and held glideins, newest first in each.

    Among running ones, ``busy`` (glidein id -> its pilot runs a job, from the pool) decides:
    those whose pilot is idle go first, then those with no slot in the pool yet; one running a
    job only when the request says so (``plan.remove_busy``).  Without ``busy`` (the pool could
    not be asked) no running glidein is removed unless busy ones may go anyway.
    """
    live = [g for g in ctx.journal.live(ctx.name) if g.client == client and not g.remove_requested]
    live.sort(key=lambda g: g.created, reverse=True)
    running = [g for g in live if g.state == GlideinState.RUNNING]
    if busy is None:
        running = running if plan.remove_busy else []
    else:
        rank = {False: 0, None: 1, True: 2}  # idle pilot, not registered, running a job
        running = [g for g in running if plan.remove_busy or not busy.get(g.glidein_id, False)]
        running.sort(key=lambda g: rank[busy.get(g.glidein_id)])
    for chosen, why in (
        ([g for g in live if g.state == GlideinState.UNSUBMITTED][: plan.remove_unsubmitted], "unsubmitted"),
        ([g for g in live if g.state == GlideinState.QUEUED][: plan.remove_idle], "queued"),
        (running[: plan.remove_running], "running"),
        ([g for g in live if g.state == GlideinState.HELD][: plan.remove_held], "held"),
    ):
        if chosen:
            cancel(ctx, chosen, f"excess ({why}): the frontend asked for fewer ({client})", now)
