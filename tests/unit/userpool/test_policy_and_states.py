import pytest

from updraft.core import classads
from updraft.core.errors import IllegalTransition
from updraft.core.protocol import JobStatus
from userpool import policy
from userpool.jobs import ALLOWED, JOB_STATES, TERMINAL


def test_state_table() -> None:
    assert {JobStatus.REMOVED, JobStatus.COMPLETED} == TERMINAL
    JOB_STATES.advance(JobStatus(1), JobStatus(2), "1.0")
    with pytest.raises(IllegalTransition, match="COMPLETED to RUNNING"):
        JOB_STATES.advance(JobStatus(4), JobStatus(2), "1.0")
    assert all(isinstance(s, JobStatus) for s in ALLOWED)


@pytest.mark.parametrize(
    ("ad", "action"),
    [
        ("[ExitCode = 0]", "complete"),
        ("[ExitCode = 3; OnExitHold = ExitCode == 3]", "hold"),
        ("[ExitCode = 1; OnExitRemove = ExitCode == 0]", "requeue"),
        ("[ExitCode = 1; OnExitRemove = NoSuch > 1]", "hold"),
        (
            "[ExitCode = 1; NumJobCompletions = 3; JobMaxRetries = 2; OnExitRemove = NumJobCompletions > JobMaxRetries || ExitCode is 0]",
            "complete",
        ),
    ],
)
def test_on_exit(ad: str, action: str) -> None:
    assert policy.on_exit(classads.ClassAd(ad)).action == action


def test_hold_reasons() -> None:
    decision = policy.on_exit(
        classads.ClassAd(
            '[ExitCode = 3; OnExitHold = ExitCode == 3; OnExitHoldReason = strcat("code ", ExitCode); OnExitHoldSubCode = 7]'
        )
    )
    assert (decision.reason, decision.code, decision.subcode) == ("code 3", 3, 7)
    undefined = policy.periodic_decision(classads.ClassAd("[PeriodicHold = NoSuch > 3]"), "PeriodicHold")
    assert undefined is not None and undefined.code == 5
    assert policy.periodic_decision(classads.ClassAd("[PeriodicHold = false]"), "PeriodicHold") is None
