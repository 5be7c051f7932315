"""Pilots' long polls that found nothing yet, and who is woken when something happens.

A poll that finds no job and no command waits here until its timeout, a command for one of
its claims, or idle jobs its slot's shape can take.  Idle jobs wake no more waiting pilots
of a shape than there are jobs for it, so a new cluster does not stampede every pilot; a
shape whose new autoclusters are not evaluated yet is evaluated in the matchmaking thread
first, and looked at again after.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from userpool.matching import MatchWorker
from userpool.negotiator import Negotiator


@dataclass
class Waiter:
    """A pilot's poll that found nothing yet."""

    future: asyncio.Future[None]
    slot: dict[str, str]
    claims: frozenset[str]
    wants_jobs: bool


class WaitingPolls:
    def __init__(self, negotiator: Negotiator, matcher: MatchWorker) -> None:
        self.negotiator = negotiator
        self.matcher = matcher
        self._waiters: list[Waiter] = []
        self._by_claim: dict[str, Waiter] = {}
        self._dispatch_pending = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._waiters)

    async def wait(self, slot: dict[str, str], claims: list[str], wants_jobs: bool, timeout: float) -> None:
        """Until ``timeout`` (s), news for one of ``claims``, or (``wants_jobs``) work for ``slot``."""
        waiter = Waiter(asyncio.get_running_loop().create_future(), slot, frozenset(claims), wants_jobs)
        self._waiters.append(waiter)
        for claim_id in claims:
            self._by_claim[claim_id] = waiter
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout=timeout)
        except TimeoutError:
            pass
        finally:
            self._drop(waiter)

    def _drop(self, waiter: Waiter) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass
        for claim_id in waiter.claims:
            if self._by_claim.get(claim_id) is waiter:
                del self._by_claim[claim_id]

    def claim_news(self, claim_id: str) -> None:
        """A claim got a command or was revoked: its pilot's poll returns at once."""
        waiter = self._by_claim.get(claim_id)
        if waiter is not None and not waiter.future.done():
            waiter.future.set_result(None)

    def jobs_became_idle(self, count: int) -> None:
        """Jobs became idle: wake the pilots that can take them (once per loop turn)."""
        if not self._waiters or self._dispatch_pending:
            return
        self._dispatch_pending = True
        (self.loop or asyncio.get_event_loop()).call_soon(self._dispatch)

    def _dispatch(self) -> None:
        """Wake waiting pilots whose slot shape has idle work now, no more than there is work."""
        self._dispatch_pending = False
        negotiator = self.negotiator
        budget: dict[tuple[tuple[str, str | None], ...], int] = {}
        for waiter in list(self._waiters):
            if waiter.future.done() or not waiter.wants_jobs:
                continue
            key = negotiator.shape_key(waiter.slot)
            if key not in budget:
                matching, complete = negotiator.candidates(waiter.slot, evaluate=False)
                if not complete:  # new autoclusters: evaluate them in the matchmaking thread, then look again
                    self.matcher.evaluate_later(waiter.slot, self._look_again)
                budget[key] = sum(ac.idle for ac in matching)
            if budget[key] > 0:
                budget[key] -= 1
                waiter.future.set_result(None)

    def _look_again(self) -> None:
        self.jobs_became_idle(1)

    def release_all(self) -> None:
        """Answer every waiting poll now (empty): the server is stopping and waits for them."""
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_result(None)
