"""`updraft factory analyze`: what the glideins of the last hours did, from their final records.

A glidein's final record (printed by the pilot, kept by the factory) says how long it
lived, on how many cores, how many jobs it ran and how much of its time they used; the
difference is the waste operators chase (validation failures, pilots that found no work).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from factory.journal import Glidein


@dataclass
class EntryAnalysis:
    entry: str
    submitted: int = 0
    started: int = 0  # reached the running state at the site
    ended: Counter[str] = field(default_factory=Counter)  # by final state
    with_record: int = 0
    validation_failures: Counter[str] = field(default_factory=Counter)  # by failure type
    #: pilots failing validation now, not ended yet (their pilotfailure ads), by failure type
    failing_now: Counter[str] = field(default_factory=Counter)
    core_hours: float = 0.0
    used_core_hours: float = 0.0
    jobs_per_pilot: list[int] = field(default_factory=list)

    @property
    def wasted_core_hours(self) -> float:
        return max(0.0, self.core_hours - self.used_core_hours)

    @property
    def efficiency(self) -> float | None:
        return self.used_core_hours / self.core_hours if self.core_hours else None

    def to_dict(self) -> dict[str, Any]:
        jobs = self.jobs_per_pilot
        return {
            "entry": self.entry,
            "submitted": self.submitted,
            "started": self.started,
            "ended": dict(self.ended),
            "validation_failures": dict(self.validation_failures),
            "failing_now": dict(self.failing_now),
            "core_hours": round(self.core_hours, 3),
            "used_core_hours": round(self.used_core_hours, 3),
            "wasted_core_hours": round(self.wasted_core_hours, 3),
            "efficiency": round(self.efficiency, 3) if self.efficiency is not None else None,
            "jobs": sum(jobs),
            "jobs_per_pilot_mean": round(statistics.fmean(jobs), 2) if jobs else None,
            "jobs_per_pilot_median": statistics.median(jobs) if jobs else None,
            "pilots_without_jobs": sum(1 for n in jobs if n == 0),
        }


def failure_type(record: dict[str, Any]) -> str:
    for check in record.get("checks") or []:
        if isinstance(check, dict) and not check.get("ok", True):
            return str(check.get("failure_type") or "unknown")
    return "unknown"


def analyze(
    glideins: Iterable[Glidein],
    default_cpus: dict[str, int] | None = None,
    live: dict[str, dict[str, Any]] | None = None,
) -> list[EntryAnalysis]:
    """Per entry: what its glideins did (final records) and, from ``live`` (status.json's
    ``failing`` per entry), the pilots failing validation now that have no record yet."""
    by_entry: dict[str, EntryAnalysis] = {}
    recorded: set[str] = set()
    for glidein in glideins:
        if glidein.record:
            recorded.add(glidein.glidein_id)
        result = by_entry.setdefault(glidein.entry, EntryAnalysis(glidein.entry))
        result.submitted += 1 if glidein.site_id else 0
        result.started += 1 if glidein.started else 0
        if not glidein.live:
            result.ended[glidein.state.value] += 1
        record = glidein.record
        if not record:
            continue
        result.with_record += 1
        if record.get("status") == "validation_failed":
            result.validation_failures[failure_type(record)] += 1
        cpus = int(record.get("cpus") or (default_cpus or {}).get(glidein.entry, 1) or 1)
        result.core_hours += float(record.get("lifetime_s") or 0) * cpus / 3600
        result.used_core_hours += float(record.get("job_core_s") or 0) / 3600
        result.jobs_per_pilot.append(int((record.get("jobs") or {}).get("started", 0)))
    for name, failing in (live or {}).items():
        for failure in failing.get("newest") or []:
            if failure.get("glidein_id") not in recorded:
                by_entry.setdefault(name, EntryAnalysis(name)).failing_now[
                    failure.get("failure_type") or "unknown"
                ] += 1
    return [by_entry[name] for name in sorted(by_entry)]
