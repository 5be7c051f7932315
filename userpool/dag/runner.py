"""The DAG engine's process: condor_dagman for one DAG job, run by the pool as the DAG's owner.

It reads the DAG (and the rescue DAG in force), takes the DAG's lock file so no second engine
ever runs beside it, then follows the pool's events for its nodes and submits, scripts and
decides through the engine (engine.py) until the DAG ends.  What it started from:

- a fresh run truncates the nodes log and starts with the roots;
- a recovering run (the pool restarted, the DAG was released after a hold, the engine died)
  reads the node jobs of this DAG in the queue and the history and its own POST and PRE_SKIP
  events in the nodes log, so nothing is submitted twice and no result is lost.

Signals: SIGTERM (a hold, the pool stopping or dying) stops it where it is, for a recovery;
SIGUSR1 (condor_rm of the DAG job) aborts the DAG, runs its FINAL node, writes the rescue
DAG.  Its exit code is the DAG's (0 success, 1 failure, an ABORT-DAG-ON RETURN value).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import queue
import signal
import sys
import time
from typing import Any

from updraft.core.client import Client
from updraft.core.payloads import EditRequest, QueryRequest
from updraft.core.protocol import ATTR_DAG_NODE_NAME, ATTR_DAG_NODE_RETRY, ATTR_DAGMAN_JOB_ID, parse_literal
from userpool.dag import nodeslog
from userpool.dag.check import check_dag
from userpool.dag.dagjob import dag_files
from userpool.dag.engine import Engine
from userpool.dag.follow import EventFollower, NodeEvents
from userpool.dag.knobs import KnobError, Knobs, read_knobs, with_options
from userpool.dag.launcher import EXIT_TRY_LATER
from userpool.dag.lexical import DagError
from userpool.dag.model import Dag
from userpool.dag.noderun import Attempt, DagStatus, NodeState, Recovery, exit_value
from userpool.dag.parse import parse_dag
from userpool.dag.reports import (
    DagmanOut,
    JobstateLog,
    ad_attributes,
    dot_text,
    metrics_text,
    node_status_text,
    replace_file,
)
from userpool.dag.rescue import apply_rescue, rescue_files, set_aside_newer, write_rescue
from userpool.dag.scripts import ScriptEnded, ScriptRunner
from userpool.dag.wiring import EngineActions, settings_from

LOCK_WAIT_S = 20.0
RECONCILE_S = 30.0  # the queue is read again this often, in case the event stream missed something
AD_UPDATE_S = 2.0
PROJECTION = [
    "ClusterId",
    "ProcId",
    "JobStatus",
    ATTR_DAG_NODE_NAME,
    ATTR_DAG_NODE_RETRY,
    "ExitCode",
    "ExitBySignal",
    "ExitSignal",
]


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="condor_dagman", allow_abbrev=False)
    parser.add_argument("-Dag", "-dag", dest="dag", required=True)
    parser.add_argument("-AutoRescue", "-autorescue", dest="auto_rescue", type=int, default=1)
    parser.add_argument("-DoRescueFrom", "-dorescuefrom", dest="rescue_from", type=int, default=0)
    for name in ("Maxjobs", "MaxIdle", "MaxPre", "MaxPost"):
        parser.add_argument(f"-{name}", f"-{name.lower()}", dest=name.lower(), type=int, default=0)
    parser.add_argument("-Config", "-config", dest="config", default="")
    parser.add_argument(
        "-AlwaysRunPost", "-alwaysrunpost", dest="always_run_post", action="store_true", default=None
    )
    parser.add_argument(
        "-DontAlwaysRunPost", "-dontalwaysrunpost", dest="always_run_post", action="store_false"
    )
    parser.add_argument(
        "-Suppress_notification", "-suppress_notification", dest="suppress", action="store_true"
    )
    return parser.parse_args(argv)


class DagRun:
    """One engine's run of one DAG."""

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.files = dag_files(options.dag)
        self.dag_id = int(os.environ.get("CONDOR_ID", "0.0").split(".")[0])
        self.recovering = os.environ.get("UPDRAFT_DAG_RECOVERY") == "1"
        self.out = DagmanOut(self.files["debug"])
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.stopping = ""  # "stop" (SIGTERM) | "remove" (SIGUSR1)
        self.started = time.time()
        self.rescue_number = 0
        self.client = Client.from_environment()
        self.engine: Engine | None = None
        self.jobstate: JobstateLog | None = None
        self.last_ad_update = 0.0
        self.last_status_file = 0.0
        self.changed = True

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> int:
        out = self.out
        out.line("******************************************************")
        out.line(f"** condor_scheduniv_exec.{self.dag_id}.0 (CONDOR_DAGMAN) STARTING UP")
        out.line(f"** Updraft's DAGMan, PID = {os.getpid()}")
        out.line("******************************************************")
        lock = self._lock()
        if lock is None:
            return EXIT_TRY_LATER
        for name in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(name, self._signalled)
        try:
            dag, knobs = self._read()
        except (DagError, KnobError) as exc:
            out.line(str(exc))
            out.line("Aborting: the DAG could not be read.")
            return self._exit(1)
        owner, batch_name, parent = self._own_ad()
        environment = {
            k: v for k, v in os.environ.items() if not k.startswith("UPDRAFT_") and k != "CONDOR_ID"
        }
        self.scripts = ScriptRunner(
            self.inbox, float(os.environ.get("UPDRAFT_DAG_SCRIPT_TIMEOUT", "3600")), environment
        )
        if dag.files.jobstate_log:
            self.jobstate = JobstateLog(dag.files.jobstate_log)
        actions = EngineActions(self, dag, knobs, owner, batch_name, environment)
        engine = self.engine = Engine(dag, settings_from(knobs), actions)
        follower = EventFollower(self.dag_id, self.inbox)
        if self.recovering:
            out.line("Running in RECOVERY mode...")
            if self.jobstate:
                self.jobstate.internal("RECOVERY_STARTED")
            follower.after, recovery = self._recovery(dag, owner)
            engine.start(recovery)
            out.line(f"...done with RECOVERY mode ({len(engine.by_cluster)} node job(s) in the queue)")
            if self.jobstate:
                self.jobstate.internal("RECOVERY_FINISHED")
        else:
            nodeslog.start_again(self.files["nodes_log"])
            follower.after = self.client.ping().last_event
            if self.jobstate:
                self.jobstate.internal(f"DAGMAN_STARTED {self.dag_id}.0")
            engine.start()
        self.parent = parent
        self.knobs = knobs
        out.line(f"Dag contains {len(dag.nodes)} total jobs")
        out.status(engine)
        follower.start()
        self._loop(engine, follower)
        return self._finish(engine, dag)

    def _loop(self, engine: Engine, follower: EventFollower) -> None:
        events = NodeEvents(engine, self, self.dag_id)
        last_reconcile = time.monotonic()
        while not engine.finished:
            if self.stopping == "stop":
                return
            now = time.time()
            due = engine.pump(now)
            if engine.finished:
                break
            self._reports(engine)
            wait = 1.0 if not due else max(0.0, min(1.0, due - now))
            try:
                item = self.inbox.get(timeout=wait)
            except queue.Empty:
                item = None
            while item is not None:
                self._handle(item, engine, events)
                try:
                    item = self.inbox.get_nowait()
                except queue.Empty:
                    item = None
            if follower.reconnected or time.monotonic() - last_reconcile > RECONCILE_S:
                follower.reconnected = False
                last_reconcile = time.monotonic()
                self._reconcile(engine, events)

    def _handle(self, item: Any, engine: Engine, events: NodeEvents) -> None:
        if isinstance(item, ScriptEnded):
            self.changed = True
            if item.output.strip():
                self.out.line(f"{item.when.value} script of node {item.node} said:")
                for text in item.output.rstrip("\n").splitlines():
                    self.out.line(f"    {text}")
            engine.script_ended(item.node, item.when, item.value, time.time())
        elif isinstance(item, tuple) and item[0] == "event":
            self.changed = True
            events.apply(item[1])
        elif item == "remove" and engine.abort_return is None:
            self.changed = True
            self.out.line("Received SIGUSR1: the DAG job was removed (condor_rm); removing its node jobs")
            engine.abort(1, DagStatus.RM)

    # -- the follower's reporter ------------------------------------------------------------------
    def line(self, text: str) -> None:
        self.out.line(text)

    def jobstate_line(self, node: str, event: str, condor_id: str) -> None:
        if self.jobstate:
            self.jobstate.node(node, event, condor_id)

    def removed_by_user(self) -> None:
        self.stopping = self.stopping or "remove"
        self.inbox.put("remove")

    def _signalled(self, number: int, _frame: object) -> None:
        if number == signal.SIGTERM:
            self.stopping = "stop"
            self.inbox.put("stop")
        else:
            self.stopping = self.stopping or "remove"
            self.inbox.put("remove")

    # -- starting ------------------------------------------------------------------------------
    def _lock(self) -> int | None:
        """The DAG's lock file: one engine per DAG; a dying one gets a moment to let go."""
        fd = os.open(self.files["lock"], os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.out.line(f"ERROR: another DAGMan holds {self.files['lock']}; trying again later")
                    os.close(fd)
                    return None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def _read(self) -> tuple[Dag, Knobs]:
        out, options = self.out, self.options
        out.line(f"DAG Lockfile will be written to {self.files['lock']}")
        out.line(f"DAG Input file is {options.dag}")
        out.line(f"Parsing 1 dagfiles\nParsing {options.dag} ...")
        dag = parse_dag(options.dag)
        check_dag(dag)
        config = dag.files.config or options.config
        knobs = read_knobs(config) if config else Knobs()
        for name, why in knobs.ignored.items():
            out.line(f"Note: {name} in {dag.files.config} has no effect here: {why}")
        knobs = with_options(
            knobs, {k: getattr(options, k) for k in ("maxjobs", "maxidle", "maxpre", "maxpost")}
        )
        if options.suppress:
            knobs.values["DAGMAN_SUPPRESS_NOTIFICATION"] = True
        if options.always_run_post is not None:
            knobs.values["DAGMAN_ALWAYS_RUN_POST"] = options.always_run_post
        auto = options.auto_rescue and knobs.flag("DAGMAN_AUTO_RESCUE")
        rescues = rescue_files(options.dag)
        chosen = (
            [r for r in rescues if r[0] == options.rescue_from]
            if options.rescue_from
            else rescues[-1:]
            if auto
            else []
        )
        if options.rescue_from and not chosen:
            raise DagError(
                options.dag, None, f"rescue DAG {options.dag}.rescue{options.rescue_from:03d} does not exist"
            )
        if chosen:
            number, path = chosen[-1]
            if not self.recovering and options.rescue_from:
                for moved in set_aside_newer(options.dag, number):
                    out.line(f"Renamed newer rescue DAG to {moved}")
            done = apply_rescue(dag, str(path))
            self.rescue_number = number
            out.line(f"Using rescue DAG {path} ({len(done)} node(s) premarked DONE)")
        if dag.files.dot:
            replace_file(dag.files.dot, dot_text(dag, None, dag.files.dot_include))
        return dag, knobs

    def _own_ad(self) -> tuple[str, str, int]:
        """The DAG job's owner, batch name (its nodes share it) and parent DAG (a sub-DAG's)."""
        found = self.client.query(
            QueryRequest(ids=[f"{self.dag_id}.0"], projection=["Owner", "JobBatchName", ATTR_DAGMAN_JOB_ID])
        )
        ad = found.ads[0] if found.ads else {}
        owner = _literal(ad.get("Owner")) or os.environ.get("USER", "")
        batch = _literal(ad.get("JobBatchName")) or ""
        parent = _literal(ad.get(ATTR_DAGMAN_JOB_ID))
        return str(owner), str(batch), int(parent) if isinstance(parent, int) else 0

    def _recovery(self, dag: Dag, owner: str) -> tuple[int, Recovery]:
        """What the pool knows of this DAG's nodes, and what the nodes log says of its scripts."""
        last = self.client.ping().last_event
        constraint = f"{ATTR_DAGMAN_JOB_ID} == {self.dag_id}"
        ads = [
            *self.client.query(QueryRequest(constraint, PROJECTION, owners=[owner]), history=True).ads,
            *self.client.query(QueryRequest(constraint, PROJECTION, owners=[owner])).ads,
        ]  # the queue last: a job that moved to the history meanwhile is seen in its newest state
        attempts: dict[int, Attempt] = {}
        for ad in ads:
            cluster = int(str(ad["ClusterId"]))
            node = _literal(ad.get(ATTR_DAG_NODE_NAME))
            if not isinstance(node, str):
                continue
            attempt = attempts.setdefault(
                cluster, Attempt(node, _whole(_literal(ad.get(ATTR_DAG_NODE_RETRY))), cluster, {})
            )
            status = int(str(ad.get("JobStatus", 1)))
            value = (
                exit_value({k: _literal(v) for k, v in ad.items()})
                if status == 4
                else (RETURN_ABORTED if status == 3 else None)
            )
            attempt.procs[int(str(ad["ProcId"]))] = (status, value)
        recovery = Recovery(list(attempts.values()))
        for event in nodeslog.engine_events(self.files["nodes_log"]):
            if event.number == nodeslog.POST_TERMINATED:
                recovery.posts[event.cluster] = event.value
            else:
                recovery.skipped.add(event.node)
        self.out.line(
            f"Found {len(attempts)} node job(s) of this DAG in the pool, {len(recovery.posts)} POST script result(s)"
        )
        return last, recovery

    def _reconcile(self, engine: Engine, events: NodeEvents) -> None:
        """Read the in-flight clusters' states again: what the stream may have missed is applied now."""
        clusters = [str(cluster) for cluster in engine.by_cluster]
        if not clusters:
            return
        try:
            ads = [
                *self.client.query(QueryRequest(ids=clusters, projection=PROJECTION), history=True).ads,
                *self.client.query(QueryRequest(ids=clusters, projection=PROJECTION)).ads,
            ]
        except Exception as exc:
            self.out.line(f"could not read the node jobs' states now: {exc}")
            return
        for ad in ads:
            events.state(
                int(str(ad["ClusterId"])), int(str(ad["ProcId"])), {k: _literal(v) for k, v in ad.items()}
            )

    # -- reports -------------------------------------------------------------------------------
    def _reports(self, engine: Engine, final: bool = False) -> None:
        now = time.monotonic()
        dag = engine.dag
        if dag.files.node_status and (
            final
            or (
                now - self.last_status_file >= dag.files.node_status_min_s
                and (self.changed or dag.files.node_status_always)
            )
        ):
            self.last_status_file = now
            replace_file(
                dag.files.node_status,
                node_status_text(engine, dag.sources[:1], time.time() + dag.files.node_status_min_s),
            )
        if dag.files.dot and dag.files.dot_update and (self.changed or final):
            replace_file(dag.files.dot, dot_text(dag, engine, dag.files.dot_include))
        if self.changed and (final or now - self.last_ad_update >= AD_UPDATE_S):
            self.last_ad_update = now
            self.changed = False
            if not final:
                self.out.status(engine)  # DAGMan's table, as its readers expect it after each change
            try:
                self.client.edit(EditRequest([f"{self.dag_id}.0"], ad_attributes(engine, self.recovering)))
            except Exception as exc:
                self.out.line(f"could not update the DAG job's ad: {exc}")

    def _finish(self, engine: Engine, dag: Dag) -> int:
        if not engine.finished:  # stopped (SIGTERM): a hold or the pool's stop; a recovery goes on from here
            self.scripts.stop_all()
            self.out.line(
                "Received SIGTERM: stopping where the DAG is (its node jobs go on); it recovers later"
            )
            self.out.status(engine)
            return self._exit(EXIT_TRY_LATER)
        self.changed = True
        self._reports(engine, final=True)
        self.out.status(engine)
        unfinished = [
            name for name, run in engine.runs.items() if run.state != NodeState.DONE and name != dag.final
        ]
        if unfinished and self.knobs.number("DAGMAN_MAX_RESCUE_NUM") > 0:
            path = write_rescue(
                dag,
                [name for name in engine.names_in(NodeState.DONE) if name != dag.final],  # FINAL runs again
                engine.names_in(NodeState.FAILED),
                self.knobs.number("DAGMAN_MAX_RESCUE_NUM"),
                self._retries_left(engine),
            )
            self.out.line(f"Writing Rescue DAG file {path}")
        if engine.failed_count():
            self.out.line("ERROR: the following Node(s) failed:")
            for name in engine.names_in(NodeState.FAILED):
                self.out.line(f"  Node {name}: {engine.runs[name].detail}")
        elif engine.exit_code == 0:
            self.out.line("All jobs Completed!")
        replace_file(
            self.files["metrics"],
            metrics_text(
                engine,
                self.dag_id,
                self.parent,
                self.rescue_number,
                self.started,
                engine.exit_code,
                self.knobs.number("DAGMAN_METRICS_FILE_VERSION"),
            ),
        )
        self.out.line(f"Wrote metrics file {self.files['metrics']}.")
        if self.jobstate:
            self.jobstate.internal(f"DAGMAN_FINISHED {engine.exit_code}")
        return self._exit(engine.exit_code)

    def _retries_left(self, engine: Engine) -> dict[str, int]:
        if self.knobs.flag("DAGMAN_RESET_RETRIES_UPON_RESCUE"):
            return {}
        return {
            name: max(0, run.node.retry - run.retry)
            for name, run in engine.runs.items()
            if run.retry and run.state != NodeState.DONE
        }

    def _exit(self, code: int) -> int:
        self.out.line(f"**** condor_dagman (condor_DAGMAN) pid {os.getpid()} EXITING WITH STATUS {code}")
        self.out.close()
        return code


RETURN_ABORTED = -1002


def _whole(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _literal(text: object) -> object:
    if text is None:
        return None
    try:
        return parse_literal(str(text))
    except ValueError:
        return None


def main(argv: list[str] | None = None) -> int:
    options = arguments(sys.argv[1:] if argv is None else argv)
    return DagRun(options).run()


if __name__ == "__main__":
    sys.exit(main())
