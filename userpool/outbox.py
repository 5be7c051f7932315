"""A completed job's output on its way to the submit directory, through a crash if need be.

The completion writes the job into the ``deliveries`` table in the same transaction (the
outbox); the copy, by ``Delivery`` as the job's owner, runs in a worker thread after that
transaction is durable; its ``output_delivered`` event and the removal from the outbox are
one more transaction.  A pool killed in between finds the job in the outbox at its next
start and delivers it then (failpoint ``pool.before_delivery``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from updraft.core.failpoints import failpoint
from userpool.delivery import Delivery
from userpool.events import EventLog, Tx
from userpool.history import History
from userpool.queue import Job
from userpool.sandbox import Spool
from userpool.store import DELETE_DELIVERY, PENDING_DELIVERIES, Store

log = logging.getLogger("updraft.pool")


class OutputOutbox:
    def __init__(
        self,
        store: Store,
        events: EventLog,
        history: History,
        spool: Spool,
        delivery: Delivery,
        commit: Callable[[Tx], Awaitable[None]],
    ) -> None:
        self.store, self.events, self.history = store, events, history
        self.spool, self.delivery, self.commit = spool, delivery, commit
        self.loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[asyncio.Future[None]] = set()
        #: completions whose copy has not finished yet: the user log's 005 waits for it, as
        #: HTCondor's shadow writes the terminate event after the output is back
        self._copying: dict[tuple[int, int], threading.Event] = {}

    def expect(self, job: Job) -> None:
        """The job completes in a transaction about to commit (Schedd.on_completing)."""
        self._copying.setdefault((job.cluster.cluster_id, job.proc_id), threading.Event())

    def copied(self, cluster_id: int, proc_id: int, timeout: float) -> None:
        """Any thread: return once the job's output is in its submit directory (or ``timeout``)."""
        copying = self._copying.get((cluster_id, proc_id))
        if copying is not None:
            copying.wait(timeout)

    def _finished(self, cluster_id: int, proc_id: int) -> None:
        copying = self._copying.pop((cluster_id, proc_id), None)
        if copying is not None:
            copying.set()

    def completed(self, job: Job) -> None:
        """The job's completion is durable: deliver its output (Schedd.on_completed)."""
        self._start(job.ad(), job.cluster.cluster_id, job.proc_id)

    def resume(self) -> None:
        """Deliver what a crash kept from its submit directory."""
        pending = self.store.read(PENDING_DELIVERIES)
        if pending:
            log.info("resuming the delivery of %d job(s)' output", len(pending))
        for cluster_id, proc_id in pending:
            found = self.history.query([f"{cluster_id}.{proc_id}"], [], "", [], 1)
            if found:
                self._start(found[0], cluster_id, proc_id)
            else:  # pruned from history meanwhile: the spool is all there is
                self._record(cluster_id, proc_id, None)

    def _start(self, texts: dict[str, str], cluster_id: int, proc_id: int) -> None:
        files = self.spool.files(cluster_id, proc_id)
        if not files:
            self._finished(cluster_id, proc_id)
            self._record(cluster_id, proc_id, None)
            return
        asyncio.get_running_loop().run_in_executor(None, self._copy, texts, cluster_id, proc_id, files)

    def _copy(self, texts: dict[str, str], cluster_id: int, proc_id: int, files: list[str]) -> None:
        failpoint("pool.before_delivery")
        try:
            details = self.delivery.deliver(texts, cluster_id, proc_id, files)
        finally:
            self._finished(cluster_id, proc_id)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._record, cluster_id, proc_id, details)

    def _record(self, cluster_id: int, proc_id: int, details: dict[str, Any] | None) -> None:
        """Cross the job off the outbox; ``details`` None: there was nothing to copy (no event)."""
        tx = Tx()
        tx.batch.add(DELETE_DELIVERY, (cluster_id, proc_id))
        if details is not None:
            self.events.record(tx, "schedd", cluster_id, proc_id, "output_delivered", details)
        task = asyncio.ensure_future(self.commit(tx))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
