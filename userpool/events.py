"""Bookkeeping (the seeds' L&B): every state change of every job is an event, stored durably.

Events are written in the same transaction as the change they describe and are
published to stream subscribers only after that transaction commits, so a monitor
never shows a change the pool could still lose. An event's id is given when its
transaction is handed to the store's one writer (``EventLog.seal``), not when it is
recorded: ids then grow in commit order, and a reader that follows the log by id (the
webhook, ``?after=``) never passes an id whose event is still to come.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from updraft.core.payloads import Event
from userpool.store import Batch, Store

log = logging.getLogger("updraft.events")

INSERT_EVENT = (
    "INSERT INTO events (id, time, source, cluster_id, proc_id, type, details) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


@dataclass
class Tx:
    """One logical change: its SQL, its events, and what to do once it is durable."""

    batch: Batch = field(default_factory=Batch)
    events: list[Event] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    #: jobs whose row must be rewritten, by (cluster, proc); jobs that left the queue for history
    dirty: dict[tuple[int, int], Any] = field(default_factory=dict)
    retired: list[Any] = field(default_factory=list)


#: the pool-wide events: those of no job (a component's own, a token revoked)
COMPONENT_EVENTS = "cluster_id = 0 AND proc_id = -1"


@dataclass
class ComponentBudget:
    """How many pool-wide events are kept, and how large they may be in all.

    A job's events leave with the job's history; the events a pilot, a factory or a frontend
    records about itself belong to no job, so they are kept within this budget instead: past it,
    the oldest tenth goes in the transaction that adds the newest. Any holder of a pilot token
    may record them, and nobody's token may fill the pool's disk.
    """

    max_events: int = 1_000_000
    max_chars: int = 256 << 20
    events: int = 0
    chars: int = 0

    def over(self) -> bool:
        return (0 < self.max_events < self.events) or (0 < self.max_chars < self.chars)


class EventLog:
    RECENT = 5000
    SUBSCRIBER_BACKLOG = 10000

    def __init__(
        self, store: Store, clock: Callable[[], float] = time.time, budget: ComponentBudget | None = None
    ) -> None:
        self.store = store
        self.clock = clock
        rows = store.read("SELECT MAX(id) FROM events")
        self.next_id = (rows[0][0] or 0) + 1
        self.budget = budget or ComponentBudget()
        rows = store.read(
            f"SELECT COUNT(*), COALESCE(SUM(LENGTH(details)), 0) FROM events WHERE {COMPONENT_EVENTS}"
        )
        self.budget.events, self.budget.chars = rows[0]
        self.trimmed_through = 0
        #: the newest event published (ids grow in commit order)
        self.last_committed = self.next_id - 1
        self.recent: deque[Event] = deque(maxlen=self.RECENT)
        self.subscribers: set[asyncio.Queue[Event | None]] = set()
        #: called with every committed batch, on the event loop (the user logs); must not block
        self.listeners: list[Callable[[list[Event]], None]] = []

    def record(
        self,
        tx: Tx,
        source: str,
        cluster_id: int,
        proc_id: int,
        kind: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Add an event to ``tx``; ``seal`` numbers it (read it from ``tx.events`` after the commit)."""
        tx.events.append(Event(0, self.clock(), source, cluster_id, proc_id, kind, details or {}))

    def seal(self, tx: Tx) -> Tx:
        """Number ``tx``'s events and add their rows to its batch: the moment it goes to the writer."""
        if tx.events:
            first = self.next_id
            self.next_id += len(tx.events)
            tx.events[:] = [
                Event(number, e.time, e.source, e.cluster_id, e.proc_id, e.type, e.details)
                for number, e in enumerate(tx.events, start=first)
            ]
            rows = [
                (e.id, e.time, e.source, e.cluster_id, e.proc_id, e.type, orjson.dumps(e.details).decode())
                for e in tx.events
            ]
            tx.batch.add_many(INSERT_EVENT, rows)
            for row in rows:
                if row[3] == 0 and row[4] == -1:
                    self.budget.events += 1
                    self.budget.chars += len(row[6])
            if self.budget.over():
                self._trim(tx)
        return tx

    def _trim(self, tx: Tx) -> None:
        """Add to ``tx`` the removal of the oldest pool-wide events, down to 90% of the budget."""
        budget = self.budget
        excess_events = budget.events - int(budget.max_events * 0.9) if budget.max_events > 0 else 0
        excess_chars = budget.chars - int(budget.max_chars * 0.9) if budget.max_chars > 0 else 0
        last, events, chars = self.trimmed_through, 0, 0  # a removal on its way is not counted twice
        while events < excess_events or chars < excess_chars:
            rows = self.store.read(
                f"SELECT id, LENGTH(details) FROM events WHERE {COMPONENT_EVENTS} AND id > ? ORDER BY id LIMIT 1000",
                (last,),
            )
            if not rows:
                break  # the rest is still on its way to the disk
            for event_id, length in rows:
                last, events, chars = event_id, events + 1, chars + length
                if events >= excess_events and chars >= excess_chars:
                    break
        if events:
            tx.batch.add(f"DELETE FROM events WHERE {COMPONENT_EVENTS} AND id <= ?", (last,))
            budget.events -= events
            budget.chars -= chars
            self.trimmed_through = last
            log.info(
                "pool-wide events past their budget: the oldest %d (%d characters) removed", events, chars
            )

    def publish(self, events: list[Event]) -> None:
        """Called once the events are committed."""
        for event in events:
            self.recent.append(event)
            self.last_committed = max(self.last_committed, event.id)
        for listener in self.listeners:
            try:
                listener(events)
            except Exception:
                log.exception("event listener failed")
        if not self.subscribers:
            return
        for subscriber in list(self.subscribers):
            for event in events:
                try:
                    subscriber.put_nowait(event)
                except asyncio.QueueFull:  # a stalled reader: drop it, it can resume with ?after=
                    self.subscribers.discard(subscriber)
                    with contextlib.suppress(asyncio.QueueFull):
                        subscriber.put_nowait(None)
                    break

    def subscribe(self) -> asyncio.Queue[Event | None]:
        subscriber: asyncio.Queue[Event | None] = asyncio.Queue(self.SUBSCRIBER_BACKLOG)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: asyncio.Queue[Event | None]) -> None:
        self.subscribers.discard(subscriber)

    # -- queries (committed events only) ------------------------------------------------
    def for_job(self, cluster_id: int, proc_id: int | None) -> list[Event]:
        if proc_id is None:
            rows = self.store.read(
                "SELECT id, time, source, cluster_id, proc_id, type, details FROM events"
                " WHERE cluster_id = ? ORDER BY id",
                (cluster_id,),
            )
        else:
            rows = self.store.read(
                "SELECT id, time, source, cluster_id, proc_id, type, details FROM events"
                " WHERE cluster_id = ? AND (proc_id = ? OR proc_id = -1) ORDER BY id",
                (cluster_id, proc_id),
            )
        return [_event(row) for row in rows]

    def after(self, after_id: int, limit: int = 1000) -> list[Event]:
        rows = self.store.read(
            "SELECT id, time, source, cluster_id, proc_id, type, details FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [_event(row) for row in rows]


def _event(row: tuple[Any, ...]) -> Event:
    return Event(row[0], row[1], row[2], row[3], row[4], row[5], orjson.loads(row[6]))
