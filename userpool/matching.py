"""Matchmaking off the request thread: the negotiator's evaluations in a thread of their own.

The pool serves every request on one event loop.  Evaluating a new autocluster against a
slot shape is the expensive part of matchmaking (ClassAd evaluation, which holds the
interpreter lock for the whole of one evaluation); it runs here, in one worker thread with
its own queue, one shape's batch at a time, while the loop goes on answering pings,
queries and polls between two evaluations.  Picking a job from the evaluated heaps stays
on the loop: it is cheap and it changes the queue.

HTCondor keeps the negotiator in a process apart from the schedd for the same reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from userpool.negotiator import Negotiator

Result = TypeVar("Result")
#: passes over a shape before matching goes on with what is evaluated (submissions keep coming)
MAX_PASSES = 3


class MatchWorker:
    def __init__(self, negotiator: Negotiator) -> None:
        self.negotiator = negotiator
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="updraft-negotiator")
        self._later: set[Any] = set()

    async def run(self, work: Callable[..., Result], *args: Any) -> Result:
        """Any evaluation-heavy work (condor_q -better-analyze) in the matchmaking thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, work, *args)

    async def ready(self, slot: Mapping[str, str]) -> None:
        """Bring ``slot``'s shape up to date with every autocluster, evaluating in the thread."""
        negotiator = self.negotiator
        for _ in range(MAX_PASSES):
            shape = negotiator.shape(slot)
            if shape.inflight is not None:  # another poll of this shape is evaluating: share it
                await asyncio.shield(shape.inflight)
                continue
            todo = negotiator.pending(shape)
            if not todo:
                return
            done = asyncio.get_running_loop().create_future()
            shape.inflight = done
            try:
                ranks = await self.run(negotiator.evaluate, shape, todo)
                negotiator.integrate(shape, todo, ranks)
            finally:
                shape.inflight = None
                done.set_result(None)

    def evaluate_later(self, slot: Mapping[str, str], then: Callable[[], None]) -> None:
        """Evaluate ``slot``'s shape in the background, then call ``then`` (once per shape at a time)."""
        key = self.negotiator.shape_key(slot)
        if key in self._later:
            return
        self._later.add(key)

        async def work() -> None:
            try:
                await self.ready(slot)
            finally:
                self._later.discard(key)
            then()

        task = asyncio.ensure_future(work())
        task.add_done_callback(lambda done: done.cancelled() or done.exception())

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
