"""Keeping the journal true to the site: reconcile, poll, finish, release or remove held, expire stale.

Every function here works on one entry and is called from that entry's worker thread, so a
site that hangs holds up nothing but itself.  None of them decides how many glideins there
should be; that is the plan's job (limits.py, submission.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.adapters.base import GlideinOutput, SiteAdapter
from factory.analysis import failure_type
from factory.config import EntryConfig, FactoryConfig
from factory.errors import SiteUnavailable
from factory.glideins import TERMINAL, GlideinState
from factory.journal import Glidein, Journal
from updraft.core.pilotrecord import parse_result

#: counters of pilots' time (core-seconds: all, used, idle, validation) and of validation failures by type
PILOT_SECONDS = "pilot_seconds:"
VALIDATION_FAILED = "validation_failed:"

log = logging.getLogger("updraft.factory")
REMOVAL_RETRY_S = 600.0  # a removal the site has not carried out is asked for again after this


@dataclass
class EntryContext:
    """What one entry's worker needs, and what it reports back to the cycle."""

    config: FactoryConfig
    entry: EntryConfig
    adapter: SiteAdapter
    journal: Journal
    outputs: Path  # <state>/outputs: each ended glidein's output, kept for `factory logs`
    happened: dict[str, float] = field(default_factory=dict)  # counters for this cycle: submitted, ended...

    @property
    def name(self) -> str:
        return self.entry.name

    def count(self, what: str, n: float = 1) -> None:
        if n:
            self.happened[what] = self.happened.get(what, 0) + n


# -- reconcile: glideins in doubt, and glideins the journal does not know -------------------------
def reconcile(ctx: EntryContext, now: float, adopt_unknown: bool | None) -> None:
    """After a crash (or a submission that timed out): find out from the site, by tag.

    ``adopt_unknown`` None looks only at the glideins in doubt; True/False also lists the
    site's glideins with our tag prefix and adopts or cancels those the journal lacks.
    """
    in_doubt = [g for g in ctx.journal.live(ctx.name) if g.state == GlideinState.UNSUBMITTED]
    if in_doubt:
        found = ctx.adapter.find([g.tag for g in in_doubt])
        for glidein in in_doubt:
            site_id = found.get(glidein.tag)
            if site_id:
                ctx.journal.submitted(glidein, site_id, now)
                ctx.adapter.commit({site_id: glidein.glidein_id})
                log.info(
                    "%s: glidein %s was submitted after all (site id %s)",
                    ctx.name,
                    glidein.glidein_id,
                    site_id,
                )
                ctx.count("found")
                if glidein.remove_requested:
                    glidein.site_id = site_id
                    cancel(ctx, [glidein], glidein.reason or "removed", now)
            elif now - glidein.created >= ctx.config.submit_grace_s:
                if glidein.remove_requested:
                    ctx.journal.move(
                        glidein, GlideinState.REMOVED, reason="removed before it reached the site", now=now
                    )
                else:
                    ctx.journal.move(
                        glidein,
                        GlideinState.FAILED,
                        reason=f"never reached the site (no job tagged {glidein.tag})",
                        now=now,
                    )
                    ctx.count("never_submitted")
    if adopt_unknown is None:
        return
    # after a restart: a glidein recorded just before the crash may still wait for its commit
    waiting = {
        g.site_id: g.glidein_id
        for g in ctx.journal.live(ctx.name)
        if g.state == GlideinState.QUEUED and g.site_id
    }
    if waiting:
        ctx.adapter.commit(waiting)
    for tag, site_id in ctx.adapter.list_tagged().items():
        if ctx.journal.by_tag(tag) is not None:
            continue
        adopted = ctx.journal.adopt(ctx.config.name, ctx.name, tag, site_id, GlideinState.QUEUED, now)
        if adopt_unknown:
            log.warning(
                "%s: adopted glidein %s (site id %s) that the journal did not know", ctx.name, tag, site_id
            )
            ctx.count("adopted")
        else:
            log.warning(
                "%s: cancelling glidein %s (site id %s) that the journal did not know", ctx.name, tag, site_id
            )
            cancel(ctx, [adopted], "unknown to the journal (unknown_glideins: cancel)", now)


# -- status -----------------------------------------------------------------------------------
def poll(ctx: EntryContext, now: float) -> None:
    """Ask the site about every live glidein it has and apply the answers (bulk, one call)."""
    live = [g for g in ctx.journal.live(ctx.name) if g.site_id]
    if not live:
        return
    answers = ctx.adapter.status([g.site_id for g in live if g.site_id])
    grace = ctx.entry.stale.missing_s
    for glidein in live:
        answer = answers.get(glidein.site_id or "")
        if answer is not None:
            hold = (answer.hold_code, answer.hold_subcode)
            if (
                ctx.journal.move(glidein, answer.state, answer.native, answer.reason, now, hold)
                and answer.state in TERMINAL
            ):
                ctx.count("ended")
            continue
        if glidein.missing_since is None:
            ctx.journal.set(glidein.glidein_id, missing_since=now)
        elif now - glidein.missing_since >= grace:
            _ended_unseen(ctx, glidein, now)


