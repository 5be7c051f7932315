"""The glidein state machine: the only place its transitions are written.

States are ordered (unsubmitted < queued < running < the ends); a status report that would
move a glidein backwards is stale and is ignored, never applied (RADICAL-Pilot's ordered
states).  Held is a side state a glidein can enter from queued or running and leave again.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from updraft.core.states import StateMachine


class GlideinState(enum.StrEnum):
    UNSUBMITTED = "unsubmitted"  # in the journal before the site was asked: it may or may not be there
    QUEUED = "queued"  # the site has it and has not started it (idle at the site)
    RUNNING = "running"  # the batch job runs: the pilot validates or serves
    HELD = "held"  # the site holds it (recoverable or not, per the native reason)
    COMPLETED = "completed"  # ended at the site by itself
    FAILED = "failed"  # the site refused or failed it; or it never reached the site
    REMOVED = "removed"  # we cancelled it and the site confirmed
    LOST = "lost"  # the site no longer knows it and the journal cannot say how it ended


ALLOWED: Mapping[GlideinState, frozenset[GlideinState]] = {
    GlideinState.UNSUBMITTED: frozenset(
        {
            GlideinState.QUEUED,
            GlideinState.RUNNING,
            GlideinState.HELD,
            GlideinState.COMPLETED,
            GlideinState.FAILED,
            GlideinState.REMOVED,
            GlideinState.LOST,
        }
    ),
    GlideinState.QUEUED: frozenset(
        {
            GlideinState.RUNNING,
            GlideinState.HELD,
            GlideinState.COMPLETED,
            GlideinState.FAILED,
            GlideinState.REMOVED,
            GlideinState.LOST,
        }
    ),
    GlideinState.RUNNING: frozenset(
        {
            GlideinState.HELD,
            GlideinState.COMPLETED,
            GlideinState.FAILED,
            GlideinState.REMOVED,
            GlideinState.LOST,
        }
    ),
    GlideinState.HELD: frozenset(
        {
            GlideinState.QUEUED,
            GlideinState.RUNNING,
            GlideinState.COMPLETED,
            GlideinState.FAILED,
            GlideinState.REMOVED,
            GlideinState.LOST,
        }
    ),
    GlideinState.COMPLETED: frozenset(),
    GlideinState.FAILED: frozenset(),
    GlideinState.REMOVED: frozenset(),
    GlideinState.LOST: frozenset(),
}
TERMINAL = frozenset(state for state, following in ALLOWED.items() if not following)
LIVE = frozenset(GlideinState) - TERMINAL
_ORDER = {GlideinState.UNSUBMITTED: 0, GlideinState.QUEUED: 1, GlideinState.HELD: 1, GlideinState.RUNNING: 2}


#: the only way a glidein's state changes (Journal.transition)
GLIDEIN_STATES = StateMachine("glidein", ALLOWED)


def is_stale(current: GlideinState, new: GlideinState) -> bool:
    """A report that would go backwards (running -> queued): ignore it, the site answered late."""
    if new == GlideinState.HELD or current == GlideinState.HELD:
        return False
    return new in _ORDER and current in _ORDER and _ORDER[new] < _ORDER[current]
