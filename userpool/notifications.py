"""The pool's outgoing notifications, as configured: job mail (``mail:``) and the webhook (``webhook:``).

Both follow the committed events with a cursor of their own in the pool's home
(``mail.cursor``, ``webhook.cursor``), start after the events already there the first time,
and run in threads of their own: see userpool/mail.py and userpool/webhook.py.
"""

from __future__ import annotations

import logging
from typing import Any

from userpool.config import PoolConfig
from userpool.events import EventLog
from userpool.mail import MailNotifier
from userpool.webhook import WebhookSender

log = logging.getLogger("updraft.pool")
BACKLOG = 100_000  # events replayed into the mail after a restart, at most


def _secret(config: PoolConfig, relative: str) -> str:
    if not relative:
        return ""
    path = config.home / relative
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise SystemExit(f"pool.yaml names {path}, which cannot be read: {exc.strerror}") from None


class Notifications:
    def __init__(self, config: PoolConfig, ads: Any, events: EventLog) -> None:
        self.events = events
        self.mail: MailNotifier | None = None
        self.webhook: WebhookSender | None = None
        mail = config.mail
        if mail.smtp_host:
            password = _secret(config, mail.password_file)
            self.mail = MailNotifier(
                config.home / "mail.cursor", mail, password, ads.notifying, ads.from_history
            )
            self.mail.begin_at(events.next_id - 1)
            events.listeners.append(self.mail.published)
        hook = config.webhook
        if hook.url:
            token = _secret(config, hook.token_file)
            self.webhook = WebhookSender(hook, token, config.home / "webhook.cursor", events.after)
            self.webhook.begin_at(events.next_id - 1)
            events.listeners.append(self.webhook.published)

    def start(self) -> None:
        if self.mail is not None:
            self.mail.start(self.events.after(self.mail.cursor.value, BACKLOG))
            log.info("job mail through %s:%d", self.mail.settings.smtp_host, self.mail.settings.smtp_port)
        if self.webhook is not None:
            self.webhook.start()
            log.info("every event is POSTed to %s", self.webhook.settings.url)

    def close(self) -> None:
        for channel in (self.mail, self.webhook):
            if channel is not None:
                channel.close()
