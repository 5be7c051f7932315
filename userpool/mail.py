"""Job notifications by mail: HTCondor's ``notification`` and ``notify_user``, sent through a relay.

When a job that asked for it ends, is held, released or removed, its owner (``notify_user``,
or the owner at ``email_domain``: HTCondor's EMAIL_DOMAIN) gets HTCondor's message: subject
``[HTCondor] Condor Job 12.0`` (``... put on hold``, ``... removed``, ``... released from
hold``), the job's id and command, how it exited (status or signal), when it was submitted and
completed, the run times.  Which events mail is HTCondor's ``Email::shouldSend``:

- Never (0): none;  Always (1): every one of them;
- Complete (2): the job's end, however it exited;
- Error (3): an end by a signal or with an exit code other than JobSuccessExitCode (0), and a
  hold that is not the user's, the policy's or the submission's own.

The messages go through the SMTP relay of the ``mail:`` section of pool.yaml (host, port,
STARTTLS, from, an optional login) from a thread of their own: a relay that is down delays no
job and loses no message (each is tried again, with back-off, until the relay takes it; the
cursor in the pool's home moves only then, so a restart sends what was not sent).
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from updraft.core import classads
from updraft.core.payloads import Event
from updraft.core.protocol import HoldCode
from userpool.config import MailConfig
from userpool.outbound import EventWorker
from userpool.sandbox import string_attr

log = logging.getLogger("updraft.pool.mail")

NEVER, ALWAYS, COMPLETE, ERROR = 0, 1, 2, 3
#: holds a user, a policy or the submission asked for: Error notification does not mail them
EXPECTED_HOLDS = frozenset(
    {int(HoldCode.UserRequest), int(HoldCode.JobPolicy), int(HoldCode.SubmittedOnHold)}
)
ACTIONS = {"hold": "put on hold", "remove": "removed", "release": "released from hold"}
RULE = "-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-=-="
MAX_BACKOFF_S = 300.0


def _number(ad: Mapping[str, str], name: str, default: float = 0.0) -> float:
    text = ad.get(name)
    if text is None or not classads.is_literal(text):
        return default
    value = classads.value_of_text(text)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _flag(ad: Mapping[str, str], name: str) -> bool:
    return (ad.get(name) or "").strip().lower() == "true"


def should_send(ad: Mapping[str, str], kind: str) -> bool:
    """HTCondor's Email::shouldSend for one event of a job (``kind``: complete, hold, remove, release)."""
    notification = int(_number(ad, "JobNotification", NEVER))
    if notification == NEVER:
        return False
    if notification == ALWAYS:
        return True
    if kind == "complete":
        if notification == COMPLETE:
            return True
        if notification == ERROR:
            success = int(_number(ad, "JobSuccessExitCode", 0))
            return _flag(ad, "ExitBySignal") or int(_number(ad, "ExitCode", 0)) != success
        return False
    if kind == "hold" and notification == ERROR:
        return int(_number(ad, "HoldReasonCode", 0)) not in EXPECTED_HOLDS
    return False


def recipient(ad: Mapping[str, str], email_domain: str) -> str:
    """notify_user, else the owner; without a domain, EMAIL_DOMAIN's (as HTCondor adds it)."""
    address = string_attr(dict(ad), "NotifyUser") or string_attr(dict(ad), "Owner") or ""
    if address and "@" not in address and email_domain:
        address = f"{address}@{email_domain}"
    return address


def _duration(seconds: float) -> str:
    """HTCondor's d_format_time: days hours:minutes:seconds."""
    whole = max(0, int(seconds))
    return f"{whole // 86400} {whole % 86400 // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _job_id_lines(ad: Mapping[str, str], job_id: str) -> str:
    command = string_attr(dict(ad), "Cmd") or ""
    arguments = string_attr(dict(ad), "Arguments") or string_attr(dict(ad), "Args") or ""
    line = f"Condor job {job_id}\n"
    if command:
        line += f"\t{command}" + (f" {arguments}\n" if arguments else "\n")
    return line


def exit_text(ad: Mapping[str, str]) -> str:
    """HTCondor's printExitString for a job that exited."""
    if _flag(ad, "ExitBySignal"):
        return f"died on signal {int(_number(ad, 'ExitSignal'))}"
    return f"exited normally with status {int(_number(ad, 'ExitCode'))}"


