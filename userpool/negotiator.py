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

import heapq
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from updraft.core import classads
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


#: a heap entry: (-JobPrio, -Rank, QDate, ClusterId, ProcId of the autocluster's next job, id, autocluster)
_Entry = tuple[float, float, int, int, int, int, Autocluster]


@dataclass
class _Shape:
    """One slot shape's view of the autoclusters, extended as new ones appear.

    Per submitter, a heap of the matching autoclusters ordered by JobPrio, the job's Rank
    of this shape, then the QDate of each autocluster's next job; entries go stale as jobs
    leave and are corrected when they reach the top.  ``matching`` keeps every match, so
    an autocluster that ran dry and gets jobs again can be put back.
    """

    slot_ad: classads.ClassAd
    created: float
    evaluated: int = 0  # autoclusters in index.ordered already evaluated
    heaps: dict[str, list[_Entry]] = field(default_factory=dict)
    matching: dict[str, list[tuple[float, float, Autocluster]]] = field(default_factory=dict)
    revivals: int = 0
    #: the evaluation of this shape's new autoclusters under way in the matchmaking thread
    inflight: Any = None


@dataclass(frozen=True)
class Penalty:
    """An autocluster whose evaluation against one slot took longer than the budget."""

    autocluster: Autocluster
    took_s: float
    until: float


