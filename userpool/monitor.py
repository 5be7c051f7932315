"""The real-time monitor (the seeds' RTM): what every site is doing, now and over the last hours.

The pool already knows everything the page shows: pilots and failures are ads in its
collector, jobs are in its queue, overflow and every other change are events in its log.
This module keeps a small ring of samples (jobs and pilots over time, queue waits of the
jobs that started in each interval) and builds one snapshot for the page.  The page loads
the snapshot once and then follows the event stream, asking for a new snapshot only when
events arrive (at most every two seconds), so an idle monitor costs nothing.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from updraft.core import payloads, protocol

if TYPE_CHECKING:
    from userpool.claims import ClaimBook
    from userpool.collector import Collector
    from userpool.events import EventLog
    from userpool.queue import JobQueue

#: events the page shows as they come (and names them for people)
SHOWN_EVENTS = {
    "submit": "submitted", "execute": "started", "terminate": "finished", "hold": "held", "release": "released",
    "remove": "removed", "lease_expired": "lease expired: back to idle",
    "claim_forgotten": "claim never reached its pilot: back to idle", "frontend_overflow": "overflowed",
    "pilot_failed": "pilot failed validation", "pilot_black_hole": "pilot stopped: black hole",
}  # fmt: skip


@dataclass
class Sample:
    time: float
    jobs_idle: int
    jobs_running: int
    jobs_held: int
    pilots_idle: int
    pilots_busy: int
    pilots_failed: int
    started: int  # jobs that started in the interval
    wait_p50_s: float | None
    wait_max_s: float | None


@dataclass
class Monitor:
    """Reads four things (the queue, the collector, the claims, the event log), writes none."""

    queue: JobQueue
    collector: Collector
    claims: ClaimBook
    events: EventLog
    interval_s: float = 30.0
    show_reasons: bool = False
    keep_s: float = 6 * 3600.0
    clock: Callable[[], float] = time.time
    samples: deque[Sample] = field(init=False)
    waits: list[float] = field(default_factory=list)  # queue waits of the jobs started this interval

    def __post_init__(self) -> None:
        self.samples = deque(maxlen=max(2, int(self.keep_s / self.interval_s)))

    def job_started(self, waited_s: float) -> None:
        self.waits.append(max(0.0, waited_s))

    def sample(self) -> Sample:
        totals = self.queue.totals()
        pilots = self._pilot_counts()
        waits = sorted(self.waits)
        self.waits = []
        sample = Sample(
            round(self.clock(), 1), totals.get("idle", 0), totals.get("running", 0), totals.get("held", 0),
            sum(v["idle"] for v in pilots.values()), sum(v["busy"] for v in pilots.values()),
            sum(v["failed"] for v in pilots.values()), len(waits),
            round(waits[len(waits) // 2], 1) if waits else None, round(waits[-1], 1) if waits else None,
        )  # fmt: skip
        self.samples.append(sample)
        return sample

    def _pilot_counts(self) -> dict[str, Counter[str]]:
        sites: dict[str, Counter[str]] = {}
        collector = self.collector
        for ad in collector.query(
            protocol.AdType.Slot, "", [protocol.ATTR_GLIDEIN_SITE, "State", "Cpus", "TotalCpus"]
        ):
            site = sites.setdefault(_text(ad.get(protocol.ATTR_GLIDEIN_SITE)), Counter())
            site["busy" if _text(ad.get("State")) == "Claimed" else "idle"] += 1
        for ad in collector.query(protocol.AdType.PilotFailure, "", [protocol.ATTR_GLIDEIN_SITE]):
            sites.setdefault(_text(ad.get(protocol.ATTR_GLIDEIN_SITE)), Counter())["failed"] += 1
        return sites

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, in one answer."""
        now = self.clock()
        sites = self._pilot_counts()
        collector = self.collector
        entries: dict[str, list[dict[str, Any]]] = {}
        for ad in collector.query(
            protocol.AdType.GlideFactory,
            "",
            [protocol.ATTR_NAME, protocol.ATTR_GLIDEIN_SITE, protocol.ATTR_IN_DOWNTIME],
        ):
            site = _text(ad.get(protocol.ATTR_GLIDEIN_SITE))
            sites.setdefault(site, Counter())
            entries.setdefault(site, []).append(
                {
                    "name": _text(ad.get(protocol.ATTR_NAME)),
                    "down": ad.get(protocol.ATTR_IN_DOWNTIME) == "true",
                }
            )
        requested: Counter[str] = Counter()
        for ad in collector.query(
            protocol.AdType.GlideResource, "", [protocol.ATTR_GLIDEIN_SITE, "GlideClientMonitorRequestedIdle"]
        ):
            requested[_text(ad.get(protocol.ATTR_GLIDEIN_SITE))] += _int(
                ad.get("GlideClientMonitorRequestedIdle")
            )
        running: Counter[str] = Counter()
        flows: Counter[tuple[str, str]] = Counter()
        for claim in list(self.claims.active.values()):
            site = _text(claim.job.get(protocol.ATTR_MATCH_SITE))
            running[site] += 1
            if claim.job.get(protocol.ATTR_OVERFLOWED) == "true":
                for home in _text(claim.job.get(protocol.ATTR_OVERFLOW_HOME_SITES)).split(","):
                    if home:
                        flows[(home, site)] += 1
        widened: Counter[tuple[str, str]] = Counter()
        events = []
        for event in list(self.events.recent):
            if event.type == "frontend_overflow":
                for target in str(event.details.get("to", "")).split(","):
                    widened[(str(event.details.get("home", "")), target)] += int(event.details.get("jobs", 0))
            if event.type in SHOWN_EVENTS:
                events.append(event_view(event, self.show_reasons))
        for site in running:
            sites.setdefault(site, Counter())
        totals = self.queue.totals()
        return {
            "time": now,
            "jobs": {k: v for k, v in totals.items() if k != "total"},
            "sites": [
                {
                    "site": site, "pilots_idle": counts["idle"], "pilots_busy": counts["busy"],
                    "pilots_failed": counts["failed"], "jobs_running": running[site],
                    "requested_idle": requested[site], "entries": entries.get(site, []),
                }
                for site, counts in sorted(sites.items())
                if site
            ],
            "overflow": [
                {"home": home, "site": site, "running": flows[(home, site)], "widened": widened[(home, site)]}
                for home, site in sorted(set(flows) | set(widened))
            ],
            "events": events[-40:][::-1],
            "samples": [asdict(s) for s in self.samples],
            "interval_s": self.interval_s,
        }  # fmt: skip


