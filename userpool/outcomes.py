"""What became of the jobs and pilots since the pool started: the monitor's outcomes and /metrics.

Counted from the committed events as they are published (an event-log listener on the loop,
nothing slow): jobs completed, failed (an exit code other than 0, or a signal), removed and
held, in all, per owner and per accounting group, and per monitor interval for the rate
chart; pilots that failed validation, by failure type; how long each started job had waited
in the queue; how long each pilot took from its start (its slot's DaemonStartTime) to its
first job.  These reset when the pool restarts, as Prometheus counters may.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from updraft.core import classads, protocol
from updraft.core.metrics import Histogram
from updraft.core.payloads import Event

QUEUE_WAIT_BOUNDS = (
    1.0,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    21600.0,
    86400.0,
)
FIRST_JOB_BOUNDS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
KINDS = ("completed", "failed", "removed", "held")
MAX_PILOTS_REMEMBERED = 100_000


def outcome_of(event: Event) -> tuple[str, ...]:
    """The outcome counts one event adds to (a failure is a completion too)."""
    if event.type == "complete":
        details = event.details
        failed = bool(details.get("exit_signal")) or int(details.get("exit_code") or 0) != 0
        return ("completed", "failed") if failed else ("completed",)
    if event.type == "remove":
        return ("removed",)
    if event.type == "hold" and event.proc_id >= 0:
        return ("held",)
    return ()


class Outcomes:
    def __init__(self) -> None:
        self.totals: Counter[str] = Counter()
        self.interval: Counter[str] = Counter()
        self.by_owner: dict[str, Counter[str]] = {}
        self.by_group: dict[str, Counter[str]] = {}
        self.validation: Counter[str] = Counter()  # pilots that failed validation, by failure type
        self.queue_wait = Histogram(QUEUE_WAIT_BOUNDS)
        self.first_job = Histogram(FIRST_JOB_BOUNDS)
        self._pilots_matched: set[str] = set()

    def published(self, events: list[Event]) -> None:
        """EventLog listener (on the loop, once the events are durable)."""
        for event in events:
            if event.type == "pilot_failed":
                self.validation[str(event.details.get("type") or "unknown")] += 1
                continue
            kinds = outcome_of(event)
            if not kinds:
                continue
            owner = str(event.details.get("owner") or "")
            group = str(event.details.get("group") or "")
            for kind in kinds:
                self.totals[kind] += 1
                self.interval[kind] += 1
                if owner:
                    self.by_owner.setdefault(owner, Counter())[kind] += 1
                if group:
                    self.by_group.setdefault(group, Counter())[kind] += 1

    def job_started(self, waited_s: float, slot: Mapping[str, str], now: float) -> None:
        """A job was matched: how long it waited; and, for a pilot's first job, how long the pilot waited."""
        self.queue_wait.observe(max(0.0, waited_s))
        pilot = slot.get(protocol.ATTR_GLIDEIN_ID) or slot.get("Name") or ""
        started = slot.get(protocol.ATTR_DAEMON_START_TIME)
        if not pilot or pilot in self._pilots_matched or started is None or not classads.is_literal(started):
            return
        if len(self._pilots_matched) >= MAX_PILOTS_REMEMBERED:
            self._pilots_matched.clear()
        self._pilots_matched.add(pilot)
        value = classads.value_of_text(started)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.first_job.observe(max(0.0, now - float(value)))

    def take_interval(self) -> Counter[str]:
        """The counts since the last call (one monitor sample)."""
        taken, self.interval = self.interval, Counter()
        return taken