class Negotiator:
    def __init__(
        self,
        index: AutoclusterIndex,
        accountant: Accountant,
        shape_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        eval_budget_s: float = 0.05,
        penalty_s: float = 600.0,
    ) -> None:
        self.index = index
        self.accountant = accountant
        self.shape_ttl_s = shape_ttl_s
        self.clock = clock
        #: one autocluster's evaluation against one slot may take this long; beyond it, the
        #: autocluster is left out of matchmaking for ``penalty_s`` (HTCondor keeps a slow
        #: negotiator apart from the schedd; here a slow job cannot hold up the matching of others)
        self.eval_budget_s = eval_budget_s
        self.penalty_s = penalty_s
        #: autocluster key -> until when (time.time()) it is left out
        self.penalized: dict[tuple[tuple[str, str | None], ...], float] = {}
        #: penalties not yet reported (the pool turns them into events); appended by the thread
        self.new_penalties: deque[Penalty] = deque()
        self._shapes: dict[tuple[tuple[str, str | None], ...], _Shape] = {}
        self._shapes_key = (-1, -1)
        self._base_names: list[str] = []
        self._base_generation = -1
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
        if self._base_generation != self.index.slot_refs_generation:
            self._base_names = [*sorted(self.index.slot_refs), *SLOT_POLICY_ATTRS]
            self._base_generation = self.index.slot_refs_generation
        items = []
        for name in self._base_names:
            text = slot.get(name)
            if text is not None and not classads.plainly_literal(text) and not classads.is_literal(text):
                names = classads.closure(self._base_names, slot)  # texts that read other slot attributes
                return tuple((n, slot.get(n)) for n in names)
            items.append((name, text))
        return tuple(items)

    def _shape(self, slot: Mapping[str, str], evaluate: bool = True) -> _Shape:
        """The shape of ``slot``; with ``evaluate`` its new autoclusters are evaluated here and now
        (the pool evaluates them in its matchmaking thread first and passes False)."""
        generation = (self.index.generation, self.index.slot_refs_generation)
        if generation != self._shapes_key:
            self._shapes.clear()
            self._shapes_key = generation
        key = self.shape_key(slot)
        now = self.clock()
        shape = self._shapes.get(key)
        if shape is None or now - shape.created > self.shape_ttl_s:
            shape = _Shape(
                classads.build([(n, t) for n, t in key if t is not None]), now, revivals=self.index.revivals
            )
            if len(self._shapes) > 20000:
                self._shapes.clear()
            self._shapes[key] = shape
        if evaluate:
            todo = self.pending(shape)
            if todo:
                self.integrate(shape, todo, self.evaluate(shape, todo))
        if shape.revivals != self.index.revivals:  # some autocluster got jobs again: rebuild the heaps
            shape.heaps = {}
            for submitter, matches in shape.matching.items():
                for neg_prio, neg_rank, autocluster in matches:
                    self._push(shape, submitter, (neg_prio, neg_rank), autocluster)
            shape.revivals = self.index.revivals
        return shape

    def shape(self, slot: Mapping[str, str]) -> _Shape:
        """The shape of ``slot`` as it is, nothing evaluated (see pending / evaluate / integrate)."""
        return self._shape(slot, evaluate=False)

    def pending(self, shape: _Shape) -> list[Autocluster]:
        """The autoclusters created since ``shape`` was last brought up to date."""
        ordered = self.index.ordered
        return ordered[shape.evaluated :] if shape.evaluated < len(ordered) else []

    def evaluate(self, shape: _Shape, autoclusters: Sequence[Autocluster]) -> list[float | None]:
        """Each autocluster's Rank of the shape's slot when they match, else None.

        Safe in another thread: it reads the autoclusters' texts and the shape's slot ad, which
        never change, and writes only the penalty book (a dict and a deque, atomic operations).
        """
        out: list[float | None] = []
        wall = time.time()
        for autocluster in autoclusters:
            until = self.penalized.get(autocluster.key)
            if until is not None and until > wall:
                out.append(None)
                continue
            started = time.perf_counter()
            rank = self._evaluate(autocluster, shape.slot_ad)
            took = time.perf_counter() - started
            if took > self.eval_budget_s:
                until = time.time() + self.penalty_s
                self.penalized[autocluster.key] = until
                self.new_penalties.append(Penalty(autocluster, took, until))
                rank = None
            out.append(rank)
        return out

    def integrate(
        self, shape: _Shape, autoclusters: Sequence[Autocluster], ranks: Sequence[float | None]
    ) -> None:
        """Put evaluated autoclusters into the shape's heaps (on the pool's thread)."""
        ordered = self.index.ordered
        start = shape.evaluated
        if start + len(autoclusters) > len(ordered) or (
            autoclusters and ordered[start] is not autoclusters[0]
        ):
            return  # the index was rebuilt meanwhile: these belong to an older generation
        for autocluster, rank in zip(autoclusters, ranks, strict=True):
            if rank is not None:
                order = (-float(autocluster.prio), -rank)
                shape.matching.setdefault(autocluster.submitter, []).append((*order, autocluster))
                self._push(shape, autocluster.submitter, order, autocluster)
        shape.evaluated = start + len(autoclusters)

    def penalty_of(self, key: tuple[tuple[str, str | None], ...]) -> float | None:
        """Until when an autocluster with this key is left out of matchmaking (None: it is not)."""
        until = self.penalized.get(key)
        return until if until is not None and until > time.time() else None

    @staticmethod
    def _push(shape: _Shape, submitter: str, order: tuple[float, float], autocluster: Autocluster) -> None:
        head = autocluster.head()
        if head is not None:
            heapq.heappush(
                shape.heaps.setdefault(submitter, []), (*order, *head, autocluster.id, autocluster)
            )

    @staticmethod
    def _top(heap: list[_Entry]) -> _Entry | None:
        """The best entry whose position is current (stale ones are fixed or dropped)."""
        while heap:
            entry = heap[0]
            autocluster = entry[6]
            head = autocluster.head()
            if head is None:
                heapq.heappop(heap)  # ran dry; revival puts it back
            elif head != entry[2:5]:
                heapq.heapreplace(heap, (entry[0], entry[1], *head, entry[5], autocluster))
            else:
                return entry
        return None

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
        rank = classads.number(rank)
        return float(rank) if rank is not None else 0.0

    # -- matching ----------------------------------------------------------------------------
    def prepare(self, slot: Mapping[str, str]) -> None:
        """Make the job attributes this slot's policy reads significant (may regroup jobs)."""
        refs = self._slot_policy_refs(slot)
        if refs:
            self.index.require(refs)

    def candidates(self, slot: Mapping[str, str], evaluate: bool = True) -> tuple[list[Autocluster], bool]:
        """Every autocluster with idle jobs known to match ``slot``, and whether that is all of them
        (False: some are not evaluated yet and ``evaluate`` was off)."""
        self.prepare(slot)
        shape = self._shape(slot, evaluate)
        matching = [ac for matches in shape.matching.values() for _p, _r, ac in matches if ac.idle > 0]
        return matching, not self.pending(shape)

    def match_one(self, slot: Mapping[str, str], evaluate: bool = True) -> Picked | None:
        """Take the best idle job for ``slot`` out of its autocluster; the caller starts it."""
        shape = self._shape(slot, evaluate)
        chosen: _Entry | None = None
        best_score = None
        for submitter, heap in shape.heaps.items():
            entry = self._top(heap)
            if entry is None:
                continue
            score = self.accountant.share_score(submitter)
            if best_score is None or score < best_score:
                best_score, chosen = score, entry
        if chosen is None:
            return None
        autocluster = chosen[6]
        job = self.index.pop(autocluster)
        if job is None:  # cannot happen after _top, but never hand out nothing silently
            return self.match_one(slot, evaluate)
        return Picked(job, autocluster, shape.slot_ad)