def monitor_html() -> str:
    """The page: one file, no CDN, no build step."""
    return (Path(__file__).parent / "monitor.html").read_text()


#: events whose reason an owner may have written (condor_hold -reason ...): free text, shown only
#: when the pool's operator asks for it (monitor.show_reasons)
OWNER_WORDED = frozenset({"hold", "release", "remove", "suspend", "continue", "evict"})


def event_view(event: payloads.Event, show_reasons: bool = False) -> dict[str, Any]:
    """An event as the page shows it: no arguments, environments or paths, just what happened."""
    details = event.details
    shown = ["site", "home", "to", "jobs", "exit_code", "code", "type", "message", "slot"]
    if show_reasons or event.type not in OWNER_WORDED:
        shown.append("reason")
    keep = {k: details[k] for k in shown if k in details}
    job = f"{event.cluster_id}.{event.proc_id}" if event.cluster_id > 0 and event.proc_id >= 0 else (
        str(event.cluster_id) if event.cluster_id > 0 else ""
    )  # fmt: skip
    return {
        "id": event.id,
        "time": event.time,
        "type": event.type,
        "what": SHOWN_EVENTS.get(event.type, event.type),
        "job": job,
        "source": event.source,
        "details": keep,
    }


def _text(text: str | None) -> str:
    if text is None:
        return ""
    try:
        value = protocol.parse_literal(text)
    except ValueError:
        return text
    return str(value) if value is not None else ""


def _int(text: str | None) -> int:
    try:
        return int(float(text or 0))
    except ValueError:
        return 0
