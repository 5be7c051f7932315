"""The request math for every limit and curb, proportional counting, and removal hysteresis."""

from __future__ import annotations

import pytest

from frontend.config import (
    GlobalLimits,
    GroupConfig,
    GroupLimits,
    IdleGlideinsPerEntry,
    MaxCurb,
    Removal,
    RunningGlideinsPerEntry,
)
from frontend.matching import Entry, Kind, Matcher, demand
from frontend.planner import GroupData, Observation, Planner
from frontend.policy import EntryCounts, Hysteresis, Totals, decide
from updraft.core import classads


def group(**changes: object) -> GroupConfig:
    made = GroupConfig(name="g", **{"ramp_up_attenuation": 1.0, **changes})
    assert made.check() is None
    made.settle()  # what the loader does after the check: the attributes the group reads
    return made


NO_TOTALS = Totals()
LOOSE = GlobalLimits()


def L(**changes: object) -> GroupLimits:
    """glideinWMS's limits with the curbs off, then the changes a row is about."""
    base = {
        "idle_slots_per_entry": MaxCurb(100, 0),
        "idle_slots_total": MaxCurb(1000, 0),
        "running_glideins_total": MaxCurb(100000, 0),
    }
    return GroupLimits(**{**base, **changes})


@pytest.mark.parametrize(
    "counts, limits, group_totals, global_totals, idle, fired",
    [
        # demand minus idle pilots (queued at the site + idle in the pool)
        (EntryCounts(idle_jobs=10), L(), NO_TOTALS, NO_TOTALS, 10, {}),
        (EntryCounts(idle_jobs=10, glideins_queued=3, idle_slots=2), L(), NO_TOTALS, NO_TOTALS, 5, {}),
        (EntryCounts(idle_jobs=2, glideins_queued=3), L(), NO_TOTALS, NO_TOTALS, 0, {}),
        # every limit: zero and recorded
        (EntryCounts(idle_jobs=10, glideins_running=4), L(running_glideins_per_entry=RunningGlideinsPerEntry(max=4)), NO_TOTALS, NO_TOTALS, 0, {"TotalGlideinsPerEntry"}),
        (EntryCounts(idle_jobs=10, glideins_queued=3), L(idle_slots_per_entry=MaxCurb(3, 0)), NO_TOTALS, NO_TOTALS, 0, {"IdleGlideinsPerEntry"}),
        (EntryCounts(idle_jobs=10), L(running_glideins_total=MaxCurb(50, 0)), Totals(glideins=50), NO_TOTALS, 0, {"TotalGlideinsPerGroup"}),
        (EntryCounts(idle_jobs=10), L(idle_slots_total=MaxCurb(20, 0)), Totals(idle_pilots=20), NO_TOTALS, 0, {"IdleGlideinsPerGroup"}),
        # headroom caps the request below the limits
        (EntryCounts(idle_jobs=10, glideins_running=6), L(running_glideins_per_entry=RunningGlideinsPerEntry(max=8)), NO_TOTALS, NO_TOTALS, 2, {}),
        (EntryCounts(idle_jobs=10), L(idle_slots_total=MaxCurb(7, 0)), Totals(idle_pilots=3), NO_TOTALS, 4, {}),
        # the per-entry maximum
        (EntryCounts(idle_jobs=500), L(idle_glideins_per_entry=IdleGlideinsPerEntry(max=40)), NO_TOTALS, NO_TOTALS, 40, {}),
        # reserve: a third of the old idle, at most reserve
        (EntryCounts(idle_jobs=10, old_idle_jobs=9, glideins_queued=8), L(idle_slots_per_entry=MaxCurb(100, 0)), NO_TOTALS, NO_TOTALS, 2 + 3, {}),
        (EntryCounts(idle_jobs=10, old_idle_jobs=90), L(idle_glideins_per_entry=IdleGlideinsPerEntry(reserve=5)), NO_TOTALS, NO_TOTALS, 10 + 5, {}),
        # curbs halve, each one
        (EntryCounts(idle_jobs=40, glideins_queued=5), L(idle_slots_per_entry=MaxCurb(100, 5)), NO_TOTALS, NO_TOTALS, 17, {"CurbIdleGlideinsPerEntry"}),
        (EntryCounts(idle_jobs=40, glideins_queued=5), L(idle_slots_per_entry=MaxCurb(100, 5), idle_glideins_per_entry=IdleGlideinsPerEntry(curb=5)), NO_TOTALS, NO_TOTALS, 8, {"CurbIdleGlideinsPerEntry", "CurbQueuedGlideinsPerEntry"}),
        (EntryCounts(idle_jobs=40), L(running_glideins_total=MaxCurb(1000, 100)), Totals(glideins=100), NO_TOTALS, 20, {"CurbTotalGlideinsPerGroup"}),
        (EntryCounts(idle_jobs=40), L(idle_slots_total=MaxCurb(1000, 10)), Totals(idle_pilots=10), NO_TOTALS, 20, {"CurbIdleGlideinsPerGroup"}),
        # at least one while there is demand
        (EntryCounts(idle_jobs=1.2, glideins_queued=1), L(idle_slots_per_entry=MaxCurb(100, 1)), NO_TOTALS, NO_TOTALS, 1, {"CurbIdleGlideinsPerEntry"}),
    ],
)  # fmt: skip
def test_requested_idle(counts, limits, group_totals, global_totals, idle, fired) -> None:
    decision = decide(counts, group_totals, global_totals, group(limits=limits), LOOSE)
    assert decision.idle == idle, decision.steps
    assert set(decision.limits) | set(decision.curbs) == set(fired)


