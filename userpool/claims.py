"""Claims: a pilot's right to run one job, under a lease it renews by polling.

A claim id is a secret: every later request about the job (sandbox, output, report)
must present it, from the same pilot identity, so a pilot can only touch jobs matched
to it.  A lease that runs out puts the job back to Idle.  A claim that ends early
(hold, remove, vacate) is remembered for a while as *revoked*, so the pilot that
still runs it learns on its next poll to kill it.
"""

from __future__ import annotations

import base64
import heapq
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from updraft.core import classads
from updraft.core.errors import Conflict, Forbidden
from updraft.core.payloads import Command
from updraft.core.protocol import PilotCommand
from userpool.queue import Job

REVOKED_MEMORY_S = 3600.0


def slot_name_of(slot: Mapping[str, str]) -> str:
    """The slot's Name as claims record it ("unknown" when it is not a literal)."""
    text = slot.get("Name", '""')
    return str(classads.value_of_text(text)) if classads.is_literal(text) else "unknown"


@dataclass
class Claim:
    claim_id: str
    job: Job
    slot_name: str
    pilot: str  # the authenticated identity of the pilot
    lease_s: int
    lease_expires: float
    cpus: int
    memory_mb: int
    disk_kb: int
    submitter: str
    granted: float
    started: bool = False
    commands: list[Command] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, int]:
        return self.job.cluster.cluster_id, self.job.proc_id


class ClaimBook:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.active: dict[str, Claim] = {}
        self.by_job: dict[tuple[int, int], Claim] = {}
        self.by_pilot: dict[str, dict[str, Claim]] = {}  # pilot identity -> its claims by id
        self.revoked: dict[str, tuple[str, float]] = {}  # claim id -> (reason, forget at)
        self._leases: list[tuple[float, str]] = []
        self._next_forget = 0.0
        self._random = b""

    def new_id(self) -> str:
        """An unguessable claim id (144 random bits), drawn from a buffer to spare syscalls."""
        if len(self._random) < 18:
            self._random = secrets.token_bytes(18 * 256)
        chunk, self._random = self._random[:18], self._random[18:]
        return base64.urlsafe_b64encode(chunk).decode()

    def add(self, claim: Claim) -> None:
        self.active[claim.claim_id] = claim
        self.by_job[claim.key] = claim
        self.by_pilot.setdefault(claim.pilot, {})[claim.claim_id] = claim
        heapq.heappush(self._leases, (claim.lease_expires, claim.claim_id))

    def of_job(self, job: Job) -> Claim | None:
        return self.by_job.get((job.cluster.cluster_id, job.proc_id))

    def check(self, claim_id: str, pilot: str) -> Claim:
        """The live claim ``claim_id`` held by ``pilot``; refuses anything else by name."""
        claim = self.active.get(claim_id)
        if claim is None:
            if claim_id in self.revoked:
                raise Conflict(f"claim {claim_id[:8]}... was revoked: {self.revoked[claim_id][0]}")
            raise Conflict(f"claim {claim_id[:8]}... is not known to the pool (expired or never granted)")
        if claim.pilot != pilot:
            raise Forbidden(f"claim {claim_id[:8]}... belongs to another pilot")
        return claim

    def renew(self, claim_ids: Iterable[str], pilot: str) -> tuple[list[Claim], list[str]]:
        """Extend the leases the pilot listed; return (renewed, ids it must stop)."""
        now = self.clock()
        renewed: list[Claim] = []
        stop: list[str] = []
        for claim_id in claim_ids:
            claim = self.active.get(claim_id)
            if claim is None or claim.pilot != pilot:
                stop.append(claim_id)
                continue
            claim.lease_expires = now + claim.lease_s
            heapq.heappush(self._leases, (claim.lease_expires, claim_id))
            renewed.append(claim)
        if len(self._leases) > 4 * len(self.active) + 1024:
            self._leases = [(c.lease_expires, c.claim_id) for c in self.active.values()]
            heapq.heapify(self._leases)
        return renewed, stop

    def end(self, claim: Claim, reason: str = "", revoke: bool = False) -> None:
        """Forget a claim; with ``revoke`` the pilot is told to kill the job on its next poll."""
        self.active.pop(claim.claim_id, None)
        if self.by_job.get(claim.key) is claim:
            del self.by_job[claim.key]
        held = self.by_pilot.get(claim.pilot)
        if held is not None:
            held.pop(claim.claim_id, None)
            if not held:
                del self.by_pilot[claim.pilot]
        if revoke:
            self.revoked[claim.claim_id] = (reason, self.clock() + REVOKED_MEMORY_S)

    def command(
        self, claim: Claim, command: PilotCommand, reason: str = "", details: dict[str, str] | None = None
    ) -> None:
        claim.commands.append(Command(claim.claim_id, command.value, reason, details or {}))

    def take_commands(self, claim_ids: Iterable[str]) -> list[Command]:
        out: list[Command] = []
        for claim_id in claim_ids:
            claim = self.active.get(claim_id)
            if claim is not None and claim.commands:
                out.extend(claim.commands)
                claim.commands = []
            elif claim is None and claim_id in self.revoked:
                out.append(Command(claim_id, PilotCommand.KILL.value, self.revoked[claim_id][0]))
        return out

    def has_news(self, claim_ids: Iterable[str]) -> bool:
        for claim_id in claim_ids:
            claim = self.active.get(claim_id)
            if (claim is not None and claim.commands) or (claim is None and claim_id in self.revoked):
                return True
        return False

    def forgotten(self, pilot: str, slot_name: str, listed: set[str], granted_before: float) -> list[Claim]:
        """Claims of ``pilot``'s slot that it no longer lists although it has had time to learn
        of them: the answer that granted them was lost. Removed from the book."""
        out = [
            c
            for c in self.by_pilot.get(pilot, {}).values()
            if c.slot_name == slot_name and c.claim_id not in listed and c.granted < granted_before
        ]
        for claim in out:
            self.end(claim)
        return out

    def expired(self) -> list[Claim]:
        """Claims whose lease ran out (removed from the book); also forgets old revocations."""
        now = self.clock()
        out: list[Claim] = []
        while self._leases and self._leases[0][0] <= now:
            expires, claim_id = heapq.heappop(self._leases)
            claim = self.active.get(claim_id)
            if claim is not None and claim.lease_expires <= now and claim.lease_expires == expires:
                self.end(claim)
                out.append(claim)
        if self.revoked and now >= self._next_forget:
            self._next_forget = now + 60.0
            for claim_id, (_reason, forget) in list(self.revoked.items()):
                if forget <= now:
                    del self.revoked[claim_id]
        return out
