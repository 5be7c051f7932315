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
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from updraft.core import payloads, protocol
from userpool.outcomes import KINDS, Outcomes

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
    completed: int = 0  # jobs that ended in the interval (failed ones too)
    failed: int = 0  # ... with an exit code other than 0, or a signal
    removed: int = 0


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
    #: each fair-share submitter's effective priority (the accountant's), and idle jobs per submitter
    priorities: Callable[[], dict[str, float]] = dict
    idle_by_submitter: Callable[[], dict[str, int]] = dict
    samples: deque[Sample] = field(init=False)
    waits: list[float] = field(default_factory=list)  # queue waits of the jobs started this interval
    outcomes: Outcomes = field(default_factory=Outcomes)

    def __post_init__(self) -> None:
        self.samples = deque(maxlen=max(2, int(self.keep_s / self.interval_s)))

    def job_started(self, waited_s: float, slot: Mapping[str, str] | None = None) -> None:
        self.waits.append(max(0.0, waited_s))
        self.outcomes.job_started(waited_s, slot or {}, self.clock())

    def sample(self) -> Sample:
        totals = self.queue.totals()
        pilots = self._pilot_counts()
        waits = sorted(self.waits)
        self.waits = []
        ended = self.outcomes.take_interval()
        sample = Sample(
            round(self.clock(), 1), totals.get("idle", 0), totals.get("running", 0), totals.get("held", 0),
            sum(v["idle"] for v in pilots.values()), sum(v["busy"] for v in pilots.values()),
            sum(v["failed"] for v in pilots.values()), len(waits),
            round(waits[len(waits) // 2], 1) if waits else None, round(waits[-1], 1) if waits else None,
            ended["completed"], ended["failed"], ended["removed"],
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
        for entry in entry_views(collector.query(protocol.AdType.GlideFactory, "", ENTRY_ATTRS)):
            sites.setdefault(entry["site"], Counter())
            entries.setdefault(entry["site"], []).append(entry)
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
            "outcomes": {kind: self.outcomes.totals[kind] for kind in KINDS},
            "validation_failures": dict(self.outcomes.validation),
            "users": self._users(),
            "groups": self._groups(),
        }  # fmt: skip

    def _users(self) -> list[dict[str, Any]]:
        """Per owner: their jobs now, what became of them, their best fair-share priority."""
        priorities = self.priorities()
        owners = set(self.queue.owner_status_counts) | set(self.outcomes.by_owner)
        rows = []
        for owner in sorted(owners):
            now = self.queue.owner_status_counts.get(owner, Counter())
            ended = self.outcomes.by_owner.get(owner, Counter())
            mine = [p for name, p in priorities.items() if name == owner or name.endswith("." + owner)]
            rows.append({
                "user": owner, "idle": now[1], "running": now[2], "held": now[5], "completed": ended["completed"],
                "failed": ended["failed"], "removed": ended["removed"], "priority": min(mine) if mine else None,
            })  # fmt: skip
        return [
            row for row in rows if any(row[k] for k in ("idle", "running", "held", "completed", "removed"))
        ]

    def _groups(self) -> list[dict[str, Any]]:
        """Per accounting group: its submitters' jobs (idle, running), what ended, its best priority."""
        priorities = self.priorities()
        idle: Counter[str] = Counter()
        running: Counter[str] = Counter()
        for submitter, count in self.idle_by_submitter().items():
            if "." in submitter:
                idle[submitter.rsplit(".", 1)[0]] += count
        for claim in list(self.claims.active.values()):
            if "." in claim.submitter:
                running[claim.submitter.rsplit(".", 1)[0]] += 1
        groups = set(idle) | set(running) | set(self.outcomes.by_group)
        rows = []
        for group in sorted(groups):
            ended = self.outcomes.by_group.get(group, Counter())
            members = [p for name, p in priorities.items() if name.startswith(group + ".")]
            rows.append({
                "group": group, "idle": idle[group], "running": running[group], "completed": ended["completed"],
                "failed": ended["failed"], "priority": min(members) if members else None,
            })  # fmt: skip
        return rows


#: what the monitor reads of an entry's glidefactory ad
ENTRY_ATTRS = [
    protocol.ATTR_NAME, protocol.ATTR_ENTRY_NAME, protocol.ATTR_FACTORY_NAME, protocol.ATTR_GLIDEIN_SITE,
    protocol.ATTR_IN_DOWNTIME, protocol.ATTR_GLIDEIN_DOWNTIME_COMMENT,
    protocol.ATTR_GLIDEIN_LAST_FAILURE,
    *(f"{protocol.ATTR_MONITOR_PREFIX}{name}" for name in (
        "TotalStatusIdle", "TotalStatusRunning", "TotalStatusHeld", "PilotCoreSecondsAll", "PilotCoreSecondsUsed",
        "PilotCoreSecondsIdle", "PilotCoreSecondsValidation",
    )),
]  # fmt: skip


def entry_views(ads: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The factory's side of each entry, from its glidefactory ad: its glideins at the site, its
    downtime and why, its newest trouble, and its pilots' time (used, wasted idle or validating)."""
    prefix = protocol.ATTR_MONITOR_PREFIX
    out = []
    for ad in ads:
        down = ad.get(protocol.ATTR_IN_DOWNTIME) == "true"
        out.append({
            "name": _text(ad.get(protocol.ATTR_ENTRY_NAME)) or _text(ad.get(protocol.ATTR_NAME)),
            "factory": _text(ad.get(protocol.ATTR_FACTORY_NAME)), "site": _text(ad.get(protocol.ATTR_GLIDEIN_SITE)),
            "down": down, "downtime": _text(ad.get(protocol.ATTR_GLIDEIN_DOWNTIME_COMMENT)) if down else "",
            "queued": _int(ad.get(f"{prefix}TotalStatusIdle")), "running": _int(ad.get(f"{prefix}TotalStatusRunning")),
            "held": _int(ad.get(f"{prefix}TotalStatusHeld")), "last_failure": _text(ad.get(protocol.ATTR_GLIDEIN_LAST_FAILURE)),
            "core_hours": round(_int(ad.get(f"{prefix}PilotCoreSecondsAll")) / 3600, 2),
            "used_hours": round(_int(ad.get(f"{prefix}PilotCoreSecondsUsed")) / 3600, 2),
            "idle_hours": round(_int(ad.get(f"{prefix}PilotCoreSecondsIdle")) / 3600, 2),
            "validation_hours": round(_int(ad.get(f"{prefix}PilotCoreSecondsValidation")) / 3600, 2),
        })  # fmt: skip
    return out


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
