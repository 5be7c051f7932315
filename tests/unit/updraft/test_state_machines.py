"""Every state machine's table: each state reaches an end, no end has a way out, and advance
refuses what the table does not allow (the job, the glidein, the pilot, a job on a pilot)."""

from __future__ import annotations

import pytest

from factory.glideins import GLIDEIN_STATES, GlideinState
from pilot.runner import JOB_ON_PILOT_STATES, JobOnPilot
from pilot.slot import PILOT_STATES, PilotState
from updraft.core.errors import IllegalTransition
from updraft.core.protocol import JobStatus
from updraft.core.states import StateMachine
from userpool.jobs import JOB_STATES

MACHINES: list[StateMachine] = [JOB_STATES, GLIDEIN_STATES, PILOT_STATES, JOB_ON_PILOT_STATES]


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_every_state_reaches_an_end_and_no_end_has_exits(machine: StateMachine) -> None:
    assert machine.terminal, f"{machine.name} has no terminal state"
    for state in machine.states:
        assert machine.reaches_an_end(state), f"{machine.name}: {state} can never end"
    for state in machine.terminal:
        assert not machine.allowed[state]


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_advance_follows_the_table(machine: StateMachine) -> None:
    for current in machine.states:
        assert machine.advance(current, current) is current  # staying put is always allowed
        for new in machine.states - {current}:
            if machine.can(current, new):
                assert machine.advance(current, new) is new
            else:
                with pytest.raises(IllegalTransition, match="cannot go from"):
                    machine.advance(current, new, "x")


def test_the_machines_are_the_ones_the_components_use() -> None:
    assert JobStatus.COMPLETED in JOB_STATES.terminal and JobStatus.IDLE not in JOB_STATES.terminal
    assert GLIDEIN_STATES.terminal == {
        GlideinState.COMPLETED,
        GlideinState.FAILED,
        GlideinState.REMOVED,
        GlideinState.LOST,
    }
    assert PILOT_STATES.terminal == {PilotState.DONE}
    assert JOB_ON_PILOT_STATES.terminal == {JobOnPilot.DONE}
    with pytest.raises(ValueError, match="does not list"):
        StateMachine("broken", {GlideinState.QUEUED: {GlideinState.RUNNING}})
