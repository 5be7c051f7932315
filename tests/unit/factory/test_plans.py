"""The numbers: what a (entry, client) gets this cycle, and the glidein state table."""

from __future__ import annotations

import pytest

from factory.config import Limits
from factory.glideins import ALLOWED, GLIDEIN_STATES, LIVE, TERMINAL, GlideinState, is_stale
from factory.limits import Counts, Request, plan
from updraft.core.errors import IllegalTransition

NO_LIMITS = Limits()


def request(idle: int, max_glideins: int = 100, remove: str = "NO", margin: int = 0) -> Request:
    return Request("E", "fe.g", "fe", idle, max_glideins, remove, margin)


@pytest.mark.parametrize(
    "req, client, entry_limits, client_limits, budget, submit, reason",
    [
        # requested idle minus idle at the site
        (request(5), Counts(queued=2), NO_LIMITS, NO_LIMITS, 50, 3, None),
        (request(5), Counts(unsubmitted=1, queued=4), NO_LIMITS, NO_LIMITS, 50, 0, None),
        (request(5), Counts(running=10), NO_LIMITS, NO_LIMITS, 50, 5, None),
        # the request's own maximum counts every glidein of the client
        (request(5, max_glideins=12), Counts(running=10), NO_LIMITS, NO_LIMITS, 50, 2, "request max (12)"),
        (request(0, max_glideins=0), Counts(), NO_LIMITS, NO_LIMITS, 50, 0, None),
        # entry limits
        (request(9), Counts(), Limits(max_glideins=4), NO_LIMITS, 50, 4, "entry max_glideins (4)"),
        (request(9), Counts(queued=1), Limits(max_idle=3), NO_LIMITS, 50, 2, "entry max_idle (3)"),
        (request(9), Counts(held=2), Limits(max_held=2), NO_LIMITS, 50, 0, "entry max_held (2, 2 held)"),
        # the frontend's limits
        (request(9), Counts(running=3), NO_LIMITS, Limits(max_glideins=5), 50, 2, "frontend max_glideins (5)"),
        # glideins being removed still count against the limits, not as idle
        (request(3), Counts(removing=4), Limits(max_glideins=5), NO_LIMITS, 50, 1, "entry max_glideins (5)"),
        # the cycle's pace
        (request(90), Counts(), NO_LIMITS, NO_LIMITS, 7, 7, "submission pace of the cycle"),
        (request(90), Counts(), NO_LIMITS, NO_LIMITS, 0, 0, "submission pace of the cycle"),
    ],
)  # fmt: skip
def test_submission(req, client, entry_limits, client_limits, budget, submit, reason) -> None:
    result = plan(req, client, client, entry_limits, client_limits, budget)
    assert result.submit == submit
    if reason:
        assert reason in result.reasons
    assert result.removals == 0


def test_no_request_means_no_data_never_removal() -> None:
    result = plan(None, Counts(queued=5, running=5), Counts(queued=5, running=5), NO_LIMITS, NO_LIMITS, 50)
    assert (result.submit, result.removals) == (0, 0)
    assert "no data" in result.reasons[0]


def test_downtime_stops_submission_only() -> None:
    result = plan(
        request(5, remove="IDLE"), Counts(queued=9), Counts(queued=9), NO_LIMITS, NO_LIMITS, 50, "entry down"
    )
    assert result.submit == 0
    assert result.remove_idle == 4  # removal goes on: excess is still excess


@pytest.mark.parametrize(
    "policy, margin, counts, expected",
    [
        ("NO", 0, Counts(unsubmitted=1, queued=5, running=5), (0, 0, 0)),
        ("WAIT", 0, Counts(unsubmitted=2, queued=5, running=5), (2, 0, 0)),
        ("IDLE", 0, Counts(unsubmitted=1, queued=5, running=5), (1, 4, 0)),
        ("IDLE", 2, Counts(unsubmitted=1, queued=5, running=5), (1, 2, 0)),
        ("ALL", 0, Counts(unsubmitted=1, queued=5, running=5), (1, 4, 4)),
        ("ALL", 0, Counts(queued=0, running=3), (0, 0, 1)),
    ],
)  # fmt: skip
def test_removal_follows_the_policy_unsubmitted_then_idle_then_running(
    policy, margin, counts, expected
) -> None:
    result = plan(Request("E", "fe.g", "fe", 1, 2, policy, margin), counts, counts, NO_LIMITS, NO_LIMITS, 50)
    assert (result.remove_unsubmitted, result.remove_idle, result.remove_running) == expected


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
