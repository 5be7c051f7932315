"""Matchmaking: the best idle job for a pilot's slot, both ways, in fair-share order.

A slot is reduced to its *shape*: the texts of the slot attributes any job
expression reads through TARGET, plus its own START/Requirements/Rank and what they
read.  Pilots of one entry with the same free resources share a shape, and a shape
is evaluated once against each autocluster; later pilots of that shape only pick.

Order: the submitter furthest below its fair share (HTCondor user priority), then
JobPrio, then the job's Rank of this slot, then QDate (oldest first).

Matching is both ways: the job's Requirements with TARGET = slot, the slot's START
and Requirements with TARGET = job, and a built-in resource fit (requests within
the slot's free Cpus/Memory/Disk/GPUs), as a partitionable slot does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from userpool import classads
from userpool.accountant import Accountant
from userpool.autoclusters import Autocluster, AutoclusterIndex
from userpool.queue import Job

FIT = (
    "(TARGET.Cpus >= ifThenElse(isUndefined(RequestCpus), 1, RequestCpus))"
    " && (isUndefined(RequestMemory) || isUndefined(TARGET.Memory) || TARGET.Memory >= RequestMemory)"
    " && (isUndefined(RequestDisk) || isUndefined(TARGET.Disk) || TARGET.Disk >= RequestDisk)"
    " && (isUndefined(RequestGPUs) || RequestGPUs == 0 || TARGET.GPUs >= RequestGPUs)"
)
SLOT_POLICY_ATTRS = ("START", "Requirements", "Rank")


@dataclass(frozen=True)
class Picked:
    """A job taken out of its autocluster for a slot, with what starting it needs."""

    job: Job
    autocluster: Autocluster
    slot_ad: classads.ClassAd


@dataclass
class _Candidate:
    order: tuple[float, float, int]  # (-JobPrio, -Rank, autocluster id)
    autocluster: Autocluster


@dataclass
class _Shape:
    """One slot shape's view of the autoclusters, extended as new ones appear."""

    slot_ad: classads.ClassAd
    created: float
    evaluated: int = 0  # autoclusters in index.ordered already evaluated
    by_submitter: dict[str, list[_Candidate]] = field(default_factory=dict)
    start: dict[str, int] = field(default_factory=dict)  # first possibly non-empty candidate
    revivals: int = 0


def resource_fit_text() -> str:
    return FIT