def _ended_unseen(ctx: EntryContext, glidein: Glidein, now: float) -> None:
    """The site forgot a glidein before we saw it end: its output says how, or it is lost."""
    output = _safe_output(ctx, glidein)
    record = parse_result(output.stdout) if output else None
    if glidein.remove_requested:
        state, reason = GlideinState.REMOVED, glidein.reason or "removed"
    elif record is not None:
        ok = record.get("exit_status") == 0
        state, reason = (
            (GlideinState.COMPLETED if ok else GlideinState.FAILED),
            str(record.get("reason") or record.get("status") or ""),
        )
    else:
        state, reason = GlideinState.LOST, "the site no longer knows it and it left no output"
        log.warning("%s: glidein %s (site id %s) is lost", ctx.name, glidein.glidein_id, glidein.site_id)
        ctx.count("lost")
    ctx.journal.move(glidein, state, "gone from the site", reason, now)
    ctx.count("ended")


# -- ended glideins: keep their output and record, then let the site forget them -------------------
def finish(ctx: EntryContext) -> None:
    for glidein in ctx.journal.uncleaned():
        if glidein.entry != ctx.name or not glidein.site_id:
            continue
        try:
            _finish_one(ctx, glidein)
        except SiteUnavailable as exc:  # the output is still there: fetch it next cycle
            log.warning("%s: cannot finish %s now: %s", ctx.name, glidein.glidein_id, exc)
            return


def _finish_one(ctx: EntryContext, glidein: Glidein) -> None:
    """Keep the output and record of one ended glidein, then let the site forget it."""
    output = _safe_output(ctx, glidein)
    if output is not None:
        ctx.outputs.mkdir(parents=True, exist_ok=True)
        (ctx.outputs / f"{glidein.glidein_id}.out").write_text(output.stdout)
        (ctx.outputs / f"{glidein.glidein_id}.err").write_text(output.stderr)
        record = parse_result(output.stdout)
        if record is not None:
            ctx.journal.set(glidein.glidein_id, record=record)
            count_pilot_time(ctx, record)
    ctx.adapter.cleanup([glidein.site_id])
    ctx.adapter.forget(glidein.glidein_id)
    ctx.journal.set(glidein.glidein_id, cleaned=1)


def count_pilot_time(ctx: EntryContext, record: dict[str, Any]) -> None:
    """What a pilot's final record says of its time, counted as glideinWMS's factory monitoring
    does: core-seconds in all, used by jobs, and wasted (idle, or spent failing validation)."""
    cpus = int(record.get("cpus") or 1)
    lifetime = float(record.get("lifetime_s") or 0) * cpus
    used = min(lifetime, float(record.get("job_core_s") or 0))
    ctx.count(PILOT_SECONDS + "all", lifetime)
    ctx.count(PILOT_SECONDS + "used", used)
    if record.get("status") == "validation_failed":
        ctx.count("validation_failed")
        ctx.count(VALIDATION_FAILED + failure_type(record))
        ctx.count(PILOT_SECONDS + "validation", lifetime)
    else:
        ctx.count(PILOT_SECONDS + "idle", max(0.0, lifetime - used))


def _safe_output(ctx: EntryContext, glidein: Glidein) -> GlideinOutput | None:
    try:
        return ctx.adapter.fetch_output(glidein.site_id or "", glidein.glidein_id)
    except SiteUnavailable:  # a site that cannot be reached now: not an unreadable output
        raise
    except Exception as exc:  # an unreadable output must not stop the glidein from being finished
        log.warning("%s: cannot fetch the output of %s: %s", ctx.name, glidein.glidein_id, exc)
        return None


# -- held glideins ----------------------------------------------------------------------------
def handle_held(ctx: EntryContext, now: float) -> None:
    """glideinWMS's sanitizeGlideins for held glideins: remove the unrecoverable, release the others slowly.

    A hold is recoverable only if its code (and subcode) is in ``held.recoverable_exitcodes``
    or its reason matches ``held.recoverable`` (and not ``held.unrecoverable``).  A recoverable
    glidein held for the n-th time is released after n x ``min_release_time_s`` held, until it
    has been held more than ``max_releases`` times; at most ``release_max_per_cycle`` per cycle.
    """
    policy = ctx.entry.held
    to_release: list[Glidein] = []
    to_remove: list[tuple[Glidein, str]] = []
    for glidein in ctx.journal.live(ctx.name):
        if glidein.state != GlideinState.HELD or glidein.remove_requested or not glidein.site_id:
            continue
        why = glidein.reason or glidein.native
        code = (
            ""
            if glidein.hold_code is None
            else f" (hold code {glidein.hold_code}/{glidein.hold_subcode or 0})"
        )
        holds = glidein.releases + 1
        if not policy.recoverable_hold(glidein.hold_code, glidein.hold_subcode, why):
            to_remove.append((glidein, f"held, unrecoverable{code}: {why}"))
        elif holds > policy.max_releases:
            to_remove.append(
                (glidein, f"held {holds} times (max_releases {policy.max_releases}){code}: {why}")
            )
        elif now - glidein.changed >= holds * policy.min_release_time_s:
            to_release.append(glidein)
    to_release = to_release[: ctx.entry.pacing.release_max_per_cycle]
    if to_release:
        answers = ctx.adapter.release([g.site_id for g in to_release if g.site_id])
        for glidein in to_release:
            ctx.journal.set(glidein.glidein_id, releases=glidein.releases + 1, last_release=now)
            if answers.get(glidein.site_id or ""):
                # idle again: a new hold starts its own clock (HTCondor's EnteredCurrentStatus)
                ctx.journal.move(glidein, GlideinState.QUEUED, "released", now=now)
                ctx.count("released")
    for glidein, why in to_remove:
        cancel(ctx, [glidein], why, now)


