"""What a running DAG tells its user, in DAGMan's formats: dagman.out, the job state log, the node
status file, the DOT file, the metrics file and the DAG job's own DAG_* attributes.

Tools read these files (Pegasus the job state log, monitoring scripts the node status file
and dagman.out's status table, users ``tail -f`` on dagman.out), so their shapes follow
HTCondor's manual ("Informational Files", "DAG Monitoring") line for line where it gives them.
Every file is the engine's own, written as the DAG's owner.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable

import updraft
from userpool.dag.engine import Engine
from userpool.dag.model import Dag, NodeKind
from userpool.dag.noderun import STATUS_NUMBERS, NodeState


def _stamp(now: float | None = None) -> str:
    return time.strftime("%m/%d/%y %H:%M:%S", time.localtime(now))


class DagmanOut:
    """``file.dag.dagman.out``: appended, one stamped line each, flushed as written (users tail it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        self.handle = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def line(self, text: str) -> None:
        stamp = _stamp()
        for part in str(text).splitlines() or [""]:
            self.handle.write(f"{stamp} {part}\n")

    def status(self, engine: Engine) -> None:
        """DAGMan's status table (scripts grep it: "Done Pre Queued Post Ready Un-Ready Failed Futile")."""
        counts = engine.counts()
        self.line(f"DAG status: {int(engine.status)} (DAG_STATUS_{engine.status.name})")
        self.line(f"Of {len(engine.runs)} nodes total:")
        self.line(" Done     Pre   Queued    Post   Ready   Un-Ready   Failed   Futile")
        self.line("  ===     ===      ===     ===     ===        ===      ===      ===")
        self.line(
            f"{counts[NodeState.DONE]:5d}   {counts[NodeState.PRERUN]:5d}    {counts[NodeState.SUBMITTED]:5d}   "
            f"{counts[NodeState.POSTRUN]:5d}   {counts[NodeState.READY]:5d}      {counts[NodeState.NOT_READY]:5d}    "
            f"{counts[NodeState.FAILED]:5d}    {counts[NodeState.FUTILE]:5d}"
        )
        self.line(f"{engine.held_procs()} job proc(s) currently held")

    def close(self) -> None:
        self.handle.close()


class JobstateLog:
    """JOBSTATE_LOG: ``timestamp NodeName EVENT CondorID JobTag - SequenceNumber`` (for Pegasus)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sequence: dict[str, int] = {}
        self._next = 0

    def _write(self, text: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, f"{int(time.time())} {text}\n".encode())
        finally:
            os.close(fd)

    def internal(self, what: str) -> None:
        self._write(f"INTERNAL *** {what} ***")

    def attempt(self, node: str) -> None:
        """A node's new attempt (first run or retry): its sequence number goes up."""
        self._next += 1
        self.sequence[node] = self._next

    def node(self, node: str, event: str, condor_id: str = "-") -> None:
        self._write(f"{node} {event} {condor_id or '-'} - - {self.sequence.get(node, 0)}")


def node_status_text(engine: Engine, dag_files: Iterable[str], next_update: float) -> str:
    """NODE_STATUS_FILE: a DagStatus ad, a NodeStatus ad per node, a StatusEnd ad (new ClassAd syntax)."""
    now = int(time.time())
    counts = engine.counts()
    files = ", ".join(json.dumps(name) for name in dag_files)
    ads = [
        "[",
        '  Type = "DagStatus";',
        f"  DagFiles = {{ {files} }};",
        f"  Timestamp = {now};",
        f"  DagStatus = {int(engine.status)};",
        f"  NodesTotal = {len(engine.runs)};",
        f"  NodesDone = {counts[NodeState.DONE]};",
        f"  NodesPre = {counts[NodeState.PRERUN]};",
        f"  NodesQueued = {counts[NodeState.SUBMITTED]};",
        f"  NodesPost = {counts[NodeState.POSTRUN]};",
        f"  NodesReady = {counts[NodeState.READY]};",
        f"  NodesUnready = {counts[NodeState.NOT_READY]};",
        f"  NodesFailed = {counts[NodeState.FAILED]};",
        f"  NodesFutile = {counts[NodeState.FUTILE]};",
        f"  JobProcsHeld = {engine.held_procs()};",
        f"  JobProcsIdle = {engine.idle_procs()};",
        "]",
    ]
    for name, run in engine.runs.items():
        queued = run.procs - len(run.ended) if run.state == NodeState.SUBMITTED else 0
        ads += [
            "[",
            '  Type = "NodeStatus";',
            f"  Node = {json.dumps(name)};",
            f"  NodeStatus = {STATUS_NUMBERS[run.state]};",
            f"  StatusDetails = {json.dumps(_details(run.state, run.detail, run.idle_procs()))};",
            f"  RetryCount = {run.retry};",
            f"  JobProcsQueued = {queued};",
            f"  JobProcsHeld = {len(run.held)};",
            "]",
        ]
    ads += ["[", '  Type = "StatusEnd";', f"  EndTime = {now};", f"  NextUpdate = {int(next_update)};", "]"]
    return "\n".join(ads) + "\n"


def _details(state: NodeState, detail: str, idle: int) -> str:
    if state == NodeState.SUBMITTED:
        return "idle" if idle else "running"
    return detail if state in (NodeState.FAILED, NodeState.READY) else ""


def dot_text(dag: Dag, engine: Engine | None, include: str = "") -> str:
    """DOT: the DAG's graph for Graphviz, each node labelled with its state once the DAG runs."""
    lines = ["digraph DAG {"]
    if include:
        try:
            with open(include, encoding="utf-8") as handle:
                lines.append(handle.read().rstrip("\n"))
        except OSError:
            lines.append(f"    /* could not include {include} */")
    for name, node in dag.nodes.items():
        label = name if engine is None else f"{name} ({engine.runs[name].state.value})"
        shape = "box" if node.kind == NodeKind.SUBDAG else "ellipse"
        lines.append(f"    {json.dumps(name)} [shape={shape} label={json.dumps(label)}];")
    for name, node in dag.nodes.items():
        for child in sorted(node.children):
            lines.append(f"    {json.dumps(name)} -> {json.dumps(child)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def metrics_text(
    engine: Engine,
    dag_id: int,
    parent_id: int,
    rescue_number: int,
    started: float,
    exit_code: int,
    version: int,
) -> str:
    """``file.dag.metrics``: DAGMan's metrics (DAGMAN_METRICS_FILE_VERSION 2 by default, 1 on request)."""
    ended = time.time()
    subdags = sum(1 for run in engine.runs.values() if run.node.kind == NodeKind.SUBDAG)
    plain = len(engine.runs) - subdags
    data: dict[str, object] = {
        "client": "condor_dagman",
        "version": updraft.__version__,
        "type": "metrics",
    }
    if version >= 2:
        data["metrics_version"] = 2
    data.update(
        start_time=round(started, 3), end_time=round(ended, 3), duration=round(ended - started, 3),
        exitcode=exit_code, dagman_id=str(dag_id), parent_dagman_id=str(parent_id) if parent_id else "",
        rescue_dag_number=rescue_number,
    )  # fmt: skip
    ran = sum(engine.succeeded.values()) + sum(engine.failures.values())
    if version >= 2:
        data.update(
            has_final_node=bool(engine.dag.final), nodes=plain, nodes_failed=engine.failures[False],
            nodes_succeeded=engine.succeeded[False], dag_nodes=subdags, dag_nodes_failed=engine.failures[True],
            dag_nodes_succeeded=engine.succeeded[True], provisioner_nodes=0, service_nodes=0,
            service_nodes_failed=0, service_nodes_succeeded=0, total_nodes=len(engine.runs), total_nodes_run=ran,
            jobs_submitted=engine.jobs_submitted, jobs_succeeded=engine.jobs_completed,
            jobs_failed=engine.jobs_submitted - engine.jobs_completed,
        )  # fmt: skip
    else:
        data.update(
            jobs=plain, jobs_failed=engine.failures[False], jobs_succeeded=engine.succeeded[False],
            dag_jobs=subdags, dag_jobs_failed=engine.failures[True], dag_jobs_succeeded=engine.succeeded[True],
            total_jobs=len(engine.runs), total_jobs_run=ran,
        )  # fmt: skip
    data["DagStatus"] = int(engine.status)
    return json.dumps(data, indent=4) + "\n"


def ad_attributes(engine: Engine, recovering: bool) -> dict[str, str]:
    """The DAG job's DAG_* attributes (condor_q -l, -af and the batch view's TOTAL read them)."""
    counts = engine.counts()
    idle = engine.idle_procs()
    held = engine.held_procs()
    running = engine.running_procs()
    return {
        "DAG_Status": str(int(engine.status)),
        "DAG_InRecovery": "true" if recovering else "false",
        "DAG_AdUpdateTime": str(int(time.time())),
        "DAG_NodesTotal": str(len(engine.runs)),
        "DAG_NodesDone": str(counts[NodeState.DONE]),
        "DAG_NodesPrerun": str(counts[NodeState.PRERUN]),
        "DAG_NodesQueued": str(counts[NodeState.SUBMITTED]),
        "DAG_NodesPostrun": str(counts[NodeState.POSTRUN]),
        "DAG_NodesReady": str(counts[NodeState.READY]),
        "DAG_NodesFailed": str(counts[NodeState.FAILED]),
        "DAG_NodesUnready": str(counts[NodeState.NOT_READY]),
        "DAG_NodesFutile": str(counts[NodeState.FUTILE]),
        "DAG_JobsSubmitted": str(engine.jobs_submitted),
        "DAG_JobsCompleted": str(engine.jobs_completed),
        "DAG_JobsIdle": str(idle),
        "DAG_JobsRunning": str(running),
        "DAG_JobsHeld": str(held),
    }


def replace_file(path: str, text: str) -> None:
    """Write ``path`` whole (a reader never sees half of it): a temporary beside it, then a rename."""
    temporary = f"{path}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)
