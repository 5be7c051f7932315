"""The request math against glideinWMS's own (glideinFrontendElement.compute_glidein_min_idle,
compute_glidein_max_run, choose_remove_excess_type), proportional counting, and removal.

Each row gives glideinWMS's answer, worked out by hand from its code for the same numbers, and
Updraft's; they differ only where docs/frontend.md says why.
"""

from __future__ import annotations

import pytest

from frontend.config import (
    FrontendLimits,
    GroupConfig,
    GroupLimits,
    IdleGlideinsPerEntry,
    Removal,
    RunningGlideinsPerEntry,
)
from frontend.matching import Entry, Kind, Matcher, demand
from frontend.planner import GroupData, Observation, Planner
from frontend.policy import EntryCounts, Levels, RemovalTracker, Totals, decide
from updraft.core import classads


def group(**changes: object) -> GroupConfig:
    made = GroupConfig(name="g", **changes)
    assert made.check() is None
    made.settle()  # what the loader does after the check: the attributes the group reads
    return made


GWMS = FrontendLimits()  # glideinWMS's frontend-level defaults


def levels(
    group_slots: int = 0, group_idle: int = 0, fe: tuple[int, int] = (0, 0), pool: tuple[int, int] = (0, 0)
) -> Levels:
    """Totals at the three levels; the frontend's include the group's, the pool's the frontend's."""
    fe_totals = Totals(max(fe[0], group_slots), max(fe[1], group_idle))
    return Levels(
        Totals(group_slots, group_idle),
        fe_totals,
        Totals(max(pool[0], fe_totals.slots), max(pool[1], fe_totals.idle_slots)),
    )


# (what, counts, levels, group changes, glideinWMS idle/max run, Updraft idle/max run, limits and curbs that fire)
SCENARIOS = [
    ("queued glideins are the factory's: 100 idle jobs, 30 queued, none registered",
     EntryCounts(idle_jobs=100, glideins_queued=30), levels(), {}, (33, 115), (33, 115), set()),
    ("10,000 idle jobs at a site that starts nothing: the per-entry max, not the idle-slot max, caps",
     EntryCounts(idle_jobs=10000, glideins_queued=100), levels(), {}, (100, 11501), (100, 11501), set()),
    ("idle slots at the per-entry max: a hard stop",
     EntryCounts(idle_jobs=500, idle_slots=100), levels(100, 100), {}, (0, 460), (0, 460), {"IdleGlideinsPerEntry"}),
    ("the idle-slot max is not part of the head-room; its curb halves",
     EntryCounts(idle_jobs=200, idle_slots=95), levels(95, 95), {}, (17, 121), (17, 121), {"CurbIdleGlideinsPerEntry"}),
    ("running_glideins_per_entry.min keeps a warm pool with an empty queue",
     EntryCounts(), levels(), {"limits": GroupLimits(running_glideins_per_entry=RunningGlideinsPerEntry(min=10))}, (3, 12), (3, 12), set()),
    ("the reserve is old idle minus idle slots, over 3, at most 5",
     EntryCounts(idle_jobs=30, old_idle_jobs=30, idle_slots=6, busy_slots=4), levels(10, 6), {}, (6, 28), (6, 28), {"CurbIdleGlideinsPerEntry"}),
    ("the group's slots at its maximum",
     EntryCounts(idle_jobs=50), levels(100000, 0), {}, (0, 58), (0, 58), {"TotalGlideinsPerGroup", "TotalGlideinsPerFrontend", "TotalGlideinsGlobal"}),
    ("idle slots of other frontends count pool-wide (*_global)",
     EntryCounts(idle_jobs=60), levels(pool=(3000, 1000)), {}, (0, 70), (0, 70), {"IdleGlideinsGlobal"}),
    ("the frontend's idle curb (another group's idle slots) and the pool-wide one halve twice",
     EntryCounts(idle_jobs=60), levels(fe=(400, 200)), {}, (5, 70), (5, 70), {"CurbIdleGlideinsPerFrontend", "CurbIdleGlideinsGlobal"}),
    ("nothing idle: max running is what runs",
     EntryCounts(running_jobs=40, busy_slots=40), levels(40, 0), {}, (0, 40), (0, 40), set()),
    ("max running is not capped by the per-entry max (the factory's limits do that)",
     EntryCounts(idle_jobs=1000), levels(), {"limits": GroupLimits(running_glideins_per_entry=RunningGlideinsPerEntry(max=50))}, (16, 1151), (16, 1151), set()),
    ("held glideins are invisible to the frontend (it counts slots)",
     EntryCounts(idle_jobs=30, glideins_held=60), levels(), {}, (10, 35), (10, 35), set()),
    ("Updraft's own curb on glideins queued at the site (off unless set)",
     EntryCounts(idle_jobs=30, glideins_queued=10), levels(), {"limits": GroupLimits(idle_glideins_per_entry=IdleGlideinsPerEntry(curb=10))}, (10, 35), (5, 35), {"CurbQueuedGlideinsPerEntry"}),
]  # fmt: skip


