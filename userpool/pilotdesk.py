"""The pool's side of a pilot: its long poll, matches, claim reports and returned output.

A pilot advertises its slot with every poll; the pool matches idle jobs to it (the
evaluations in the matchmaking thread), starts claims and leases, and answers.  Kept apart
from the pool's lifecycle (pool.py) because it is the one busy path pilots drive, and it
only reads the pool's parts and commits through it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from updraft.core import classads, protocol
from updraft.core.errors import BadRequest, Forbidden
from updraft.core.payloads import ClaimReport, Match, PollRequest, PollResult, ReportResult
from updraft.core.protocol import AdType, ClaimEvent, Scope, format_job_id, literal
from userpool import matchsub
from userpool.claims import Claim, slot_name_of
from userpool.events import Tx
from userpool.tokens import Identity

if TYPE_CHECKING:
    from userpool.pool import Pool

log = logging.getLogger("updraft.pool")


class PilotDesk:
    """What the API's pilot routes call (poll, report, output, input files)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def _advertise_slot(self, identity: Identity, slot_ad: dict[str, str]) -> dict[str, str]:
        """The pilot's slot ad checked and put in the collector (a poll, or an exit report's next slot)."""
        (valid,) = self.pool.collector.validate([slot_ad])  # checked once, for both uses
        slot = dict(valid.texts)  # as the pilot sent it: the collector stamps its own copy
        self.pool.collector.advertise_valid(identity, AdType.Slot, [valid])
        return slot

    async def poll(self, identity: Identity, request: PollRequest) -> PollResult:
        identity.require(Scope.PILOT)
        if request.wait_s < 0 or request.max_matches < 0:
            raise BadRequest("wait_s and max_matches cannot be negative")
        self.pool.stats.polls += 1
        arrived = self.pool.clock()
        slot = self._advertise_slot(identity, request.slot_ad)
        deadline = time.monotonic() + max(
            0.0, min(float(request.wait_s or 0), self.pool.config.max_poll_wait_s)
        )
        claims = list(dict.fromkeys(request.claims))
        slot_name = slot_name_of(slot)
        forgotten = self.pool.schedd.claims.forgotten(
            identity.principal, slot_name, set(claims), arrived - self.pool.config.forgotten_claim_s
        )
        if forgotten:
            log.warning(
                "%s no longer lists %d claim(s) of %s: their jobs run again",
                identity.name,
                len(forgotten),
                slot_name,
            )
            await self.pool.commit(self.pool.leases.release_forgotten(forgotten))
        while True:
            _renewed, stop = self.pool.schedd.claims.renew(claims, identity.principal)
            commands = self.pool.schedd.claims.take_commands(claims)
            revoked = {c.claim_id for c in commands}
            unknown = [c for c in stop if c not in revoked]
            matches: list[Match] = []
            if request.max_matches > 0 and not self.pool.stopping and self._slot_accepts_jobs(slot):
                matches = await self._match(identity, slot, request.max_matches)
            remaining = deadline - time.monotonic()
            if matches or commands or unknown or remaining <= 0 or self.pool.stopping:
                return PollResult(matches, commands, unknown)
            await self.pool.waiting.wait(slot, claims, request.max_matches > 0, remaining)

    def _slot_accepts_jobs(self, slot: dict[str, str]) -> bool:
        text = slot.get(protocol.ATTR_GLIDEIN_TO_RETIRE)
        if text is None or not classads.is_literal(text):
            return True
        value = classads.number(classads.value_of_text(text))
        return not (value is not None and value <= self.pool.clock())

    async def _match(self, identity: Identity, slot: dict[str, str], max_matches: int) -> list[Match]:
        negotiator = self.pool.schedd.negotiator
        negotiator.prepare(slot)
        tx = Tx()
        claims = []
        ads: list[dict[str, str]] = []
        texts = dict(slot)
        for _ in range(max(1, min(max_matches, 64))):
            await self.pool.matcher.ready(texts)  # evaluations in the matchmaking thread, not here
            picked = negotiator.match_one(texts, evaluate=False)
            if picked is None:
                break
            idle_since = picked.job.get("EnteredCurrentStatus")
            self.pool.monitor.job_started(self.pool.clock() - float(idle_since) if idle_since else 0.0, texts)
            claim = self.pool.leases.start(
                tx, picked.job, picked.autocluster, texts, picked.slot_ad, identity.principal
            )
            ad, recorded = matchsub.expand(picked.job.ad(), texts)  # $$(Attr) from this slot
            for name, text in recorded.items():
                picked.job.set(name, text)
            claims.append(claim)
            ads.append(ad)
            if max_matches <= 1:
                break
            texts = _subtract(texts, claim.cpus, claim.memory_mb, claim.disk_kb)
        if negotiator.new_penalties:
            self._report_penalties(tx)
        if not claims:
            if tx.events:
                await self.pool.commit(tx)
            return []
        self.pool.schedd.finish(tx)
        await self.pool.commit(tx)
        self.pool.stats.matches += len(claims)
        return [
            Match(
                claim.claim_id,
                claim.job.job_id,
                ad,
                claim.lease_s,
                list(claim.job.cluster.inputs_of(claim.job.proc_id)),
                claim.cpus,
                claim.memory_mb,
                claim.disk_kb,
            )
            for claim, ad in zip(claims, ads, strict=True)
        ]

    def _report_penalties(self, tx: Tx) -> None:
        """An event for each autocluster the matchmaker just left out for being too slow."""
        negotiator = self.pool.schedd.negotiator
        while negotiator.new_penalties:
            penalty = negotiator.new_penalties.popleft()
            autocluster = penalty.autocluster
            head = autocluster.head()
            cluster_id = head[1] if head else 0
            log.warning(
                "autocluster %d of %s took %.0f ms to evaluate against one slot (budget %.0f ms):"
                " left out of matchmaking for %.0f s",
                autocluster.id, autocluster.submitter, penalty.took_s * 1000,
                negotiator.eval_budget_s * 1000, negotiator.penalty_s,
            )  # fmt: skip
            self.pool.events.record(
                tx, "negotiator", cluster_id, -1, "autocluster_skipped",
                {"autocluster": autocluster.id, "submitter": autocluster.submitter, "jobs": autocluster.idle,
                 "took_ms": round(penalty.took_s * 1000, 1), "budget_ms": negotiator.eval_budget_s * 1000,
                 "until": round(penalty.until)},
            )  # fmt: skip

    def claim_of(self, identity: Identity, claim_id: str) -> Claim:
        identity.require(Scope.PILOT)
        return self.pool.schedd.claims.check(claim_id, identity.principal)

    async def report(self, identity: Identity, claim_id: str, report: ClaimReport) -> ReportResult:
        claim = self.claim_of(identity, claim_id)
        tx = Tx()
        self.pool.leases.report(tx, claim, report)
        self.pool.schedd.finish(tx)
        if claim.claim_id not in self.pool.schedd.claims.active:
            # the pilot's own long poll still lists this claim: let it return and offer the freed resources
            tx.after_commit.append(lambda: self.pool.waiting.claim_news(claim.claim_id))
        await self.pool.commit(tx)
        job = claim.job
        matches: list[Match] = []
        if (
            report.slot_ad
            and report.event == ClaimEvent.EXITED.value
            and claim.claim_id not in self.pool.schedd.claims.active
            and not self.pool.stopping
        ):
            slot = self._advertise_slot(identity, report.slot_ad)  # with this job's share back
            if self._slot_accepts_jobs(slot):
                matches = await self._match(identity, slot, 1)
        return ReportResult(format_job_id(job.cluster.cluster_id, job.proc_id), job.status, matches)

    async def accept_output(self, identity: Identity, claim_id: str, tar_path: Path) -> list[str]:
        claim = self.claim_of(identity, claim_id)
        job = claim.job
        names = await asyncio.to_thread(self.pool.spool.accept, job.cluster.cluster_id, job.proc_id, tar_path)
        tx = Tx()
        job.set("SpooledOutputFiles", literal(",".join(names)))
        self.pool.schedd.touch(tx, job)
        self.pool.events.record(
            tx, identity.name, job.cluster.cluster_id, job.proc_id, "output_received", {"files": len(names)}
        )
        self.pool.schedd.finish(tx)
        await self.pool.commit(tx)
        return names

    def may_read_blob(self, identity: Identity, claim_id: str | None, digest: str) -> None:
        if identity.is_admin:
            return
        if claim_id:
            claim = self.claim_of(identity, claim_id)
            if any(f.digest == digest for f in claim.job.cluster.inputs_of(claim.job.proc_id)):
                return
            raise Forbidden("that file is not part of the claimed job's sandbox")
        raise Forbidden("input files are readable by the pilot running the job (claim) or an admin")


def _subtract(slot: dict[str, str], cpus: int, memory_mb: int, disk_kb: int) -> dict[str, str]:
    """The slot as it is after a job took its share (a partitionable slot's leftovers)."""
    out = dict(slot)
    for name, amount in (("Cpus", cpus), ("Memory", memory_mb), ("Disk", disk_kb)):
        text = out.get(name)
        if text is not None and classads.is_literal(text):
            value = classads.number(classads.value_of_text(text))
            if value is not None:
                out[name] = str(max(0, int(value) - int(amount)))
    return out