# -- stale glideins ---------------------------------------------------------------------------
def expire_stale(ctx: EntryContext, now: float, idle_lifetimes: dict[str, int]) -> None:
    """Remove glideins that stayed too long in one state (and re-ask removals the site ignored)."""
    stale = ctx.entry.stale
    lifetime = ctx.entry.walltime_s or ctx.config.glidein_lifetime_s
    running_limit = stale.running_s or (lifetime + 3600)
    for glidein in ctx.journal.live(ctx.name):
        age = now - glidein.changed
        if glidein.remove_requested:
            if glidein.site_id and now - glidein.remove_requested >= REMOVAL_RETRY_S:
                cancel(ctx, [glidein], glidein.reason or "removal asked again", now)
            continue
        limit, what = 0, ""
        if glidein.state == GlideinState.QUEUED:
            limit, what = stale.queued_s, "queued"
            idle_lifetime = idle_lifetimes.get(glidein.client, 0)
            if idle_lifetime and (not limit or idle_lifetime < limit):
                limit, what = idle_lifetime, "queued (the frontend's idle lifetime)"
        elif glidein.state == GlideinState.HELD:
            limit, what = stale.held_s, "held"
        elif glidein.state == GlideinState.RUNNING:
            limit, what = running_limit, "running"
        if limit and age > limit:
            cancel(ctx, [glidein], f"stale: {what} for {age:.0f} s (limit {limit} s)", now)
            ctx.count("stale")


def expire_leases(ctx: EntryContext, now: float, grace_s: float = 600.0) -> None:
    """A site that cannot answer: glideins past their lease have ended by themselves (the pilot sees to it)."""
    for glidein in ctx.journal.live(ctx.name):
        if glidein.lease_until and now > glidein.lease_until + grace_s:
            reason = "its lease ran out while the site could not be asked; the pilot ended itself"
            ctx.journal.move(glidein, GlideinState.LOST, "lease expired", reason, now)
            ctx.count("lease_expired")


# -- removal ----------------------------------------------------------------------------------
def cancel(ctx: EntryContext, glideins: Sequence[Glidein], why: str, now: float) -> None:
    """Ask the site to remove glideins; the journal marks them and the site's answer ends them."""
    at_site = [g for g in glideins if g.site_id]
    if at_site:
        ctx.adapter.cancel([g.site_id for g in at_site if g.site_id])
    for glidein in glideins:
        ctx.journal.set(glidein.glidein_id, remove_requested=now, reason=why)
        if glidein.state == GlideinState.UNSUBMITTED and not glidein.site_id:
            continue  # reconcile cancels it if the site has it after all, or fails it
        log.info("%s: removing glidein %s: %s", ctx.name, glidein.glidein_id, why)
    ctx.count("removed", len(glideins))


# -- credentials ------------------------------------------------------------------------------
def renew_credentials(ctx: EntryContext, proxy: Path | None, proxy_id: str) -> list[dict[str, Any]]:
    """Push a renewed proxy to the CE for every live glidein that has an older one.

    Returns the glideins whose renewal failed, so that the cycle reports them (an event,
    the entries table, a metric) instead of letting them die quietly when the old one expires.
    """
    if proxy is None or not proxy_id:
        return []
    stale = [
        g
        for g in ctx.journal.live(ctx.name)
        if g.site_id and g.credential != proxy_id and not g.remove_requested
    ]
    if not stale:
        return []
    answers = ctx.adapter.renew_credential([g.site_id for g in stale if g.site_id], proxy)
    failed = []
    for glidein in stale:
        if answers.get(glidein.site_id or ""):
            ctx.journal.set(glidein.glidein_id, credential=proxy_id)
            ctx.count("credential_renewed")
        else:
            failed.append({"glidein": glidein.glidein_id, "site_id": glidein.site_id, "entry": ctx.name})
            ctx.count("credential_failed")
    if failed:
        log.warning("%s: the CE did not take the renewed proxy for %d glidein(s)", ctx.name, len(failed))
    return failed