def body_of(event: Event, ad: Mapping[str, str], job_id: str, host: str, admin: str) -> str:
    """The message: HTCondor's header, the job, how it ended or what happened to it, the footer."""
    lines = [f'This is an automated email from the HTCondor system\non machine "{host}".  Do not reply.\n\n']
    lines.append(_job_id_lines(ad, job_id))
    if event.type == "complete":
        completed = event.time
        submitted = _number(ad, "QDate", completed)
        started = _number(ad, "JobCurrentStartDate", completed)
        wall = _number(ad, "RemoteWallClockTime")
        user, system = _number(ad, "RemoteUserCpu"), _number(ad, "RemoteSysCpu")
        lines.append(f"{exit_text(ad)}\n")
        lines.append(f"\n\nSubmitted at:        {time.ctime(submitted)}\n")
        lines.append(f"Completed at:        {time.ctime(completed)}\n")
        lines.append(f"Real Time:           {_duration(completed - submitted)}\n\n")
        lines.append(f"Virtual Image Size:  {int(_number(ad, 'ImageSize'))} Kilobytes\n\n")
        lines.append("Statistics from last run:\n")
        lines.append(f"Allocation/Run time:     {_duration(completed - started)}\n")
        lines.append(f"Remote User CPU Time:    {_duration(user)}\n")
        lines.append(f"Remote System CPU Time:  {_duration(system)}\n")
        lines.append(f"Total Remote CPU Time:   {_duration(user + system)}\n\n")
        lines.append("Statistics totaled from all runs:\n")
        lines.append(f"Allocation/Run time:     {_duration(max(wall, completed - started))}\n")
    else:
        reason = str(event.details.get("reason") or "")
        lines.append(f"\nis being {ACTIONS[event.type]}.\n\n{reason}\n")
    lines.append(f"\n\n{RULE}\nQuestions about this message or HTCondor in general?\n")
    lines.append(f"Email address of the local HTCondor administrator: {admin}\n" if admin else "")
    lines.append("The Official HTCondor Homepage is https://htcondor.org\n")
    return "".join(lines)


def message_for(
    event: Event, ad: Mapping[str, str], proc: int, settings: MailConfig, host: str
) -> EmailMessage:
    job_id = f"{event.cluster_id}.{proc}"
    subject = f"Condor Job {job_id}" + (f" {ACTIONS[event.type]}" if event.type in ACTIONS else "")
    message = EmailMessage()
    message["From"] = settings.from_address or f"condor@{host}"
    message["To"] = recipient(ad, settings.email_domain)
    message["Subject"] = f"{settings.subject_prefix} {subject}".strip()
    message["Date"] = formatdate(event.time, localtime=True)
    message["Message-ID"] = make_msgid(f"job{event.cluster_id}.{proc}.event{event.id}")
    message.set_content(body_of(event, ad, job_id, host, settings.admin))
    return message


Resolved = list[tuple[Event, int, dict[str, str]]]


class MailNotifier(EventWorker):
    """Sends the messages jobs asked for, in order, from its own thread, until the relay takes each."""

    name = "mail"

    def __init__(
        self, cursor_path: Path, settings: MailConfig, password: str,
        job_ads: Callable[[int, int], list[tuple[int, Mapping[str, str] | None]]],
        history_ad: Callable[[int, int], Mapping[str, str] | None],
    ) -> None:  # fmt: skip
        super().__init__(cursor_path)
        self.settings, self.password = settings, password
        self.job_ads, self.history_ad = job_ads, history_ad
        self.host = socket.getfqdn()
        self.sent = 0
        self.send: Callable[[EmailMessage], None] = self._smtp  # tests may look at what is sent

    def resolve(self, events: Iterable[Event]) -> list[Any]:
        out: Resolved = []
        for event in events:
            if event.type not in ("complete", "hold", "remove", "release"):
                continue
            for proc, known in self.job_ads(event.cluster_id, event.proc_id):
                ad = known if known is not None else self.history_ad(event.cluster_id, proc)
                if ad and should_send(ad, event.type) and recipient(ad, self.settings.email_domain):
                    out.append((event, proc, dict(ad)))
        return out

    def deliver(self, batch: list[Any]) -> None:
        for event, proc, ad in batch:
            message = message_for(event, ad, proc, self.settings, self.host)
            pause = 1.0
            while True:
                try:
                    self.send(message)
                    self.sent += 1
                    break
                except smtplib.SMTPRecipientsRefused as exc:  # the relay will never take it: said, and passed
                    log.warning("mail for job %s.%d to %s refused by the relay: %s", event.cluster_id, proc,
                                message["To"], exc.recipients)  # fmt: skip
                    break
                except (OSError, smtplib.SMTPException) as exc:
                    log.warning("mail relay %s:%d: %s; trying again in %.0f s", self.settings.smtp_host,
                                self.settings.smtp_port, exc, pause)  # fmt: skip
                    time.sleep(pause)
                    pause = min(pause * 2, MAX_BACKOFF_S)

    def _smtp(self, message: EmailMessage) -> None:
        settings = self.settings
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.timeout_s) as relay:
            if settings.starttls:
                context = ssl.create_default_context(cafile=settings.ca_file or None)
                relay.starttls(context=context)
            if settings.username:
                relay.login(settings.username, self.password)
            relay.send_message(message)
