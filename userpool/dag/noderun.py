"""What the DAG engine and its runner share: node states, DAG statuses, knobs and one node's run.

The engine (engine.py) decides; the runner, the nodes-log follower and the reports read and
carry out.  Keeping the vocabulary here lets each of them import it without the decisions, and
keeps the engine's module about the rules alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from updraft.core.states import StateMachine
from userpool.dag.model import Node, ScriptWhen


class NodeState(enum.Enum):
    NOT_READY = "not ready"  # a parent has not finished (or: the FINAL node, until the end)
    READY = "ready"  # may start once the throttles allow
    PRERUN = "pre"  # its PRE script runs (or waits for a slot, or for its DEFER time)
    SUBMITTED = "queued"  # its job is in the queue
    POSTRUN = "post"  # its POST script runs (or waits for a slot or its DEFER time)
    DONE = "done"
    FAILED = "failed"  # failed, with no retry left
    FUTILE = "futile"  # an ancestor failed: it can never run


#: why each state exists is above; a retried node goes back to READY
NODE_STATES = StateMachine(
    "node",
    {
        # a recovering engine finds a node queued, ended or waiting for its POST script
        NodeState.NOT_READY: {
            NodeState.READY,
            NodeState.DONE,
            NodeState.FUTILE,
            NodeState.FAILED,
            NodeState.SUBMITTED,
            NodeState.POSTRUN,
        },
        NodeState.READY: {
            NodeState.PRERUN,
            NodeState.SUBMITTED,
            NodeState.POSTRUN,
            NodeState.DONE,
            NodeState.FAILED,
        },
        NodeState.PRERUN: {
            NodeState.SUBMITTED,
            NodeState.POSTRUN,
            NodeState.DONE,
            NodeState.FAILED,
            NodeState.READY,
        },
        NodeState.SUBMITTED: {NodeState.POSTRUN, NodeState.DONE, NodeState.FAILED, NodeState.READY},
        NodeState.POSTRUN: {NodeState.DONE, NodeState.FAILED, NodeState.READY},
        NodeState.DONE: set(),
        NodeState.FAILED: set(),
        NodeState.FUTILE: set(),
    },
)
ACTIVE = frozenset({NodeState.PRERUN, NodeState.SUBMITTED, NodeState.POSTRUN})
ENDED = frozenset({NodeState.DONE, NodeState.FAILED, NodeState.FUTILE})
#: NODE_STATUS_FILE's NodeStatus numbers
STATUS_NUMBERS = {
    NodeState.NOT_READY: 0, NodeState.READY: 1, NodeState.PRERUN: 2, NodeState.SUBMITTED: 3,
    NodeState.POSTRUN: 4, NodeState.DONE: 5, NodeState.FAILED: 6, NodeState.FUTILE: 7,
}  # fmt: skip


class DagStatus(enum.IntEnum):
    """$DAG_STATUS (and the DAG job's DAG_Status): HTCondor's values."""

    OK = 0
    ERROR = 1
    NODE_FAILED = 2
    ABORT = 3
    RM = 4
    CYCLE = 5
    HALTED = 6


# $RETURN values DAGMan uses where no job exit value exists
RETURN_SUBMIT_FAILED = -1001
RETURN_JOB_ABORTED = -1002
RETURN_JOB_SKIPPED = -1004


@dataclass
class Settings:
    """The knobs the engine's decisions read (knobs.py turns a CONFIG file into these)."""

    maxjobs: int = 0  # 0: no limit
    maxidle: int = 1000
    maxpre: int = 20
    maxpost: int = 20
    always_run_post: bool = False
    default_priority: int = 0
    depth_first: bool = False
    retry_node_first: bool = False
    retry_submit_first: bool = True
    max_submit_attempts: int = 6
    submits_per_pass: int = 100


@dataclass
class NodeRun:
    """One node's progress: its attempt (retry), its job's cluster and procs, and its values."""

    node: Node
    order: int
    state: NodeState = NodeState.NOT_READY
    retry: int = 0
    parents_left: int = 0
    cluster: int = 0
    procs: int = 0
    ended: set[int] = field(default_factory=set)
    started: set[int] = field(default_factory=set)
    held: set[int] = field(default_factory=set)
    job_return: int | None = None  # the first failed proc's value, else 0 once all ended
    pre_return: int = -1
    not_before: float = 0.0  # a DEFERred script or a failed submission waits until then
    script_waiting: ScriptWhen | None = None  # its script waits for a slot or its time
    submit_attempts: int = 0
    detail: str = ""  # NODE_STATUS_FILE's StatusDetails

    @property
    def name(self) -> str:
        return self.node.name

    def idle_procs(self) -> int:
        return max(0, self.procs - len(self.started | self.ended | self.held))


@dataclass
class Attempt:
    """One attempt's job as the pool shows it after a restart: proc -> (JobStatus, value once ended)."""

    node: str
    retry: int
    cluster: int
    procs: dict[int, tuple[int, int | None]]


@dataclass
class Recovery:
    """What a recovering engine found: node jobs in the queue and history, and its nodes log."""

    attempts: list[Attempt] = field(default_factory=list)
    posts: dict[int, int] = field(default_factory=dict)  # cluster -> its POST script's value
    skipped: set[str] = field(default_factory=set)  # nodes a PRE_SKIP ended


class Actions(Protocol):
    """What the engine asks the runner to do."""

    def submit(self, run: NodeRun, macros: dict[str, str]) -> tuple[int, int]:
        """Submit the node's job; its (cluster, procs).  Raises SubmitFailed."""
        ...

    def run_script(self, run: NodeRun, when: ScriptWhen, macros: dict[str, str]) -> None:
        """Start the script; its end comes back through Engine.script_ended."""
        ...

    def remove(self, cluster: int, reason: str) -> None: ...

    def note(self, text: str) -> None:
        """A line in dagman.out."""
        ...

    def record(self, run: NodeRun, kind: str, value: int) -> None:
        """A node event of the engine's own (POST terminated, PRE_SKIP) in the nodes log and jobstate log."""
        ...


class SubmitFailed(Exception):
    """A node's job could not be submitted; ``lasting``: trying again cannot help (a bad submit file)."""

    def __init__(self, message: str, lasting: bool) -> None:
        super().__init__(message)
        self.lasting = lasting


def exit_value(ad: dict[str, object]) -> int:
    """A completed proc's value as DAGMan sees it: its exit code, or minus its signal."""
    if str(ad.get("ExitBySignal", "false")).lower() == "true":
        return -int(str(ad.get("ExitSignal", 0)))
    return int(str(ad.get("ExitCode", 0)))
