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


class EventLog:
    RECENT = 5000
    SUBSCRIBER_BACKLOG = 10000

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        rows = store.read("SELECT MAX(id) FROM events")
        self.next_id = (rows[0][0] or 0) + 1
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
            tx.batch.add_many(
                INSERT_EVENT,
                [
                    (
                        e.id,
                        e.time,
                        e.source,
                        e.cluster_id,
                        e.proc_id,
                        e.type,
                        orjson.dumps(e.details).decode(),
                    )
                    for e in tx.events
                ],
            )
        return tx

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
