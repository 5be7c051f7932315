"""The numbers: what a (entry, client) gets this cycle, beside what glideinWMS's factory does
(glideFactoryLib.keepIdleGlideins, clean_glidein_queue, GlideinTotals), and the glidein state table."""

from __future__ import annotations

import pytest

from factory.config import Limits, Pacing, default_frontend_limits, entry_limits
from factory.glideins import ALLOWED, GLIDEIN_STATES, LIVE, TERMINAL, GlideinState, is_stale
from factory.limits import Counts, Request, plan
from updraft.core.errors import IllegalTransition

NO_LIMITS = Limits()
PACE = Pacing()


def request(idle: int, max_glideins: int = 100, remove: str = "NO", margin: int = 0) -> Request:
    return Request("E", "fe.g", "fe", idle, max_glideins, remove, margin)


def plan_one(
    req: Request,
    client: Counts,
    entry_lim: Limits = NO_LIMITS,
    fe_lim: Limits = NO_LIMITS,
    pace: Pacing = PACE,
    downtime: str | None = None,
):
    return plan(req, client, client, client, entry_lim, fe_lim, pace, downtime)


# (what, request, client's glideins, entry limits, frontend limits, pacing, glideinWMS submits, Updraft submits, reason)
SUBMISSIONS = [
    ("requested idle minus idle at the site", request(5), Counts(queued=2), NO_LIMITS, NO_LIMITS, PACE, 3, 3, None),
    ("unsubmitted ones are idle too", request(5), Counts(unsubmitted=1, queued=4), NO_LIMITS, NO_LIMITS, PACE, 0, 0, None),
    ("the frontend's 33 over 30 queued (none registered): 3", request(33, 115), Counts(queued=30), NO_LIMITS, NO_LIMITS, PACE, 3, 3, None),
    ("idle + running stay within the request's max", request(5, max_glideins=12), Counts(running=10), NO_LIMITS, NO_LIMITS, PACE, 2, 2, "request max (12)"),
    ("held glideins do not count against the request's max", request(5, max_glideins=12), Counts(running=5, held=20), NO_LIMITS, NO_LIMITS, PACE, 5, 5, None),
    ("max 0 asks for nothing", request(3, max_glideins=0), Counts(), NO_LIMITS, NO_LIMITS, PACE, 0, 0, "request max (0)"),
    ("entry max_glideins counts idle + running", request(9), Counts(running=2), Limits(max_glideins=4), NO_LIMITS, PACE, 2, 2, "entry max_glideins (4)"),
    ("entry max_idle", request(9), Counts(queued=1), Limits(max_idle=3), NO_LIMITS, PACE, 2, 2, "entry max_idle (3)"),
    ("entry max_held reached: nothing", request(9), Counts(held=2), Limits(max_held=2), NO_LIMITS, PACE, 0, 0, "entry max_held (2, 2 held)"),
    ("glideinWMS's per-frontend defaults: 60 held of 50", request(10), Counts(held=60), NO_LIMITS, default_frontend_limits(), PACE, 0, 0, "frontend max_held (50, 60 held)"),
    ("per-frontend idle default 100", request(100), Counts(queued=40), NO_LIMITS, default_frontend_limits(), PACE, 60, 60, None),
    ("the pace is per request: 100 a cycle", request(300, 1000), Counts(), NO_LIMITS, NO_LIMITS, PACE, 100, 100, "submission pace (100 per request per cycle)"),
    ("glideins being removed still count against max_glideins (Updraft)", request(3), Counts(removing=4), Limits(max_glideins=5), NO_LIMITS, PACE, 3, 1, "entry max_glideins (5)"),
]  # fmt: skip


@pytest.mark.parametrize(
    "what, req, client, entry_lim, fe_lim, pace, gwms, updraft, reason",
    SUBMISSIONS,
    ids=[r[0][:40] for r in SUBMISSIONS],
)
def test_submission(what, req, client, entry_lim, fe_lim, pace, gwms, updraft, reason) -> None:
    result = plan_one(req, client, entry_lim, fe_lim, pace)
    assert result.submit == updraft, result.reasons
    if "(Updraft)" not in what:
        assert updraft == gwms
    if reason:
        assert reason in result.reasons
    assert result.removals == 0


def test_entry_limits_cover_every_client() -> None:
    """glideinWMS's entry defaults: 2,000 idle at the entry, from anyone, is the end."""
    result = plan(request(100), Counts(), Counts(), Counts(queued=2000), entry_limits(), NO_LIMITS, PACE)
    assert result.submit == 0 and "entry max_idle (2000, reached)" in result.reasons


def test_per_frontend_limits_cover_all_its_groups() -> None:
    """One frontend, two groups asking 100 each at one entry: glideinWMS gives 100 + 0."""
    frontend = Counts()
    limits = default_frontend_limits()
    first = plan(Request("E", "fe.a", "fe", 100, 200), Counts(), frontend, frontend, NO_LIMITS, limits, PACE)
    frontend.unsubmitted += first.submit
    second = plan(Request("E", "fe.b", "fe", 100, 200), Counts(), frontend, frontend, NO_LIMITS, limits, PACE)
    assert (first.submit, second.submit) == (100, 0)
    assert "frontend max_idle (100, reached)" in second.reasons