def test_global_limits_and_curbs_cover_every_group() -> None:
    limits = GlobalLimits(idle_slots_total=MaxCurb(30, 10), running_glideins_total=MaxCurb(500, 100))
    decision = decide(
        EntryCounts(idle_jobs=40), NO_TOTALS, Totals(glideins=100, idle_pilots=10), group(limits=L()), limits
    )
    assert set(decision.curbs) == {"CurbTotalGlideinsGlobal", "CurbIdleGlideinsGlobal"} and decision.idle == 5
    decision = decide(EntryCounts(idle_jobs=40), NO_TOTALS, Totals(idle_pilots=30), group(limits=L()), limits)
    assert decision.idle == 0 and "IdleGlideinsGlobal" in decision.limits


def test_ramp_up_attenuation_divides_the_headroom() -> None:
    decision = decide(
        EntryCounts(idle_jobs=30), NO_TOTALS, NO_TOTALS, group(ramp_up_attenuation=3.0, limits=L()), LOOSE
    )
    assert decision.idle == 10


@pytest.mark.parametrize(
    "counts, running, expected",
    [
        (EntryCounts(idle_jobs=10, glideins_queued=2, running_jobs=5), RunningGlideinsPerEntry(), int((8 + 5) * 1.15 + 1)),
        (EntryCounts(running_jobs=5), RunningGlideinsPerEntry(), 5),  # no idle jobs: what runs, no more
        (EntryCounts(), RunningGlideinsPerEntry(min=3), 3),
        (EntryCounts(idle_jobs=1000), RunningGlideinsPerEntry(max=50), 50),
        (EntryCounts(idle_jobs=10), RunningGlideinsPerEntry(relative_to_queue=2.0), 21),
    ],
)  # fmt: skip
def test_max_running(counts: EntryCounts, running: RunningGlideinsPerEntry, expected: int) -> None:
    decision = decide(
        counts, NO_TOTALS, NO_TOTALS, group(limits=L(running_glideins_per_entry=running)), LOOSE
    )
    assert decision.max_run == expected


def test_removal_is_asked_only_when_the_hysteresis_says_so() -> None:
    removing = group(removal=Removal(policy="ALL", wait_cycles=2, margin=1))
    assert (
        decide(EntryCounts(glideins_running=4), NO_TOTALS, NO_TOTALS, removing, LOOSE, remove=False).remove
        == "NO"
    )
    decision = decide(EntryCounts(glideins_running=4), NO_TOTALS, NO_TOTALS, removing, LOOSE, remove=True)
    assert (decision.remove, decision.margin, decision.idle, decision.max_run) == ("ALL", 1, 0, 0)


def test_hysteresis_counts_quiet_cycles_and_ignores_missing_data() -> None:
    tracker = Hysteresis()
    key = ("E@f", "g")
    assert tracker.observe(key, demand=False, complete=True) == 1
    assert tracker.observe(key, demand=False, complete=False) == 1  # a failed query is not "no demand"
    assert not tracker.ready(key, 2)
    assert tracker.observe(key, demand=False, complete=True) == 2 and tracker.ready(key, 2)
    assert tracker.observe(key, demand=True, complete=True) == 0


# -- matching ------------------------------------------------------------------------------------
def entry(name: str, site: str, cpus: int = 1, down: bool = False) -> Entry:
    texts = {"Name": f'"{name}@f"', "GLIDEIN_Site": f'"{site}"', "GLIDEIN_CPUS": str(cpus)}
    return Entry(f"{name}@f", name, "f", site, cpus, down, texts, classads.build(texts))


def test_proportional_counting_by_entries_and_cores() -> None:
    wanted = group(match_expr="stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)")
    entries = [
        entry("A", "SiteA", 1),
        entry("B", "SiteB", 8),
        entry("C", "SiteC", 8, down=True),
        entry("D", "SiteD", 2),
    ]
    matcher = Matcher(wanted, entries)
    kinds = [
        Kind(
            ('"SiteA,SiteB"',), 1, idle=10, old_idle=4
        ),  # two entries: 1/2 each; at B a 1-core job is 1/8 pilot
        Kind(('"SiteB,SiteC"',), 4, idle=8),  # C is down: all of it to B, as 4/8 of a pilot each
        Kind(('"SiteD"',), 4, idle=5),  # too big for D's 2-core pilots: matches nothing
        Kind(('"SiteC"',), 1, idle=3),  # only a down entry
    ]
    counts, unmatched = demand(matcher, kinds)
    assert counts["A@f"].idle_jobs == pytest.approx(5.0) and counts["A@f"].old_idle_jobs == pytest.approx(2.0)
    assert counts["B@f"].idle_jobs == pytest.approx(10 * 0.5 / 8 + 8 * 4 / 8)
    assert counts["C@f"].idle_jobs == 0 and counts["D@f"].idle_jobs == 0
    assert unmatched == {"idle": 5, "down_only": 3}
    demand(matcher, kinds)
    assert (
        matcher.evaluations == 4 + 2 + 2 + 4
    )  # once per kind and entry big enough for it; then from the cache


def test_planner_keeps_old_requests_when_data_is_missing() -> None:
    wanted = group(removal=Removal(policy="IDLE", wait_cycles=1))
    planner = Planner()
    complete = Observation(
        entries=[entry("A", "SiteA")], glideins={}, pilots={}, groups={"g": GroupData(kinds=[], running={})}
    )
    broken = Observation(
        entries=[entry("A", "SiteA")], glideins={}, pilots={}, groups={"g": GroupData(kinds=None, running={})}
    )
    for _ in range(3):
        record = planner.plan(broken, [wanted], LOOSE)["g"]
        assert not record.complete and record.entries["A@f"].decision.remove == "NO"
    record = planner.plan(complete, [wanted], LOOSE)["g"]
    assert record.complete and record.entries["A@f"].decision.remove == "IDLE"