@pytest.mark.parametrize(
    "what, counts, totals, changes, gwms, updraft, fired", SCENARIOS, ids=[row[0][:40] for row in SCENARIOS]
)
def test_requests_as_glideinwms_computes_them(what, counts, totals, changes, gwms, updraft, fired) -> None:
    decision = decide(counts, totals, group(**changes), GWMS)
    assert (decision.idle, decision.max_run) == updraft, decision.steps
    if "CurbQueued" not in "".join(fired):
        assert updraft == gwms, "a difference from glideinWMS must be documented and listed here"
    assert set(decision.limits) | set(decision.curbs) == set(fired), (decision.limits, decision.curbs)


def test_downtime_asks_for_nothing_and_lets_nothing_run() -> None:
    decision = decide(
        EntryCounts(idle_jobs=50, running_jobs=5), levels(), group(), GWMS, down="the entry is in downtime"
    )
    assert (decision.idle, decision.max_run) == (0, 0)


def test_ramp_up_attenuation_divides_the_headroom() -> None:
    assert decide(EntryCounts(idle_jobs=30), levels(), group(ramp_up_attenuation=1.0), GWMS).idle == 30
    assert decide(EntryCounts(idle_jobs=30), levels(), group(), GWMS).idle == 10


def test_removal_all_keeps_busy_pilots() -> None:
    """100 jobs running on 100 glideins, 20 idle pilots, removal ALL: max running stays 100."""
    counts = EntryCounts(running_jobs=100, busy_slots=100, idle_slots=20)
    decision = decide(counts, levels(120, 20), group(), GWMS, removal=("ALL", 0, False))
    assert (decision.idle, decision.max_run, decision.remove) == (0, 100, "ALL")
    explicit = decide(counts, levels(120, 20), group(), GWMS, removal=("ALL", 0, True))
    assert (explicit.max_run, explicit.remove_busy) == (0, True)  # only when the operator said so


def run_cycles(tracker: RemovalTracker, counts: EntryCounts, removal: Removal, cycles: int) -> list[str]:
    sent = []
    for _ in range(cycles):
        tracker.observe(("E@f", "g"), counts, complete=True)
        sent.append(tracker.choose(("E@f", "g"), removal)[0])
    return sent


@pytest.mark.parametrize(
    "counts, removal, expected",
    [
        # glideinWMS: WAIT after more than 5 cycles with no idle jobs ...
        (EntryCounts(busy_slots=3, running_jobs=3), Removal(), ["NO"] * 5 + ["WAIT"] * 7),
        # ... IDLE when also no slot has been in use for more than 10 ...
        (EntryCounts(idle_slots=3), Removal(), ["NO"] * 5 + ["WAIT"] * 5 + ["IDLE"] * 2),
        # ... ALL when also nothing has been registered for more than 10
        (EntryCounts(), Removal(), ["NO"] * 5 + ["WAIT"] * 5 + ["ALL"] * 2),
        # DISABLE turns the automatic removal off
        (EntryCounts(), Removal(policy="DISABLE"), ["NO"] * 12),
        # a configured type is sent after wait_cycles quiet cycles, the larger of the two wins
        (EntryCounts(busy_slots=3), Removal(policy="IDLE", wait_cycles=2), ["NO"] + ["IDLE"] * 11),
        (EntryCounts(), Removal(policy="WAIT", wait_cycles=1), ["WAIT"] * 10 + ["ALL"] * 2),
    ],
)  # fmt: skip
def test_automatic_and_configured_removal(counts, removal, expected) -> None:
    removal.settle()
    assert run_cycles(RemovalTracker(), counts, removal, len(expected)) == expected


