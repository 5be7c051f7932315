"""From what the frontend saw to what it asks for: the part of a cycle without any I/O.

The live frontend fills an Observation from the pool each cycle; the simulator fills one
from its simulated sites.  Both then call ``Planner.plan`` — the same matching, the same
request math, the same removal hysteresis.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from frontend.config import FrontendLimits, GroupConfig
from frontend.matching import Entry, Matcher, demand
from frontend.overflow import OverflowReport
from frontend.policy import Decision, EntryCounts, Levels, RemovalTracker, Totals, decide
from updraft.core import classads


@dataclass
class GroupData:
    """What one group saw this cycle (None: the query failed)."""

    kinds: list[Any] | None = None
    running: dict[str, float] | None = None  # entry name -> running jobs in pilot units


@dataclass
class Observation:
    entries: list[Entry] | None = None
    glideins: dict[tuple[str, str], dict[str, int]] | None = None  # (entry name, group) -> factory counts
    pilots: dict[tuple[str, str], Counter[str]] | None = None  # (entry name, group) -> idle/busy/other/failed
    pool_slots: Totals | None = None  # every slot in the pool, other frontends' included (None: ours only)
    factories_seen: list[str] = field(default_factory=list)  # every factory advertising, whoever it allows
    groups: dict[str, GroupData] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def complete(self, group: str) -> bool:
        data = self.groups.get(group)
        return (
            self.entries is not None and self.glideins is not None and self.pilots is not None
            and data is not None and data.kinds is not None and data.running is not None
        )  # fmt: skip


@dataclass
class EntryRecord:
    entry: str
    site: str
    factory: str
    down: bool
    counts: EntryCounts
    decision: Decision
    quiet_cycles: int


@dataclass
class GroupRecord:
    name: str
    complete: bool
    errors: dict[str, str]
    unmatched: dict[str, int] = field(default_factory=dict)
    overflow: OverflowReport | None = None
    entries: dict[str, EntryRecord] = field(default_factory=dict)
    match_evaluations: int = 0
    factories_seen: list[str] = field(default_factory=list)


def _totals(pilots: dict[tuple[str, str], Counter[str]], group: str | None = None) -> Totals:
    """Registered slots (idle, busy and other; failed validations are not slots) of a group or of all."""
    out = Totals()
    for (_entry, owner), counter in pilots.items():
        if group is None or owner == group:
            out.slots += counter["idle"] + counter["busy"] + counter["other"]
            out.idle_slots += counter["idle"]
    return out


class Planner:
    def __init__(self) -> None:
        self.removal = RemovalTracker()
        self._matchers: dict[str, tuple[tuple[Any, ...], Matcher]] = {}
        self.last_entries: list[Entry] = []  # what to show when the factories' ads could not be read

    def matcher(self, group: GroupConfig, entries: list[Entry]) -> Matcher:
        """The group's matcher, kept (with its cache) while nothing it reads has changed."""
        own, target = classads.references(group.match_expr)
        refs = sorted(own | target | classads.references(group.factory_constraint)[0])
        fingerprint = (
            group.match_expr, group.factory_constraint, tuple(group.job_refs),
            tuple((e.name, e.cpus, tuple(e.texts.get(r) for r in refs)) for e in entries),
        )  # fmt: skip
        known = self._matchers.get(group.name)
        if known is not None and known[0] == fingerprint:
            down = {e.name: e.down for e in entries}
            for entry in known[1].entries:
                entry.down = down.get(entry.name, entry.down)
            return known[1]
        matcher = Matcher(group, entries)
        self._matchers[group.name] = (fingerprint, matcher)
        return matcher

    def plan(
        self, observation: Observation, groups: list[GroupConfig], frontend_limits: FrontendLimits,
        reports: dict[str, OverflowReport] | None = None, ignore_down_entries: bool = False,
        frontend_down: str = "",
    ) -> dict[str, GroupRecord]:  # fmt: skip
        """The requests of every (group, entry) from what was observed; the removal tracker remembers."""
        reports = reports or {}
        records: dict[str, GroupRecord] = {}
        per_group: dict[str, dict[str, EntryCounts]] = {}
        matchers: dict[str, Matcher] = {}
        for group in groups:
            record = records[group.name] = GroupRecord(
                group.name,
                observation.complete(group.name),
                dict(observation.errors),
                overflow=reports.get(group.name),
            )
            entries = observation.entries if observation.entries is not None else self.last_entries
            record.factories_seen = list(observation.factories_seen)
            if not entries:  # nothing to ask: say how much demand waits for an entry
                kinds = observation.groups.get(group.name, GroupData()).kinds or []
                record.unmatched = {"idle": sum(k.idle for k in kinds), "down_only": 0}
                continue
            matcher = matchers[group.name] = self.matcher(group, entries)
            data = observation.groups.get(group.name, GroupData())
            ignore_down = (
                group.ignore_down_entries if group.ignore_down_entries is not None else ignore_down_entries
            )
            counts, record.unmatched = demand(matcher, data.kinds or [], ignore_down)
            for entry in matcher.entries:
                entry_counts = counts[entry.name]
                entry_counts.running_jobs = (data.running or {}).get(entry.name, 0.0)
                factory = (observation.glideins or {}).get((entry.name, group.name), {})
                entry_counts.glideins_queued = factory.get("StatusIdle", 0) + factory.get(
                    "StatusUnsubmitted", 0
                )
                entry_counts.glideins_running = factory.get("StatusRunning", 0)
                entry_counts.glideins_held = factory.get("StatusHeld", 0)
                pilots = (observation.pilots or {}).get((entry.name, group.name), Counter())
                entry_counts.idle_slots, entry_counts.busy_slots = pilots["idle"], pilots["busy"]
                entry_counts.other_slots, entry_counts.failed_pilots = pilots["other"], pilots["failed"]
            per_group[group.name] = counts
            record.match_evaluations = matcher.evaluations
        if observation.entries is not None:
            self.last_entries = observation.entries
        pilots = observation.pilots or {}
        frontend_totals = _totals(pilots)
        pool_totals = observation.pool_slots if observation.pool_slots is not None else frontend_totals
        for group in groups:
            record = records[group.name]
            matcher = matchers.get(group.name)
            if matcher is None:
                continue
            levels = Levels(_totals(pilots, group.name), frontend_totals, pool_totals)
            for entry in matcher.entries:
                counts = per_group[group.name][entry.name]
                key = (entry.name, group.name)
                history = self.removal.observe(key, counts, record.complete)
                removal = self.removal.choose(key, group.removal) if record.complete else ("NO", 0, False)
                down = frontend_down or ("the entry is in downtime" if entry.down else "")
                decision = decide(counts, levels, group, frontend_limits, removal, down)
                decision.removal = self.removal.counters(key)
                record.entries[entry.name] = EntryRecord(
                    entry.name, entry.site, entry.factory, entry.down, counts, decision, history.idle0
                )
        return records