def test_no_request_means_no_data_never_removal() -> None:
    result = plan_one(None, Counts(queued=5, running=5))
    assert (result.submit, result.removals) == (0, 0)
    assert "no data" in result.reasons[0]


def test_downtime_stops_submission_only() -> None:
    result = plan_one(request(5, remove="IDLE"), Counts(queued=9), downtime="entry down")
    assert result.submit == 0
    assert result.remove_idle == 4  # removal goes on: excess is still excess


@pytest.mark.parametrize(
    "policy, margin, counts, max_glideins, expected",
    [
        ("NO", 0, Counts(unsubmitted=1, queued=5, running=5), 2, (0, 0, 0, 0)),
        # WAIT: the unsubmitted only
        ("WAIT", 0, Counts(unsubmitted=2, queued=5, running=5), 2, (2, 0, 0, 0)),
        ("WAIT", 0, Counts(queued=5, running=5), 2, (0, 0, 0, 0)),
        # IDLE: unsubmitted first and no more that cycle; then the queued
        ("IDLE", 0, Counts(unsubmitted=1, queued=5, running=5), 2, (1, 0, 0, 0)),
        ("IDLE", 0, Counts(queued=5, running=5), 2, (0, 4, 0, 0)),
        ("IDLE", 2, Counts(queued=5, running=5), 2, (0, 2, 0, 0)),
        # ALL: running beyond the max, held with them, at most 5 a cycle
        ("ALL", 0, Counts(queued=0, running=3), 2, (0, 0, 1, 0)),
        ("ALL", 0, Counts(running=120), 100, (0, 0, 5, 0)),
        ("ALL", 0, Counts(running=3, held=4), 2, (0, 0, 1, 4)),
        ("ALL", 0, Counts(held=3), 0, (0, 0, 0, 3)),
        ("ALL", 0, Counts(running=100), 100, (0, 0, 0, 0)),  # the busy ones the frontend keeps
    ],
)  # fmt: skip
def test_removal_as_clean_glidein_queue_does_it(policy, margin, counts, max_glideins, expected) -> None:
    result = plan_one(
        Request("E", "fe.g", "fe", 1 if max_glideins else 0, max_glideins, policy, margin), counts
    )
    assert (
        result.remove_unsubmitted,
        result.remove_idle,
        result.remove_running,
        result.remove_held,
    ) == expected


def test_sixty_cycles_at_a_site_that_starts_thirty_a_cycle() -> None:
    """10,000 idle jobs; the site starts 30 queued glideins a cycle; each becomes a busy pilot.

    glideinWMS keeps 100 glideins queued (the frontend asks 100, the factory tops up) and so has
    30 x 60 = 1,800 running after 60 cycles; Updraft, frontend and factory together, the same.
    """
    from frontend.config import FrontendLimits, GroupConfig
    from frontend.policy import EntryCounts, Levels, Totals, decide

    group = GroupConfig(name="g")
    group.settle()
    queued = running = 0
    for _ in range(60):
        counts = EntryCounts(
            idle_jobs=10000 - running, running_jobs=running, busy_slots=running, glideins_queued=queued
        )
        levels = Levels(Totals(running, 0), Totals(running, 0), Totals(running, 0))
        decision = decide(counts, levels, group, FrontendLimits())
        client = Counts(queued=queued, running=running)
        result = plan(
            Request("E", "fe.g", "fe", decision.idle, decision.max_run), client, client, client,
            entry_limits(), default_frontend_limits(), PACE,
        )  # fmt: skip
        queued += result.submit
        started = min(30, queued)
        queued, running = queued - started, running + started
    assert running == 1800
    assert queued == 70  # topped up to 100, 30 of them started this cycle


def test_state_table() -> None:
    assert {GlideinState.COMPLETED, GlideinState.FAILED, GlideinState.REMOVED, GlideinState.LOST} == TERMINAL
    assert {GlideinState.UNSUBMITTED, GlideinState.QUEUED, GlideinState.RUNNING, GlideinState.HELD} == LIVE
    for state in TERMINAL:
        assert not ALLOWED[state]
        with pytest.raises(IllegalTransition):
            GLIDEIN_STATES.advance(state, GlideinState.RUNNING, "g1")
    assert GLIDEIN_STATES.advance(GlideinState.QUEUED, GlideinState.RUNNING, "g1") == GlideinState.RUNNING
    assert (
        GLIDEIN_STATES.advance(GlideinState.HELD, GlideinState.QUEUED, "g1") == GlideinState.QUEUED
    )  # released
    # a late answer that would move a glidein backwards is stale
    assert is_stale(GlideinState.RUNNING, GlideinState.QUEUED)
    assert is_stale(GlideinState.QUEUED, GlideinState.UNSUBMITTED)
    assert not is_stale(GlideinState.HELD, GlideinState.QUEUED) and not is_stale(
        GlideinState.RUNNING, GlideinState.HELD
    )