def test_margin_is_sent_only_with_requests_tracking() -> None:
    tracker = RemovalTracker()
    tracker.observe(("E@f", "g"), EntryCounts(idle_jobs=5), complete=True)
    assert tracker.choose(("E@f", "g"), Removal(policy="IDLE", margin=3)) == ("NO", 0, False)
    tracked = Removal(policy="IDLE", margin=3, requests_tracking=True)
    assert tracker.choose(("E@f", "g"), tracked) == ("IDLE", 3, False)


def test_missing_data_never_counts_towards_removal() -> None:
    tracker = RemovalTracker()
    for _ in range(20):
        tracker.observe(("E@f", "g"), EntryCounts(), complete=False)
    assert tracker.choose(("E@f", "g"), Removal()) == ("NO", 0, False)


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
        Kind(
            ('"SiteB,SiteC"',), 4, idle=8
        ),  # C is down but keeps its half (glideinWMS), as 4/8 of a pilot each
        Kind(('"SiteD"',), 4, idle=5),  # too big for D's 2-core pilots: matches nothing
        Kind(('"SiteC"',), 1, idle=3),  # only a down entry
    ]
    counts, unmatched = demand(matcher, kinds)
    assert counts["A@f"].idle_jobs == pytest.approx(5.0) and counts["A@f"].old_idle_jobs == pytest.approx(2.0)
    assert counts["B@f"].idle_jobs == pytest.approx(10 * 0.5 / 8 + 8 * 0.5 * 4 / 8)
    assert counts["C@f"].idle_jobs == pytest.approx(8 * 0.5 * 4 / 8 + 3 / 8) and counts["D@f"].idle_jobs == 0
    assert unmatched == {"idle": 5, "down_only": 3}
    assert matcher.evaluations == 4 + 2 + 2 + 4  # once per kind and entry big enough for it
    # ignore_down_entries: the entries that are up share the whole job
    counts, _ = demand(matcher, kinds, ignore_down_entries=True)
    assert counts["B@f"].idle_jobs == pytest.approx(10 * 0.5 / 8 + 8 * 4 / 8)
    assert counts["C@f"].idle_jobs == 0
    assert matcher.evaluations == 4 + 2 + 2 + 4  # then from the cache


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
        record = planner.plan(broken, [wanted], GWMS)["g"]
        assert not record.complete and record.entries["A@f"].decision.remove == "NO"
    record = planner.plan(complete, [wanted], GWMS)["g"]
    assert record.complete and record.entries["A@f"].decision.remove == "IDLE"


def test_frontend_downtime_asks_every_entry_for_nothing(tmp_path) -> None:
    from frontend.downtime import active_downtime, add_downtime, end_downtime, read_downtimes

    path = tmp_path / "downtimes.json"
    assert active_downtime(path, 1000.0) is None
    made = add_downtime(path, 900.0, 0.0, "network work")
    assert active_downtime(path, 1000.0) == made and read_downtimes(path)[0].comment == "network work"
    planner = Planner()
    observation = Observation(
        entries=[entry("A", "SiteA")], glideins={}, pilots={},
        groups={"g": GroupData(kinds=[Kind((), 1, idle=50, old_idle=0)], running={"A@f": 3.0})},
    )  # fmt: skip
    record = planner.plan(observation, [group()], GWMS, frontend_down="the frontend is in downtime")["g"]
    decision = record.entries["A@f"].decision
    assert (decision.idle, decision.max_run, decision.down) == (0, 0, "the frontend is in downtime")
    end_downtime(path, made.id, 1100.0)
    assert active_downtime(path, 1200.0) is None
    path.write_text("not json")
    assert active_downtime(path, 1200.0) is not None  # a damaged file stops provisioning, never ignores it


def test_no_entry_visible_still_counts_the_demand() -> None:
    observation = Observation(
        entries=[], glideins={}, pilots={}, factories_seen=["other-factory"],
        groups={"g": GroupData(kinds=[Kind((), 1, idle=7, old_idle=0)], running={})},
    )  # fmt: skip
    record = Planner().plan(observation, [group()], GWMS)["g"]
    assert record.entries == {} and record.unmatched["idle"] == 7
    assert record.factories_seen == ["other-factory"]
