"""The pool's webhook: every committed event POSTed as JSON to one URL, as L&B notified the RTM.

Tools subscribe to the pool this way (or with ``updraft events --follow``).  A thread reads
the events from the pool's own store after its cursor and POSTs each, in order, as the
``Event`` payload (``id``, ``time``, ``source``, ``cluster_id``, ``proc_id``, ``type``,
``details``), with ``Authorization: Bearer`` when a token file is configured.  An endpoint
that is down or answers an error gets the same event again, with back-off (1 s doubling to
``max_backoff_s``); the pool never waits for it, and since the thread reads the durable
event log rather than a queue in memory, a long outage costs no memory and loses nothing:
the cursor in the pool's home moves only past events the endpoint took.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from updraft.core.payloads import Event
from userpool.config import WebhookConfig
from userpool.outbound import Cursor

log = logging.getLogger("updraft.pool.webhook")


class WebhookSender:
    def __init__(
        self,
        settings: WebhookConfig,
        token: str,
        cursor_path: Path,
        read_after: Callable[[int, int], list[Event]],
    ) -> None:
        self.settings, self.token = settings, token
        self.cursor = Cursor(cursor_path)
        self.read_after = read_after  # the event log's store, read from this thread
        self.news = threading.Event()
        self.stopping = threading.Event()
        self.delivered = 0
        self.failures = 0
        self.thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self.context = (
            ssl.create_default_context(cafile=settings.ca_file or None)
            if settings.url.startswith("https")
            else None
        )

    def begin_at(self, last_event_id: int) -> None:
        self.cursor.begin_at(last_event_id)

    def start(self) -> None:
        self.thread.start()

    def published(self, events: list[Event]) -> None:
        """EventLog listener: only a nudge; the thread reads the events from the store."""
        self.news.set()

    def close(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.news.set()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def _run(self) -> None:
        moved_at = time.monotonic()
        while not self.stopping.is_set():
            try:
                events = self.read_after(self.cursor.value, 500)
            except Exception:
                log.exception("webhook: reading the event log failed")
                events = []
            if not events:
                self.news.wait(1.0)
                self.news.clear()
                continue
            for event in events:
                if not self._post(event):
                    return  # stopping
                self.cursor.value = event.id
                if time.monotonic() - moved_at > 1.0:
                    self.cursor.advance(event.id)
                    moved_at = time.monotonic()
            self.cursor.advance(self.cursor.value)

    def _post(self, event: Event) -> bool:
        """Deliver one event, trying again (with back-off) until the endpoint takes it; False: stopping."""
        body = json.dumps(event.to_dict()).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "updraft-pool"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        pause = 1.0
        while not self.stopping.is_set():
            request = urllib.request.Request(self.settings.url, body, headers, method="POST")
            try:
                with urllib.request.urlopen(
                    request, timeout=self.settings.timeout_s, context=self.context
                ) as answer:
                    answer.read()
                self.delivered += 1
                return True
            except urllib.error.HTTPError as exc:
                if 400 <= exc.code < 500 and exc.code not in (408, 429):  # it will never take this one
                    log.warning("webhook %s refused event %d for good (%d %s): passed over",
                                self.settings.url, event.id, exc.code, exc.reason)  # fmt: skip
                    return True
                problem: Exception = exc
            except (urllib.error.URLError, OSError, ValueError) as exc:
                problem = exc
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                log.warning("webhook %s: event %d not taken (%s); trying again in %.0f s",
                            self.settings.url, event.id, problem, pause)  # fmt: skip
            self.stopping.wait(pause)
            pause = min(pause * 2, self.settings.max_backoff_s)
        return False
