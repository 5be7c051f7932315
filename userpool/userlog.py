"""The job's user log (``log = x.log``), in HTCondor's job event log format, as the job's owner.

Every tool that follows a job reads this file: ``condor_wait``, DAGMan, Pegasus,
``htcondor2.JobEventLog``.  The pool already keeps every job event durably (events.py); this
module turns the events of jobs that name a log into HTCondor's user-log events and appends
them where the submit file said, with the rights of the job's owner (asowner, the same rules
as output delivery: never under the pool's home, never through a link).

- Classic text (``000 (001.000.000) 2026-12-01 10:00:00 Job submitted from host: ...``, each
  event ending in ``...``) or, with ``log_xml = true``, one XML ClassAd per event.
- 000 submit, 001 execute, 004 evicted, 005 terminated (return value or signal, usage, the
  resources table), 006 image size, 009 aborted, 010/011 suspended/unsuspended, 012 held
  (reason, code, subcode), 013 released, 022 disconnected and 024 reconnect failed (a pilot
  that stopped renewing its lease), 028 job ad information when the job asks for it.
- Written after the events are committed, in event order, by one thread.  A cursor file in the
  pool's home says which event was written last; after a restart the events after it are
  written, and an event whose header is already at the end of its file is not written twice.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from updraft.core import classads
from updraft.core.failpoints import failpoint
from updraft.core.payloads import Event
from updraft.core.protocol import ATTR_DAG_NODES_LOG, ATTR_SUBMIT_EVENT_NOTES
from userpool.asowner import OwnerWriter, Place, forbidden_directories
from userpool.identities import Account, IdentityMap, Unmapped
from userpool.outbound import EventWorker
from userpool.sandbox import string_attr

log = logging.getLogger("updraft.pool.userlog")

SUBMIT, EXECUTE, EVICTED, TERMINATED, IMAGE_SIZE, ABORTED = 0, 1, 4, 5, 6, 9
SUSPENDED, UNSUSPENDED, HELD, RELEASED = 10, 11, 12, 13
DISCONNECTED, RECONNECT_FAILED, AD_INFORMATION = 22, 24, 28
NAMES = {
    SUBMIT: "ULOG_SUBMIT", EXECUTE: "ULOG_EXECUTE", EVICTED: "ULOG_JOB_EVICTED", TERMINATED: "ULOG_JOB_TERMINATED",
    IMAGE_SIZE: "ULOG_IMAGE_SIZE", ABORTED: "ULOG_JOB_ABORTED", SUSPENDED: "ULOG_JOB_SUSPENDED",
    UNSUSPENDED: "ULOG_JOB_UNSUSPENDED", HELD: "ULOG_JOB_HELD", RELEASED: "ULOG_JOB_RELEASED",
    DISCONNECTED: "ULOG_JOB_DISCONNECTED", RECONNECT_FAILED: "ULOG_JOB_RECONNECT_FAILED",
}  # fmt: skip
MY_TYPES = {
    SUBMIT: "SubmitEvent", EXECUTE: "ExecuteEvent", EVICTED: "JobEvictedEvent", TERMINATED: "JobTerminatedEvent",
    IMAGE_SIZE: "JobImageSizeEvent", ABORTED: "JobAbortedEvent", SUSPENDED: "JobSuspendedEvent",
    UNSUSPENDED: "JobUnsuspendedEvent", HELD: "JobHeldEvent", RELEASED: "JobReleaseEvent",
    DISCONNECTED: "JobDisconnectedEvent", RECONNECT_FAILED: "JobReconnectFailedEvent",
    AD_INFORMATION: "JobAdInformationEvent",
}  # fmt: skip
#: pool event kinds that are job events in the user log
KINDS = {
    "submit", "execute", "evict", "requeue", "complete", "remove", "hold", "release", "suspend", "continue",
    "lease_expired", "claim_forgotten",
}  # fmt: skip
ZERO_USAGE = "Usr 0 00:00:00, Sys 0 00:00:00"
#: how long a job's terminate event waits for its output to reach the submit directory, at most
#: (the one thread writes every user's log: a huge output delays the others' events this long)
OUTPUT_BEFORE_TERMINATED_S = 60.0
SUBMITTED_ON_HOLD = 15  # HTCondor's HoldReasonCode SubmittedOnHold


@dataclass(frozen=True)
class Record:
    """One user-log event: its number, job, time and the lines of its body (and for XML, its attributes)."""

    number: int
    cluster: int
    proc: int
    when: float
    body: str
    attributes: tuple[tuple[str, object], ...] = ()

    def header(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.when))
        return f"{self.number:03d} ({self.cluster:03d}.{self.proc:03d}.000) {stamp} "

    def text(self) -> str:
        return self.header() + self.body + "...\n"

    def xml(self) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.when))
        items: list[tuple[str, object]] = [
            ("MyType", MY_TYPES[self.number]), ("EventTypeNumber", self.number), ("EventTime", stamp),
            ("Cluster", self.cluster), ("Proc", self.proc), ("Subproc", 0), *self.attributes,
        ]  # fmt: skip
        lines = ["<c>"]
        for name, value in items:
            lines.append(f'    <a n="{name}">{_xml_value(value)}</a>')
        lines.append("</c>\n")
        return "\n".join(lines)


def _xml_value(value: object) -> str:
    if isinstance(value, bool):
        return f'<b v="{"t" if value else "f"}"/>'
    if isinstance(value, int):
        return f"<i>{value}</i>"
    if isinstance(value, float):
        return f"<r>{value:.6g}</r>"
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<s>{text}</s>"


# -- pool events -> user-log events ----------------------------------------------------------------
def _number(ad: Mapping[str, str], name: str, default: float = 0.0) -> float:
    value = classads.value_of_text(ad[name]) if name in ad and classads.is_literal(ad[name]) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _whole(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _usage(seconds: float) -> str:
    whole = int(seconds)
    return f"Usr {whole // 86400} {whole % 86400 // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}, Sys 0 00:00:00"


def _host(details: Mapping[str, object]) -> str:
    slot = str(details.get("slot") or "")
    return slot.split("@", 1)[1] if "@" in slot else (slot or "unknown")


def records_for(event: Event, ad: Mapping[str, str], proc: int, submit_host: str) -> list[Record]:
    """The user-log events one pool event makes for one job (``ad``: the job's ad, as texts)."""
    kind, details, when, cluster = event.type, event.details, event.time, event.cluster_id
    out: list[Record] = []
    if kind == "submit":
        notes = string_attr(dict(ad), ATTR_SUBMIT_EVENT_NOTES) or ""  # "DAG Node: A" for a DAG's node
        out.append(
            Record(
                SUBMIT,
                cluster,
                proc,
                when,
                f"Job submitted from host: {submit_host}\n" + (f"    {notes}\n" if notes else ""),
                (("SubmitHost", submit_host), *((("LogNotes", notes),) if notes else ())),
            )
        )
    elif kind == "execute":
        slot = str(details.get("slot") or "")
        body = f"Job executing on host: <{_host(details)}>\n" + (f"\tSlotName: {slot}\n" if slot else "")
        out.append(
            Record(
                EXECUTE,
                cluster,
                proc,
                when,
                body,
                (("ExecuteHost", f"<{_host(details)}>"), ("SlotName", slot)),
            )
        )
    elif kind in ("evict", "requeue"):
        body = (
            f"Job was evicted.\n\t(0) Job was not checkpointed.\n\t\t{ZERO_USAGE}  -  Run Remote Usage\n"
            f"\t\t{ZERO_USAGE}  -  Run Local Usage\n\t0  -  Run Bytes Sent By Job\n\t0  -  Run Bytes Received By Job\n"
        )
        out.append(
            Record(
                EVICTED,
                cluster,
                proc,
                when,
                body,
                (("Checkpointed", False), ("TerminatedAndRequeued", False)),
            )
        )
    elif kind == "complete":
        out += _terminated(cluster, proc, when, ad)
    elif kind == "remove":
        reason = str(details.get("reason") or "via condor_rm")
        out.append(
            Record(ABORTED, cluster, proc, when, f"Job was aborted.\n\t{reason}\n", (("Reason", reason),))
        )
    elif kind == "hold":
        reason = str(details.get("reason") or "")
        code = _whole(details.get("code", SUBMITTED_ON_HOLD if event.proc_id < 0 else 0))
        subcode = _whole(details.get("subcode", 0))
        body = f"Job was held.\n\t{reason}\n\tCode {code} Subcode {subcode}\n"
        out.append(
            Record(
                HELD,
                cluster,
                proc,
                when,
                body,
                (("HoldReason", reason), ("HoldReasonCode", code), ("HoldReasonSubCode", subcode)),
            )
        )
    elif kind == "release":
        reason = str(details.get("reason") or "via condor_release")
        out.append(
            Record(RELEASED, cluster, proc, when, f"Job was released.\n\t{reason}\n", (("Reason", reason),))
        )
    elif kind == "suspend":
        out.append(
            Record(
                SUSPENDED,
                cluster,
                proc,
                when,
                "Job was suspended.\n\tNumber of processes actually suspended: 1\n",
                (("NumberOfPIDs", 1),),
            )
        )
    elif kind == "continue":
        out.append(Record(UNSUSPENDED, cluster, proc, when, "Job was unsuspended.\n"))
    elif kind in ("lease_expired", "claim_forgotten"):
        slot, reason = str(details.get("slot") or ""), str(details.get("reason") or "")
        out.append(Record(
            DISCONNECTED, cluster, proc, when,
            f"Job disconnected, attempting to reconnect\n    {reason}\n    Trying to reconnect to {slot} <{_host(details)}>\n",
            (("DisconnectReason", reason), ("StartdName", slot), ("StartdAddr", f"<{_host(details)}>")),
        ))  # fmt: skip
        out.append(Record(
            RECONNECT_FAILED, cluster, proc, when,
            f"Job reconnection failed\n    {reason}\n    Can not reconnect to {slot}, rescheduling job\n",
            (("Reason", reason), ("StartdName", slot)),
        ))  # fmt: skip
    information = information_names(ad)
    if information and out:
        out.append(_ad_information(out[-1], ad, information))
    return out


def information_names(ad: Mapping[str, str]) -> list[str]:
    """The attributes a job's job_ad_information_attrs names (event 028 reports them)."""
    text = string_attr(dict(ad), "JobAdInformationAttrs") or ""
    return [name for name in (n.strip() for n in text.replace(",", " ").split()) if name]


def _terminated(cluster: int, proc: int, when: float, ad: Mapping[str, str]) -> list[Record]:
    out = []
    image = int(_number(ad, "ImageSize"))
    if image:
        memory, rss = int(_number(ad, "MemoryUsage")), int(_number(ad, "ResidentSetSize"))
        body = f"Image size of job updated: {image}\n\t{memory}  -  MemoryUsage of job (MB)\n\t{rss}  -  ResidentSetSize of job (KB)\n"
        out.append(
            Record(
                IMAGE_SIZE,
                cluster,
                proc,
                when,
                body,
                (("Size", image), ("MemoryUsage", memory), ("ResidentSetSize", rss)),
            )
        )
    by_signal = ad.get("ExitBySignal", "false").strip().lower() == "true"
    user = _usage(_number(ad, "RemoteUserCpu"))
    if by_signal:
        signal_number = int(_number(ad, "ExitSignal"))
        lines = [f"\t(0) Abnormal termination (signal {signal_number})", "\t(0) No core file"]
        attributes: list[tuple[str, object]] = [
            ("TerminatedNormally", False),
            ("TerminatedBySignal", signal_number),
        ]
    else:
        value = int(_number(ad, "ExitCode"))
        lines = [f"\t(1) Normal termination (return value {value})"]
        attributes = [("TerminatedNormally", True), ("ReturnValue", value)]
    sent, received = int(_number(ad, "BytesSent")), int(_number(ad, "BytesRecvd"))
    lines += [
        f"\t\t{user}  -  Run Remote Usage", f"\t\t{ZERO_USAGE}  -  Run Local Usage",
        f"\t\t{user}  -  Total Remote Usage", f"\t\t{ZERO_USAGE}  -  Total Local Usage",
        f"\t{sent}  -  Run Bytes Sent By Job", f"\t{received}  -  Run Bytes Received By Job",
        f"\t{sent}  -  Total Bytes Sent By Job", f"\t{received}  -  Total Bytes Received By Job",
    ]  # fmt: skip
    table = [
        ("Cpus", "", str(int(_number(ad, "RequestCpus", 1))), str(int(_number(ad, "RequestCpus", 1)))),
        ("Disk (KB)", str(int(_number(ad, "DiskUsage"))), str(int(_number(ad, "RequestDisk"))), str(int(_number(ad, "RequestDisk")))),
        ("Memory (MB)", str(int(_number(ad, "MemoryUsage"))), str(int(_number(ad, "RequestMemory"))), str(int(_number(ad, "RequestMemory")))),
    ]  # fmt: skip
    lines.append(f"\tPartitionable Resources : {'Usage':>8} {'Request':>8} {'Allocated':>9}")
    lines += [
        f"\t   {name:<19} : {use:>8} {request:>8} {allocated:>9}" for name, use, request, allocated in table
    ]
    attributes += [
        ("RunRemoteUsage", user), ("RunLocalUsage", ZERO_USAGE), ("TotalRemoteUsage", user),
        ("TotalLocalUsage", ZERO_USAGE), ("SentBytes", float(sent)), ("ReceivedBytes", float(received)),
        ("TotalSentBytes", float(sent)), ("TotalReceivedBytes", float(received)),
        ("RequestCpus", int(_number(ad, "RequestCpus", 1))), ("Cpus", int(_number(ad, "RequestCpus", 1))),
        ("RequestDisk", int(_number(ad, "RequestDisk"))), ("DiskUsage", int(_number(ad, "DiskUsage"))),
        ("RequestMemory", int(_number(ad, "RequestMemory"))), ("MemoryUsage", int(_number(ad, "MemoryUsage"))),
    ]  # fmt: skip
    out.append(
        Record(
            TERMINATED, cluster, proc, when, "Job terminated.\n" + "\n".join(lines) + "\n", tuple(attributes)
        )
    )
    return out


def _ad_information(trigger: Record, ad: Mapping[str, str], names: list[str]) -> Record:
    """028: the attributes the job's job_ad_information_attrs names, after the event that triggered it."""
    lines, attributes = [], []
    for name in names:
        if name in ad:
            lines.append(f"{name} = {ad[name]}")
            value = classads.value_of_text(ad[name]) if classads.is_literal(ad[name]) else ad[name]
            attributes.append((name, value))
    lines += [
        f'TriggerEventTypeName = "{NAMES.get(trigger.number, "")}"',
        f"TriggerEventTypeNumber = {trigger.number}",
    ]
    attributes += [
        ("TriggerEventTypeName", NAMES.get(trigger.number, "")),
        ("TriggerEventTypeNumber", trigger.number),
    ]
    return Record(AD_INFORMATION, trigger.cluster, trigger.proc, trigger.when,
                  "Job ad information event triggered.\n" + "\n".join(lines) + "\n", tuple(attributes))  # fmt: skip


# -- writing them -------------------------------------------------------------------------------------
#: what the writer reads of a job's ad for a cluster's own events (the submission)
CLUSTER_EVENT_ATTRS = (
    "UserLog", ATTR_DAG_NODES_LOG, "DAGManNodesMask", ATTR_SUBMIT_EVENT_NOTES, "Owner", "UserLogUseXML",
    "JobAdInformationAttrs", "Iwd",
)  # fmt: skip
LOG_ATTRS = ("UserLog", ATTR_DAG_NODES_LOG)  # a job's own log, and its DAG's nodes log (always text)
PER_PROC = {"ClusterId", "ProcId", "JobStatus"}  # never in the cluster's ad: each proc's own


class JobAds:
    """The user logs' lookups of a job's ad: the queue's on the event loop, the history's from the thread."""

    def __init__(self, queue: Any, history: Any, installing: Mapping[int, Any]) -> None:
        self.queue, self.history, self.installing = queue, history, installing

    def live(self, cluster_id: int, proc_id: int) -> list[tuple[int, Mapping[str, str] | None]]:
        """Each job's ad that names a log (None for one that left the queue); proc -1: the cluster's jobs."""
        if proc_id >= 0:
            job = self.queue.get(cluster_id, proc_id)
            if job is None:
                return [(proc_id, None)]
            return [(proc_id, job.ad())] if _logs(job.get) else []
        cluster = self.queue.clusters.get(cluster_id) or self.installing.get(cluster_id)
        if cluster is None:
            return []
        # a cluster's event (its submission) needs only what says where and how to log: when no
        # proc varies in those, one view serves every proc (a 100,000-job submit builds one, not
        # 100,000 ads, on the event loop before the submitter's answer)
        names = {*CLUSTER_EVENT_ATTRS, *information_names(cluster.ad)}
        if not names & (cluster.varying | PER_PROC):
            shared = {name: text for name in names if (text := cluster.ad.get(name)) is not None}
            if not _logs(shared.get):
                return []
            return [(proc, shared) for proc in sorted(cluster.jobs)]
        return [(proc, job.ad()) for proc, job in sorted(cluster.jobs.items()) if _logs(job.get)]

    def notifying(self, cluster_id: int, proc_id: int) -> list[tuple[int, Mapping[str, str] | None]]:
        """Each job's ad that asks for notification (None for one that left the queue); proc -1: the cluster's."""
        cluster = self.queue.clusters.get(cluster_id) or self.installing.get(cluster_id)
        if cluster is None:
            return [(proc_id, None)] if proc_id >= 0 else []
        if cluster.ad.get("JobNotification", "0") == "0" and "JobNotification" not in cluster.varying:
            return []
        procs = [proc_id] if proc_id >= 0 else sorted(cluster.jobs)
        return [(proc, job.ad() if (job := cluster.jobs.get(proc)) else None) for proc in procs]

    def from_history(self, cluster_id: int, proc_id: int) -> Mapping[str, str] | None:
        found = self.history.query([f"{cluster_id}.{proc_id}"], [], "", [], 1)
        return found[0] if found else None


def _event_mask(text: str | None) -> frozenset[int] | None:
    """DAGManNodesMask: the event numbers the nodes log takes (None: all)."""
    if not text:
        return None
    return frozenset(int(part) for part in text.split(",") if part.strip().isdigit())


@dataclass(frozen=True)
class _LogTargets:
    owner: str
    #: (path, XML? (None: a nodes log, text), the event numbers it takes (None: all))
    files: tuple[tuple[str, bool | None, frozenset[int] | None], ...]


def _log_targets(ad: Mapping[str, str]) -> _LogTargets | None:
    """The files a job's events go to: its own log (XML if it asked), and its DAG's nodes log
    (text, only the events its mask names; not again when it is the job's own log)."""
    texts = dict(ad)
    paths = {name: string_attr(texts, name) for name in LOG_ATTRS}
    paths = {name: path for name, path in paths.items() if path and os.path.isabs(path)}
    if not paths:
        return None
    files: list[tuple[str, bool | None, frozenset[int] | None]] = []
    own = paths.get("UserLog")
    if own:
        files.append((own, ad.get("UserLogUseXML", "false").strip().lower() == "true", None))
    nodes = paths.get(ATTR_DAG_NODES_LOG)
    if nodes and nodes != own:
        files.append((nodes, None, _event_mask(string_attr(texts, "DAGManNodesMask"))))
    return _LogTargets(string_attr(texts, "Owner") or "", tuple(files))


def _logs(lookup: Callable[[str], str | None]) -> bool:
    return any(lookup(name) is not None for name in LOG_ATTRS)


Resolved = list[tuple[Event, list[tuple[int, "Mapping[str, str] | None"]]]]


class UserLogs(EventWorker):
    """One thread that appends each committed job event to its job's user log, in order, as the owner.

    The jobs' ads are read on the event loop when the events are published (the queue is the
    loop's); a job that already left the queue is looked up in the history by the thread.
    """

    name = "userlog"

    def __init__(
        self, home: Path, cursor_path: Path, identities: IdentityMap, writer: OwnerWriter,
        live_ads: Callable[[int, int], list[tuple[int, Mapping[str, str] | None]]],
        history_ad: Callable[[int, int], Mapping[str, str] | None], submit_host: Callable[[], str],
    ) -> None:  # fmt: skip
        super().__init__(cursor_path)
        self.home, self.identities, self.writer = home, identities, writer
        self.live_ads, self.history_ad, self.submit_host = live_ads, history_ad, submit_host
        #: (cluster, proc, timeout): returns once a completed job's output is delivered (the outbox)
        self.before_terminated: Callable[[int, int, float], None] = lambda cluster, proc, timeout: None

    def resolve(self, events: Iterable[Event]) -> Resolved:
        out: Resolved = []
        for event in events:
            if event.type not in KINDS:
                continue
            jobs = self.live_ads(event.cluster_id, event.proc_id)
            if jobs:
                out.append((event, jobs))
        return out

    def deliver(self, batch: Resolved) -> None:
        for event, jobs in batch:  # 005 after the output is back, so condor_wait && cat out works
            if event.type == "complete":
                for proc, _ad in jobs:
                    self.before_terminated(event.cluster_id, proc, OUTPUT_BEFORE_TERMINATED_S)
        self._write(batch)

    def _write(self, batch: Resolved) -> None:
        by_file: dict[tuple[str, str], list[Record]] = {}
        accounts: dict[str, Account | Unmapped] = {}
        xml: dict[str, bool] = {}
        #: what an ad says about its logs, read once per ad: a cluster's submission hands every
        #: proc the same shared view (the ad is kept with it, so its id is never reused meanwhile)
        read: dict[int, tuple[Mapping[str, str], _LogTargets | None]] = {}
        submit_host = self.submit_host()
        for event, jobs in batch:
            for proc, known in jobs:
                ad = known if known is not None else self.history_ad(event.cluster_id, proc)
                if not ad:
                    continue
                if id(ad) not in read:
                    read[id(ad)] = (ad, _log_targets(ad))
                targets = read[id(ad)][1]
                if targets is None:
                    continue
                if targets.owner not in accounts:
                    accounts[targets.owner] = self.identities.account_of(targets.owner)
                records = records_for(event, ad, proc, submit_host)
                for path, use_xml, mask in targets.files:
                    if use_xml is None:  # a nodes log: text, unless it is some job's own XML log
                        xml.setdefault(path, False)
                    else:
                        xml[path] = use_xml
                    chosen = records if mask is None else [r for r in records if r.number in mask]
                    by_file.setdefault((targets.owner, path), []).extend(chosen)
        forbidden = forbidden_directories(self.home)
        for (owner, path), records in by_file.items():
            account = accounts[owner]
            if isinstance(account, Unmapped):
                log.warning("user log %s not written: %s", path, account.reason)
                continue
            if self.replaying:
                records = self._not_yet_written(path, records)
            text = "".join(r.xml() if xml[path] else r.text() for r in records)
            if not text:
                continue
            problem = self.writer.append(
                account, Place(os.path.dirname(path), forbidden), os.path.basename(path), text.encode()
            )
            if problem:
                log.warning("user log %s of %s not written: %s", path, owner, problem)
        failpoint(
            "pool.after_userlog_append"
        )  # written, the cursor not yet moved: a restart must not repeat it

    @staticmethod
    def _not_yet_written(path: str, records: list[Record]) -> list[Record]:
        """After a restart: leave out the events already at the end of the file (written, cursor not)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return records
        try:
            size = os.fstat(fd).st_size
            os.lseek(fd, max(0, size - 65536), os.SEEK_SET)
            tail = os.read(fd, 65536).decode(errors="replace")
        finally:
            os.close(fd)
        return [r for r in records if r.header() not in tail]
