"""Carrying committed events out of the pool: users' logs, mail, webhooks, in order, from a thread.

Each outbound channel follows the event log with a cursor in the pool's home (the last event
it carried out), so a restart resumes where it stopped and an event is never dropped, and it
does its slow work (a user's file system, a mail relay, an HTTP endpoint) in a thread of its
own, so the event loop never waits for it and no job is ever delayed by it.

``EventWorker`` is the shape the users' logs and the mail notifier share: the loop resolves
what an event means when it is published (the job's ad is the loop's to read), the thread
carries it out, then the cursor moves.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from updraft.core.payloads import Event

log = logging.getLogger("updraft.pool.outbound")


class Cursor:
    """The id of the last event a channel carried out, kept in a file (written whole)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.value = self._read()

    def _read(self) -> int:
        try:
            return int(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def begin_at(self, last_event_id: int) -> None:
        """A channel that never ran starts after the events already there, not from the first."""
        if not self.path.exists():
            self.advance(last_event_id)

    def advance(self, event_id: int) -> None:
        self.value = max(self.value, event_id)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(f"{self.value}\n")
        temporary.replace(self.path)


class EventWorker:
    """Resolve on the loop, carry out in a thread, then move the cursor; subclasses say how."""

    name = "outbound"

    def __init__(self, cursor_path: Path) -> None:
        self.cursor = Cursor(cursor_path)
        self.queue: queue.Queue[list[Any] | None] = queue.Queue()
        self.replaying = False  # after a restart: what the previous run may have done half is checked
        self.last_queued = 0  # the newest event id handed to the thread
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    # -- what subclasses say ----------------------------------------------------------------------
    def resolve(self, events: Iterable[Event]) -> list[Any]:
        """On the event loop: what each event means for this channel (never blocks); [] for nothing."""
        raise NotImplementedError

    def deliver(self, batch: list[Any]) -> None:
        """In the thread: carry the batch out (retrying as the channel needs); the cursor moves after."""
        raise NotImplementedError

    @staticmethod
    def event_of(item: Any) -> Event:
        return item[0] if isinstance(item, tuple) else item

    # -- the machinery ----------------------------------------------------------------------------
    def begin_at(self, last_event_id: int) -> None:
        self.cursor.begin_at(last_event_id)

    def start(self, backlog: Iterable[Event]) -> None:
        """Carry out what a previous run committed and did not (the events after the cursor)."""
        pending = self.resolve([e for e in backlog if e.id > self.cursor.value])
        if pending:
            self.replaying = True
            self.queue.put(pending)
        self.thread.start()

    def published(self, events: list[Event]) -> None:
        """EventLog listener, on the loop once ``events`` are durable."""
        resolved = self.resolve(events)
        if resolved:
            self.last_queued = max(self.last_queued, *(self.event_of(item).id for item in resolved))
            self.queue.put(resolved)

    async def carried_out(self, event_id: int, timeout: float) -> bool:
        """On the loop: wait (at most ``timeout``) until the thread has carried out ``event_id``
        if this channel took it. condor_submit returns once the submit event is in the user log,
        as HTCondor's does, so ``condor_submit job.sub && condor_wait job.log`` works."""
        deadline = time.monotonic() + timeout
        while self.last_queued >= event_id > self.cursor.value:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def close(self, timeout: float = 5.0) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join(timeout)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests: True once everything queued so far is carried out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return False

    def _run(self) -> None:
        while True:
            batch = self.queue.get()
            try:
                if batch is None:
                    return
                self.deliver(batch)
                self.replaying = False
                self.cursor.advance(max(self.event_of(item).id for item in batch))
            except Exception:  # one channel's trouble never stops the others, nor the pool
                log.exception("%s: carrying events out failed", self.name)
            finally:
                self.queue.task_done()