class Negotiator:
    def __init__(
        self,
        index: AutoclusterIndex,
        accountant: Accountant,
        shape_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.index = index
        self.accountant = accountant
        self.shape_ttl_s = shape_ttl_s
        self.clock = clock
        self._shapes: dict[tuple[tuple[str, str | None], ...], _Shape] = {}
        self._shapes_key = (-1, -1)
        self.evaluations = 0

    # -- shapes -------------------------------------------------------------------------
    def _slot_policy_refs(self, slot: Mapping[str, str]) -> set[str]:
        """Job attributes a slot's policy reads: TARGET.x, and unscoped names the slot lacks."""
        refs: set[str] = set()
        for attribute in SLOT_POLICY_ATTRS:
            text = slot.get(attribute)
            if text:
                own, target = classads.references(text)
                refs |= target
                refs |= {name for name in classads.closure(own, slot) if name not in slot}
        return refs

    def shape_key(self, slot: Mapping[str, str]) -> tuple[tuple[str, str | None], ...]:
        names = classads.closure(sorted(self.index.slot_refs) + list(SLOT_POLICY_ATTRS), slot)
        return tuple((n, slot.get(n)) for n in names)

    def _shape(self, slot: Mapping[str, str]) -> _Shape:
        generation = (self.index.generation, self.index.slot_refs_generation)
        if generation != self._shapes_key:
            self._shapes.clear()
            self._shapes_key = generation
        key = self.shape_key(slot)
        now = self.clock()
        shape = self._shapes.get(key)
        if shape is None or now - shape.created > self.shape_ttl_s:
            shape = _Shape(classads.build([(n, t) for n, t in key if t is not None]), now)
            if len(self._shapes) > 20000:
                self._shapes.clear()
            self._shapes[key] = shape
        ordered = self.index.ordered
        if shape.evaluated < len(ordered):
            for autocluster in ordered[shape.evaluated :]:
                rank = self._evaluate(autocluster, shape.slot_ad)
                if rank is not None:
                    candidates = shape.by_submitter.setdefault(autocluster.submitter, [])
                    candidates.append(
                        _Candidate((-float(autocluster.prio), -rank, autocluster.id), autocluster)
                    )
                    candidates.sort(key=lambda c: c.order)
                    shape.start[autocluster.submitter] = 0
            shape.evaluated = len(ordered)
        if shape.revivals != self.index.revivals:
            shape.start = dict.fromkeys(shape.by_submitter, 0)
            shape.revivals = self.index.revivals
        return shape

    def _evaluate(self, autocluster: Autocluster, slot_ad: classads.ClassAd) -> float | None:
        """The job's Rank of the slot if they match both ways, else None."""
        self.evaluations += 1
        job_ad = autocluster.ad
        try:
            requirements = autocluster.texts.get("Requirements")
            if requirements is not None and not classads.is_true(
                classads.evaluate(requirements, job_ad, slot_ad)
            ):
                return None
            if not classads.is_true(classads.evaluate(FIT, job_ad, slot_ad)):
                return None
            for attribute in ("START", "Requirements"):
                if attribute in slot_ad and not classads.is_true(
                    slot_ad.lookup(attribute).eval(slot_ad, job_ad)
                ):
                    return None
            rank_text = autocluster.texts.get("Rank")
            if rank_text is None:
                return 0.0
            rank = classads.evaluate(rank_text, job_ad, slot_ad)
        except classads.ExpressionError:
            return None
        if isinstance(rank, bool):
            return 1.0 if rank else 0.0
        return float(rank) if isinstance(rank, (int, float)) else 0.0

    # -- matching ----------------------------------------------------------------------------
    def prepare(self, slot: Mapping[str, str]) -> None:
        """Make the job attributes this slot's policy reads significant (may regroup jobs)."""
        refs = self._slot_policy_refs(slot)
        if refs:
            self.index.require(refs)

    def candidates(self, slot: Mapping[str, str]) -> list[Autocluster]:
        """Every autocluster with idle jobs that matches ``slot``, best first per submitter."""
        self.prepare(slot)
        shape = self._shape(slot)
        out = []
        for candidates in shape.by_submitter.values():
            out.extend(c.autocluster for c in candidates if c.autocluster.idle > 0)
        return out

    def match_one(self, slot: Mapping[str, str]) -> Picked | None:
        """Take the best idle job for ``slot`` out of its autocluster; the caller starts it."""
        shape = self._shape(slot)
        chosen_submitter = None
        best_score = None
        for submitter, candidates in shape.by_submitter.items():
            start = shape.start.get(submitter, 0)
            while start < len(candidates) and candidates[start].autocluster.idle <= 0:
                start += 1
            shape.start[submitter] = start
            if start >= len(candidates):
                continue
            score = self.accountant.share_score(submitter)
            if best_score is None or score < best_score:
                best_score = score
                chosen_submitter = submitter
        if chosen_submitter is None:
            return None
        candidates = shape.by_submitter[chosen_submitter]
        start = shape.start[chosen_submitter]
        best = candidates[start]
        best_head = best.autocluster.head()
        # among equally good autoclusters (same JobPrio and Rank) the oldest job goes first
        for candidate in candidates[start + 1 :]:
            if candidate.order[:2] != best.order[:2]:
                break
            if candidate.autocluster.idle <= 0:
                continue
            head = candidate.autocluster.head()
            if head is not None and (best_head is None or head < best_head):
                best, best_head = candidate, head
        job = self.index.pop(best.autocluster)
        if job is None:  # stale counts: try again with the autocluster now known empty
            return self.match_one(slot)
        return Picked(job, best.autocluster, shape.slot_ad)
