"""The job state machine: HTCondor's JobStatus values and the only place transitions are written."""

from __future__ import annotations

from collections.abc import Mapping

from updraft.core.protocol import JobStatus
from updraft.core.states import StateMachine

IDLE, RUNNING, REMOVED, COMPLETED, HELD, TRANSFERRING_OUTPUT, SUSPENDED = (
    JobStatus.IDLE,
    JobStatus.RUNNING,
    JobStatus.REMOVED,
    JobStatus.COMPLETED,
    JobStatus.HELD,
    JobStatus.TRANSFERRING_OUTPUT,
    JobStatus.SUSPENDED,
)

#: Why each state exists:
#: IDLE - waiting for a slot; the only state the negotiator matches.
#: RUNNING - claimed by a pilot under a lease; the pilot may be downloading, running or uploading.
#: TRANSFERRING_OUTPUT - the process ended and the pilot is sending outputs back (HTCondor's 6).
#: SUSPENDED - the process tree is stopped (SIGSTOP) on the worker node but keeps its claim.
#: HELD - will not run until released; HoldReason says why (user, policy, pilot limits, errors).
#: REMOVED - the user or policy removed it; it leaves the queue once its pilot let go.
#: COMPLETED - exited and the exit policy let it leave; moves to history.
ALLOWED: Mapping[JobStatus, frozenset[JobStatus]] = {
    IDLE: frozenset({RUNNING, HELD, REMOVED}),
    RUNNING: frozenset({IDLE, TRANSFERRING_OUTPUT, COMPLETED, HELD, REMOVED, SUSPENDED}),
    TRANSFERRING_OUTPUT: frozenset({IDLE, COMPLETED, HELD, REMOVED}),
    SUSPENDED: frozenset({RUNNING, IDLE, HELD, REMOVED}),
    HELD: frozenset({IDLE, REMOVED}),
    REMOVED: frozenset(),
    COMPLETED: frozenset(),
}

TERMINAL = frozenset(state for state, following in ALLOWED.items() if not following)
#: states in which a pilot holds a claim on the job
CLAIMED = frozenset({RUNNING, TRANSFERRING_OUTPUT, SUSPENDED})


#: the only way a job's JobStatus changes (Schedd.move)
JOB_STATES = StateMachine("job", ALLOWED)
