"""Following a DAG's node jobs: the pool's event stream for this DAG, and what each event means.

A thread reads the pool's server-sent events filtered to this DAG (its own job and its nodes'
clusters) and puts them in the engine's inbox; the engine's thread turns each into what
DAGMan does with the same user-log event (ULOG_EXECUTE: the proc runs; ULOG_JOB_TERMINATED:
its value; ULOG_JOB_ABORTED: it failed; held and released: idle-proc accounting), writes the
``Event: ULOG_...`` line in dagman.out, and the job state log's line.  The stream is a fast
path: after a reconnection, and every half minute, the runner reads the in-flight clusters'
states from the pool and applies them through ``state`` (a repeated end changes nothing).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Protocol

from updraft.core.client import Client
from updraft.core.payloads import Event
from userpool.dag.engine import Engine
from userpool.dag.noderun import RETURN_JOB_ABORTED, exit_value

#: pool event -> (the user-log event DAGMan would see, what it means for the proc)
MEANINGS = {
    "execute": ("ULOG_EXECUTE", "started"),
    "evict": ("ULOG_JOB_EVICTED", "idle"),
    "requeue": ("ULOG_JOB_EVICTED", "idle"),
    "lease_expired": ("ULOG_JOB_RECONNECT_FAILED", "idle"),
    "claim_forgotten": ("ULOG_JOB_RECONNECT_FAILED", "idle"),
    "hold": ("ULOG_JOB_HELD", "held"),
    "release": ("ULOG_JOB_RELEASED", "idle"),
    "complete": ("ULOG_JOB_TERMINATED", "ended"),
    "remove": ("ULOG_JOB_ABORTED", "aborted"),
    "submit": ("ULOG_SUBMIT", ""),
    "suspend": ("ULOG_JOB_SUSPENDED", ""),
    "continue": ("ULOG_JOB_UNSUSPENDED", ""),
}
JOBSTATE = {
    "ULOG_EXECUTE": "EXECUTE", "ULOG_JOB_TERMINATED": "JOB_TERMINATED", "ULOG_JOB_ABORTED": "JOB_ABORTED",
    "ULOG_JOB_HELD": "JOB_HELD", "ULOG_JOB_RELEASED": "JOB_RELEASED", "ULOG_JOB_EVICTED": "JOB_EVICTED",
}  # fmt: skip


class Reporter(Protocol):
    """Where the events' lines go (the runner's dagman.out and job state log)."""

    def line(self, text: str) -> None: ...

    def jobstate_line(self, node: str, event: str, condor_id: str) -> None: ...

    def removed_by_user(self) -> None: ...


class EventFollower(threading.Thread):
    """Streams this DAG's events into the engine's inbox, reconnecting (and saying so) when cut off."""

    def __init__(self, dag_id: int, inbox: queue.Queue[Any]) -> None:
        super().__init__(name="dag-events", daemon=True)
        self.dag_id = dag_id
        self.inbox = inbox
        self.after = -1
        self.reconnected = False

    def run(self) -> None:
        pause = 0.2
        while True:
            try:
                client = Client.from_environment(timeout=60.0)
                for event in client.stream_events(self.after, timeout=60.0, dag=self.dag_id):
                    self.after = max(self.after, event.id)
                    self.inbox.put(("event", event))
                    pause = 0.2
            except Exception:
                pass
            self.reconnected = True  # the runner reads the queue again: the stream may have missed events
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


class NodeEvents:
    """Applies the pool's events (and the states read back from it) to the engine."""

    def __init__(self, engine: Engine, reporter: Reporter, dag_id: int) -> None:
        self.engine = engine
        self.reporter = reporter
        self.dag_id = dag_id

    def apply(self, event: Event) -> None:
        if event.cluster_id == self.dag_id:  # the DAG job itself: its removal is the engine's too
            if event.type == "remove":
                self.reporter.removed_by_user()
            return
        run = self.engine.by_cluster.get(event.cluster_id)
        if run is None:
            return
        ulog, meaning = MEANINGS.get(event.type, ("", ""))
        if not ulog:
            return
        procs = [event.proc_id] if event.proc_id >= 0 else list(range(run.procs))
        when = time.strftime("%m/%d/%y %H:%M:%S", time.localtime(event.time))
        for proc in procs:
            condor_id = f"{event.cluster_id}.{proc}"
            self.reporter.line(f"Event: {ulog} for HTCondor Node {run.name} ({condor_id}.0) {{{when}}}")
            if ulog in JOBSTATE:
                self.reporter.jobstate_line(run.name, JOBSTATE[ulog], condor_id)
            value = None
            if meaning == "ended":
                details = event.details
                signal_number = details.get("exit_signal")
                value = -int(signal_number) if signal_number else int(details.get("exit_code") or 0)
            self._mean(event.cluster_id, proc, meaning, value)

    def state(self, cluster: int, proc: int, ad: dict[str, object]) -> None:
        """A proc's state as the pool's queue or history has it (JobStatus and, once ended, its value)."""
        status = int(str(ad.get("JobStatus", 1)))
        meaning = {1: "idle", 2: "started", 3: "aborted", 4: "ended", 5: "held", 6: "started", 7: "started"}[
            status
        ]
        value = exit_value(ad) if status == 4 else None
        if meaning in ("ended", "aborted"):
            run = self.engine.by_cluster.get(cluster)
            if run is None or proc in run.ended:
                return
            self.reporter.line(
                f"Found in the pool: job proc ({cluster}.{proc}.0) of Node {run.name} has ended"
            )
        self._mean(cluster, proc, meaning, value)

    def _mean(self, cluster: int, proc: int, meaning: str, value: int | None) -> None:
        engine = self.engine
        if meaning == "started":
            engine.proc_started(cluster, proc)
        elif meaning == "idle":
            engine.proc_idle(cluster, proc)
        elif meaning == "held":
            engine.proc_held(cluster, proc)
        elif meaning == "ended":
            run = engine.by_cluster.get(cluster)
            if run is not None and proc not in run.ended:
                verdict = "completed successfully" if value == 0 else f"failed with status {value}"
                self.reporter.line(f"Node {run.name} job proc ({cluster}.{proc}.0) {verdict}.")
            engine.proc_ended(cluster, proc, int(value or 0))
        elif meaning == "aborted":
            engine.proc_ended(cluster, proc, RETURN_JOB_ABORTED)
