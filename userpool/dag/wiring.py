"""What the engine asks for, carried out: submissions, scripts, removals, notes and node-log events.

The engine (engine.py) decides; this is the one place its decisions touch the world, so the
engine stays pure logic a unit test can drive with a fake of this class.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from updraft.core.payloads import ActRequest
from updraft.core.protocol import JobAction
from userpool.dag import nodeslog
from userpool.dag.knobs import Knobs
from userpool.dag.model import Dag, ScriptWhen
from userpool.dag.noderun import NodeRun, Settings, SubmitFailed
from userpool.dag.nodesubmit import NodeSubmitter
from userpool.dag.scripts import command_line

if TYPE_CHECKING:
    from userpool.dag.runner import DagRun


def settings_from(knobs: Knobs) -> Settings:
    """The engine's settings from DAGMan's knobs (their HTCondor names and defaults are in knobs.py)."""
    return Settings(
        maxjobs=knobs.number("DAGMAN_MAX_JOBS_SUBMITTED"),
        maxidle=knobs.number("DAGMAN_MAX_JOBS_IDLE"),
        maxpre=knobs.number("DAGMAN_MAX_PRE_SCRIPTS"),
        maxpost=knobs.number("DAGMAN_MAX_POST_SCRIPTS"),
        always_run_post=knobs.flag("DAGMAN_ALWAYS_RUN_POST"),
        default_priority=knobs.number("DAGMAN_DEFAULT_PRIORITY"),
        depth_first=knobs.flag("DAGMAN_SUBMIT_DEPTH_FIRST"),
        retry_node_first=knobs.flag("DAGMAN_RETRY_NODE_FIRST"),
        retry_submit_first=knobs.flag("DAGMAN_RETRY_SUBMIT_FIRST"),
        max_submit_attempts=min(16, max(1, knobs.number("DAGMAN_MAX_SUBMIT_ATTEMPTS"))),
        submits_per_pass=min(1000, max(1, knobs.number("DAGMAN_MAX_SUBMITS_PER_INTERVAL"))),
    )


class EngineActions:
    """The engine's Actions for a real DAG job."""

    def __init__(
        self, run: DagRun, dag: Dag, knobs: Knobs, owner: str, batch_name: str, environment: Mapping[str, str]
    ) -> None:
        self.run = run
        self.dag = dag
        self.iwd = os.getcwd()
        nodes_log = os.path.join(self.iwd, run.files["nodes_log"])
        self.submitter = NodeSubmitter(
            run.client, dag, run.dag_id, owner, self.iwd, nodes_log, batch_name, knobs, environment
        )
        self.nodes_log = nodes_log
        self.skips = 0

    def submit(self, node_run: NodeRun, macros: dict[str, str]) -> tuple[int, int]:
        out, jobstate = self.run.out, self.run.jobstate
        out.line(f"Submitting HTCondor Node {node_run.name} job(s)...")
        if jobstate:
            jobstate.attempt(node_run.name)
        try:
            cluster, procs = self.submitter.submit(node_run, macros)
        except SubmitFailed:
            if jobstate:
                jobstate.node(node_run.name, "SUBMIT_FAILURE")
            raise
        out.line(
            f"\tassigned HTCondor ID ({cluster}.0.0)"
            + (f" and {procs - 1} more proc(s)" if procs > 1 else "")
        )
        if jobstate:
            for proc in range(procs):
                jobstate.node(node_run.name, "SUBMIT", f"{cluster}.{proc}")
        return cluster, procs

    def run_script(self, node_run: NodeRun, when: ScriptWhen, macros: dict[str, str]) -> None:
        node = node_run.node
        directory = os.path.normpath(os.path.join(self.iwd, node.directory)) if node.directory else self.iwd
        if self.run.jobstate:
            if when == ScriptWhen.PRE:
                self.run.jobstate.attempt(node_run.name)
            self.run.jobstate.node(node_run.name, f"{when.value}_SCRIPT_STARTED")
        self.run.scripts.start(
            node_run.name, when, command_line(node.scripts[when].command, macros), directory
        )

    def remove(self, cluster: int, reason: str) -> None:
        try:
            self.run.client.act(ActRequest(JobAction.Remove.name, [str(cluster)], reason=reason))
        except Exception as exc:  # it ends anyway, or the next reconciliation sees it
            self.run.out.line(f"could not remove job cluster {cluster}: {exc}")

    def note(self, text: str) -> None:
        self.run.out.line(text)

    def record(self, node_run: NodeRun, kind: str, value: int) -> None:
        """The nodes log keeps what only the engine knows (its journal); the job state log says it too."""
        jobstate = self.run.jobstate
        if kind == "post":
            proc = max(node_run.procs - 1, 0)
            event = nodeslog.post_event(node_run.cluster, proc, node_run.name, value)
            nodeslog.append_after_end(self.nodes_log, event, node_run.cluster)
            if jobstate:
                condor_id = f"{node_run.cluster}.{proc}"
                jobstate.node(node_run.name, "POST_SCRIPT_TERMINATED", condor_id)
                jobstate.node(
                    node_run.name, "POST_SCRIPT_SUCCESS" if value == 0 else "POST_SCRIPT_FAILURE", condor_id
                )
        elif kind == "pre_skip":
            self.skips += 1
            nodeslog.append(self.nodes_log, nodeslog.pre_skip_event(node_run.name, self.skips))
        elif kind == "pre" and jobstate:
            jobstate.node(node_run.name, "PRE_SCRIPT_SUCCESS" if value == 0 else "PRE_SCRIPT_FAILURE")
        elif kind == "job" and jobstate:  # DAGMan's job state log gives the value where the id goes
            jobstate.node(node_run.name, "JOB_SUCCESS" if value == 0 else "JOB_FAILURE", str(value))
