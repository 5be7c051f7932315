"""What a simulated day shows: samples over time, the totals, and the tables people read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from updraft.core.tables import render_table


@dataclass
class Sample:
    time: float
    requested_idle: int
    glideins_queued: int
    pilots_running: int
    pilots_idle: int
    pilots_failed: int
    jobs_idle: int
    jobs_running: int
    jobs_done: int
    overflowed: int


@dataclass
class Report:
    hours: float
    cycle_s: float
    sites: int
    cores: int
    jobs: int
    samples: list[Sample] = field(default_factory=list)
    jobs_done: int = 0
    jobs_started: int = 0
    jobs_never_started: int = 0
    jobs_restarted: int = 0
    wait_s: dict[str, float] = field(default_factory=dict)
    pilots_started: int = 0
    pilots_failed: int = 0
    pilots_cancelled: int = 0
    pilot_hours: float = 0.0
    busy_hours: float = 0.0
    overflowed_jobs: int = 0
    overflowed_by_home: dict[str, int] = field(default_factory=dict)
    max_requested_idle: int = 0
    wall_s: float = 0.0
    events: int = 0

    @property
    def wasted_pilot_hours(self) -> float:
        return max(0.0, self.pilot_hours - self.busy_hours)

    @property
    def efficiency(self) -> float:
        return self.busy_hours / self.pilot_hours if self.pilot_hours else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "hours": self.hours, "cycle_s": self.cycle_s, "sites": self.sites, "cores": self.cores, "jobs": self.jobs,
            "jobs_done": self.jobs_done, "jobs_started": self.jobs_started, "jobs_never_started": self.jobs_never_started,
            "jobs_restarted": self.jobs_restarted, "wait_s": self.wait_s, "pilots_started": self.pilots_started,
            "pilots_failed": self.pilots_failed, "pilots_cancelled": self.pilots_cancelled,
            "pilot_hours": round(self.pilot_hours, 1), "busy_hours": round(self.busy_hours, 1),
            "wasted_pilot_hours": round(self.wasted_pilot_hours, 1), "efficiency": round(self.efficiency, 4),
            "overflowed_jobs": self.overflowed_jobs, "overflowed_by_home": self.overflowed_by_home,
            "max_requested_idle": self.max_requested_idle, "wall_s": round(self.wall_s, 2), "events": self.events,
            "timeline": [vars(s) for s in self.samples],
        }  # fmt: skip


TIMELINE = [
    "HOUR",
    "REQ IDLE",
    "QUEUED",
    "PILOTS",
    "IDLE PILOTS",
    "FAILED",
    "JOBS IDLE",
    "RUNNING",
    "DONE",
    "OVERFLOWED",
]


def _timeline_rows(report: Report, rows: int = 24) -> list[list[Any]]:
    if not report.samples:
        return []
    step = max(1, len(report.samples) // rows)
    picked = report.samples[step - 1 :: step]
    if picked[-1] is not report.samples[-1]:
        picked.append(report.samples[-1])
    return [
        [f"{s.time / 3600:.1f}", s.requested_idle, s.glideins_queued, s.pilots_running, s.pilots_idle,
         s.pilots_failed, s.jobs_idle, s.jobs_running, s.jobs_done, s.overflowed]
        for s in picked
    ]  # fmt: skip


def _summary(report: Report) -> list[tuple[str, str]]:
    w = report.wait_s
    return [
        ("jobs done / started / never started", f"{report.jobs_done:,} / {report.jobs_started:,} / {report.jobs_never_started:,}"),
        ("jobs restarted (pilot wall-clock limit)", f"{report.jobs_restarted:,}"),
        ("job wait p50 / p90 / p99 / max", " / ".join(_duration(w.get(k)) for k in ("p50", "p90", "p99", "max"))),
        ("pilots started / failed validation / cancelled while queued", f"{report.pilots_started:,} / {report.pilots_failed:,} / {report.pilots_cancelled:,}"),
        ("pilot core-hours / busy / wasted", f"{report.pilot_hours:,.0f} / {report.busy_hours:,.0f} / {report.wasted_pilot_hours:,.0f}"),
        ("pilot efficiency", f"{report.efficiency:.1%}"),
        ("overflowed jobs", f"{report.overflowed_jobs:,}"),
        ("largest idle request in one cycle", f"{report.max_requested_idle:,}"),
        ("simulated in", f"{report.wall_s:.1f} s ({report.events:,} events)"),
    ]  # fmt: skip


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def print_report(report: Report) -> None:
    print(
        f"{report.sites} sites, {report.cores:,} cores, {report.jobs:,} jobs, {report.hours:g} simulated hours, "
        f"a frontend cycle every {report.cycle_s:g} s\n"
    )
    print(render_table(TIMELINE, _timeline_rows(report), right=tuple(range(len(TIMELINE)))))
    print()
    for label, value in _summary(report):
        print(f"{label + ':':<62} {value}")
    if report.overflowed_by_home:
        top = sorted(report.overflowed_by_home.items(), key=lambda kv: -kv[1])[:10]
        print(f"{'overflowed per home site:':<62} " + ", ".join(f"{k} {v:,}" for k, v in top))


def compare(first: Report, second: Report, first_name: str, second_name: str) -> None:
    """Two configs on the same sites and workload, side by side."""
    print(
        f"{first.sites} sites, {first.cores:,} cores, {first.jobs:,} jobs, {first.hours:g} simulated hours\n"
    )
    rows = [[label, a, b] for (label, a), (_, b) in zip(_summary(first), _summary(second), strict=True)]
    print(render_table(["", first_name, second_name], rows))
    print()
    headers = ["HOUR"] + [f"{h} ({n})" for n in ("A", "B") for h in ("PILOTS", "JOBS IDLE", "DONE")]
    a_rows, b_rows = _timeline_rows(first), _timeline_rows(second)
    merged = [[a[0], a[3], a[6], a[8], b[3], b[6], b[8]] for a, b in zip(a_rows, b_rows, strict=False)]
    print(f"A = {first_name}, B = {second_name}")
    print(render_table(headers, merged, right=tuple(range(7))))
