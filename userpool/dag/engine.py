"""The DAG engine's decisions: which node runs next, what a script's or a job's end means.

Pure logic, no I/O: the runner (runner.py) tells it what happened (a proc started, ended or
was held, a script exited) and carries out what it asks through an ``Actions`` object
(submit a node's job, run a script, remove a cluster, write a line in dagman.out, record a
POST script's or a PRE_SKIP's outcome in the nodes log).  The rules are DAGMan's (HTCondor
manual, "Node success/failure", "Retrying failed nodes", "Stopping the DAG on node
failure", "FINAL node", "Throttling"):

- the exit value of the last part of a node that ran (PRE, job, POST) decides it; a job of
  several procs fails with its first failed proc, and the rest of its procs are removed;
- a failed node is retried (PRE, job and POST again) RETRY times unless it ended with its
  UNLESS-EXIT value; ABORT-DAG-ON wins over retries and ends the DAG;
- PRE_SKIP: that PRE script value skips the job and the POST script, and the node succeeds;
- the FINAL node runs once every other node is done or can never run (after an abort or a
  removal too), and its result is the DAG's;
- throttles: -maxjobs (nodes with jobs in the queue, or about to have), -maxidle (their idle
  procs), MAXJOBS per category, -maxpre / -maxpost (scripts at once); ready nodes go by
  PRIORITY (higher first), then in the order they became ready.

Each node's state changes only through ``_advance``, checked against NODE_STATES.
"""

from __future__ import annotations

import heapq
import itertools

from userpool.dag.model import Dag, NodeKind, ScriptWhen
from userpool.dag.noderun import (
    ACTIVE,
    ENDED,
    NODE_STATES,
    RETURN_JOB_SKIPPED,
    RETURN_SUBMIT_FAILED,
    Actions,
    Attempt,
    DagStatus,
    NodeRun,
    NodeState,
    Recovery,
    Settings,
    SubmitFailed,
)


class Engine:
    """One DAG run's decisions; the runner feeds it what happened and carries out what it asks."""

    def __init__(self, dag: Dag, settings: Settings, actions: Actions) -> None:
        self.dag, self.settings, self.actions = dag, settings, actions
        self.runs: dict[str, NodeRun] = {
            name: NodeRun(node, order) for order, (name, node) in enumerate(dag.nodes.items())
        }
        self.by_cluster: dict[int, NodeRun] = {}
        self.ready: list[tuple[int, int, str]] = []  # (-priority, sequence, name)
        self._back = itertools.count(0)
        self._front = itertools.count(-1, -1)
        self.in_state = dict.fromkeys(NodeState, 0)
        self.in_state[NodeState.NOT_READY] = len(self.runs)
        self.script_waiters: set[str] = set()  # nodes whose script waits for a slot or its DEFER time
        self._idle = 0  # idle procs, as counted at the start of a pass
        self.status = DagStatus.OK
        self.abort_return: int | None = None
        self.final_started = False
        self.finished = False
        self.exit_code = 0
        self.running_pre = 0
        self.running_post = 0
        self.occupied = 0  # nodes with a job in the queue, or whose PRE runs before one
        self.category_occupied: dict[str, int] = {}
        self.jobs_submitted = 0
        self.jobs_completed = 0
        self.succeeded: dict[bool, int] = {False: 0, True: 0}  # is a SUBDAG -> nodes that succeeded
        self.failures: dict[bool, int] = {False: 0, True: 0}

    # -- setting out ----------------------------------------------------------------------------
    def start(self, recovery: Recovery | None = None) -> None:
        """Mark DONE nodes (the DAG's and a rescue DAG's), apply what a recovery found, make roots ready."""
        for run in self.runs.values():
            run.parents_left = len(run.node.parents)
            if run.node.done:
                self._advance(run, NodeState.DONE)
        posts_due = self._recover(recovery) if recovery else []
        for run in self.runs.values():
            if run.state == NodeState.DONE:
                self._release_children(run)
            elif run.state == NodeState.FAILED:
                self._mark_futile(run)
        for run in self.runs.values():
            if run.state == NodeState.NOT_READY and run.parents_left <= 0 and run.name != self.dag.final:
                self._make_ready(run)
        if any(run.state == NodeState.FAILED for run in self.runs.values()):
            self.status = DagStatus.NODE_FAILED
        if self.final_started:  # the DAG had reached its end (the FINAL node runs): nothing else starts
            self.ready = [entry for entry in self.ready if entry[2] == self.dag.final]
        for run in posts_due:
            self._want_script(run, ScriptWhen.POST)

    def _recover(self, recovery: Recovery) -> list[NodeRun]:
        """Each node's state from its newest attempt; the nodes whose POST script must run again."""
        newest: dict[str, Attempt] = {}
        for attempt in recovery.attempts:
            if attempt.node in self.runs and (
                attempt.node not in newest or attempt.retry >= newest[attempt.node].retry
            ):
                newest[attempt.node] = attempt
        posts_due = []
        for name, run in self.runs.items():
            if run.state == NodeState.DONE:
                continue
            if name in recovery.skipped:
                self._advance(run, NodeState.DONE)
                continue
            found = newest.get(name)
            if found is None:
                continue
            attempt = found
            if name == self.dag.final:
                self.final_started = True
            run.retry, run.cluster, run.procs = attempt.retry, attempt.cluster, len(attempt.procs)
            self.jobs_submitted += 1
            for proc, (status, value) in attempt.procs.items():
                if status in (2, 6, 7):
                    run.started.add(proc)
                elif status == 5:
                    run.held.add(proc)
                if value is not None:
                    self._proc_value(run, proc, value)
            if len(run.ended) < run.procs:
                self._advance(run, NodeState.SUBMITTED)
                self.by_cluster[run.cluster] = run
                self._occupy(run, +1)
                continue
            value = run.job_return or 0
            if ScriptWhen.POST in run.node.scripts:
                if attempt.cluster not in recovery.posts:
                    self._advance(run, NodeState.POSTRUN)
                    posts_due.append(run)
                    continue
                value = recovery.posts[attempt.cluster]
            if value == 0:
                self._advance(run, NodeState.DONE)
            elif run.name != self.dag.final and self._retry_left(run, value) and run.node.abort_on != value:
                run.retry += 1
            else:
                self._advance(run, NodeState.FAILED)
        return posts_due

    # -- what happened ------------------------------------------------------------------------
    def proc_started(self, cluster: int, proc: int) -> None:
        run = self.by_cluster.get(cluster)
        if run is not None:
            run.started.add(proc)
            run.held.discard(proc)

    def proc_idle(self, cluster: int, proc: int) -> None:
        """Evicted, requeued or released: idle again."""
        run = self.by_cluster.get(cluster)
        if run is not None:
            run.started.discard(proc)
            run.held.discard(proc)

    def proc_held(self, cluster: int, proc: int) -> None:
        run = self.by_cluster.get(cluster)
        if run is not None:
            run.started.discard(proc)
            run.held.add(proc)

    def proc_ended(self, cluster: int, proc: int, value: int) -> None:
        """A proc of a node's job completed (``value``: its exit code, -signal) or was removed."""
        run = self.by_cluster.get(cluster)
        if run is None or run.state != NodeState.SUBMITTED or proc in run.ended:
            return
        first_failure = value != 0 and run.job_return in (None, 0)
        self._proc_value(run, proc, value)
        if first_failure and len(run.ended) < run.procs:
            self.actions.remove(cluster, f"DAG Node {run.name}: job proc ({cluster}.{proc}.0) failed")
            run.ended = set(range(run.procs))  # the others go with it; the node is decided now
        if len(run.ended) >= run.procs:
            self._job_ended(run)

    def script_ended(self, name: str, when: ScriptWhen, value: int, now: float) -> None:
        run = self.runs[name]
        script = run.node.scripts[when]
        if when == ScriptWhen.PRE:
            self.running_pre -= 1
        else:
            self.running_post -= 1
        if run.state in ENDED:
            return
        if self.abort_return is not None and name != self.dag.final:  # aborting: the node goes no further
            if run.state == NodeState.PRERUN:
                self._occupy(run, -1)
            self._advance(run, NodeState.FAILED)
            return
        if script.defer_status and value == script.defer_status:
            run.not_before = now + script.defer_time
            run.script_waiting = when
            self.script_waiters.add(name)
            self.actions.note(
                f"{when.value} Script of node {name} exited with status {value}; deferring for "
                f"{script.defer_time} seconds"
            )
            return
        if when == ScriptWhen.PRE:
            self._pre_ended(run, value, now)
            return
        self.actions.record(run, "post", value)
        verdict = "completed successfully" if value == 0 else f"failed with status {value}"
        self.actions.note(f"POST Script of node {name} {verdict}")
        self._finish_attempt(run, value)

    # -- moving on ----------------------------------------------------------------------------
    def pump(self, now: float) -> float:
        """Start what may start; the time the next waiting script or submission is due (0: none)."""
        due = self._start_what_may(now)
        if not self.finished and self.ready and self.final_started:  # the FINAL node just became ready
            due = self._start_what_may(now)
        return due

    def _start_what_may(self, now: float) -> float:
        due = 0.0
        for name in sorted(self.script_waiters, key=lambda name: self.runs[name].order):
            run = self.runs[name]
            if run.script_waiting is None or run.state not in (NodeState.PRERUN, NodeState.POSTRUN):
                self.script_waiters.discard(name)
            elif run.not_before > now:
                due = min(due or run.not_before, run.not_before)
            elif self._script_slot(run.script_waiting):
                self._script(run, run.script_waiting)
        held_back: list[tuple[int, int, str]] = []
        submitted = 0
        self._idle = self.idle_procs()  # once per pass: nothing else changes it while the pass submits
        while self.ready and not self.finished and submitted < self.settings.submits_per_pass:
            entry = heapq.heappop(self.ready)
            run = self.runs[entry[2]]
            if run.state != NodeState.READY:
                continue
            if run.not_before > now:
                due = min(due or run.not_before, run.not_before)
                held_back.append(entry)
                continue
            if not self._may_start(run):
                held_back.append(entry)
                if self._throttled():
                    break
                continue
            submitted += 1
            self._begin(run, now)
            if run.state == NodeState.SUBMITTED:
                self._idle += run.idle_procs()
        for entry in held_back:
            heapq.heappush(self.ready, entry)
        if self.ready and submitted >= self.settings.submits_per_pass:
            due = now  # more to do at once, after the runner read what came in
        self._maybe_finish()
        return due

    def _throttled(self) -> bool:
        settings = self.settings
        return (settings.maxjobs > 0 and self.occupied >= settings.maxjobs) or (
            settings.maxidle > 0 and self._idle >= settings.maxidle
        )

    def _may_start(self, run: NodeRun) -> bool:
        if run.node.noop and ScriptWhen.PRE not in run.node.scripts:
            return True
        if self._throttled():
            return False
        category = run.node.category
        cap = self.dag.maxjobs.get(category) if category else None
        if cap is not None and self.category_occupied.get(category, 0) >= cap:
            return False
        return ScriptWhen.PRE not in run.node.scripts or self._script_slot(ScriptWhen.PRE)

    def _script_slot(self, when: ScriptWhen) -> bool:
        limit = self.settings.maxpre if when == ScriptWhen.PRE else self.settings.maxpost
        running = self.running_pre if when == ScriptWhen.PRE else self.running_post
        return limit <= 0 or running < limit

    def idle_procs(self) -> int:
        return sum(run.idle_procs() for run in self.by_cluster.values())

    def _begin(self, run: NodeRun, now: float) -> None:
        if ScriptWhen.PRE in run.node.scripts:
            self._advance(run, NodeState.PRERUN)
            self._occupy(run, +1)
            self._script(run, ScriptWhen.PRE)
        else:
            self._occupy(run, +1)
            self._submit(run, now)

    def _want_script(self, run: NodeRun, when: ScriptWhen) -> None:
        """Run the script now if a slot is free, else when one is (pump)."""
        if self._script_slot(when):
            self._script(run, when)
        else:
            run.script_waiting, run.not_before = when, 0.0
            self.script_waiters.add(run.name)

    def _script(self, run: NodeRun, when: ScriptWhen) -> None:
        run.script_waiting = None
        self.script_waiters.discard(run.name)
        if when == ScriptWhen.PRE:
            self.running_pre += 1
        else:
            self.running_post += 1
        self.actions.note(f"Running {when.value} script of Node {run.name}...")
        self.actions.run_script(run, when, self.script_macros(run, when))

    def _pre_ended(self, run: NodeRun, value: int, now: float) -> None:
        run.pre_return = value
        self.actions.record(run, "pre", value)
        if run.node.pre_skip is not None and value == run.node.pre_skip:
            self._occupy(run, -1)
            self.actions.record(run, "pre_skip", value)
            self.actions.note(
                f"PRE_SKIP return value {value} indicates we are done (successfully) with node {run.name}"
            )
            self._finish_attempt(run, 0)
            return
        if value != 0:
            self.actions.note(f"PRE Script of node {run.name} failed with status {value}")
            self._occupy(run, -1)
            if self.settings.always_run_post and ScriptWhen.POST in run.node.scripts:
                run.job_return = RETURN_JOB_SKIPPED
                self._advance(run, NodeState.POSTRUN)
                self._want_script(run, ScriptWhen.POST)
                return
            self._finish_attempt(run, value)
            return
        self.actions.note(f"PRE Script of node {run.name} completed successfully.")
        self._submit(run, now)

    def _submit(self, run: NodeRun, now: float) -> None:
        """Submit the node's job (it already occupies its throttle slots)."""
        if run.node.noop:
            self.actions.note(f"Node {run.name} is NOOP: its job is not submitted")
            self._advance(run, NodeState.SUBMITTED)
            run.cluster, run.procs, run.ended, run.job_return = 0, 0, set(), 0
            self._job_ended(run)
            return
        run.submit_attempts += 1
        try:
            cluster, procs = self.actions.submit(run, self.submit_macros(run))
        except SubmitFailed as exc:
            self._occupy(run, -1)
            attempts = run.submit_attempts
            if not exc.lasting and attempts < self.settings.max_submit_attempts:
                delay = 2.0 ** (attempts - 1)
                self.actions.note(
                    f"ERROR: submit attempt {attempts} of node {run.name} failed: {exc}; trying again in {delay:.0f} s"
                )
                if run.state == NodeState.PRERUN:
                    self._advance(run, NodeState.READY)
                run.not_before = now + delay
                self._queue_ready(run, self.settings.retry_submit_first)
                return
            self.actions.note(f"ERROR: submit of node {run.name} failed: {exc}")
            run.submit_attempts, run.job_return = 0, RETURN_SUBMIT_FAILED
            run.detail = f"submit failed: {exc}"
            if ScriptWhen.POST in run.node.scripts:
                self._advance(run, NodeState.POSTRUN)
                self._want_script(run, ScriptWhen.POST)
            else:
                self._finish_attempt(run, RETURN_SUBMIT_FAILED)
            return
        self._advance(run, NodeState.SUBMITTED)
        run.submit_attempts = 0
        run.cluster, run.procs = cluster, procs
        run.ended, run.started, run.held, run.job_return = set(), set(), set(), None
        self.by_cluster[cluster] = run
        self.jobs_submitted += 1

    def _proc_value(self, run: NodeRun, proc: int, value: int) -> None:
        run.ended.add(proc)
        run.started.discard(proc)
        run.held.discard(proc)
        if value != 0 and run.job_return in (None, 0):
            run.job_return = value
        elif run.job_return is None:
            run.job_return = 0

    def _job_ended(self, run: NodeRun) -> None:
        self.by_cluster.pop(run.cluster, None)
        self._occupy(run, -1)
        value = run.job_return or 0
        if run.cluster:
            self.jobs_completed += 1
            self.actions.record(run, "job", value)
        if self.abort_return is not None and run.name != self.dag.final:
            self._advance(run, NodeState.FAILED)  # the DAG is aborting: nothing more runs for it
            return
        if ScriptWhen.POST in run.node.scripts:
            self._advance(run, NodeState.POSTRUN)
            self._want_script(run, ScriptWhen.POST)
            return
        self._finish_attempt(run, value)

    def _occupy(self, run: NodeRun, delta: int) -> None:
        self.occupied += delta
        if run.node.category:
            category = run.node.category
            self.category_occupied[category] = self.category_occupied.get(category, 0) + delta

    def _finish_attempt(self, run: NodeRun, value: int) -> None:
        """The attempt's last part ended with ``value``: done, retried, failed, or the DAG aborts."""
        is_subdag = run.node.kind == NodeKind.SUBDAG
        if value == 0:
            self._advance(run, NodeState.DONE)
            self.succeeded[is_subdag] += 1
            self.actions.note(f"Node {run.name} succeeded")
            self._release_children(run)
            return
        run.detail = run.detail or f"failed with status {value}"
        if run.node.abort_on is not None and value == run.node.abort_on:
            self._fail(run)
            returned = value if run.node.abort_return is None else run.node.abort_return
            self.actions.note(
                f"Aborting DAG because we got the ABORT exit value from node {run.name} ({value});"
                f" the DAG will return {returned}"
            )
            self.abort(returned)
            return
        if run.name != self.dag.final and self._retry_left(run, value) and self.abort_return is None:
            run.retry += 1
            run.detail = ""
            self.actions.note(
                f"Node {run.name} failed; retrying node {run.name} (retry #{run.retry} of {run.node.retry})..."
            )
            self._advance(run, NodeState.READY)
            self._queue_ready(run, self.settings.retry_node_first)
            return
        self._fail(run)

    def _fail(self, run: NodeRun) -> None:
        self._advance(run, NodeState.FAILED)
        self.failures[run.node.kind == NodeKind.SUBDAG] += 1
        self.actions.note(f"Node {run.name} failed: {run.detail}")
        if self.status == DagStatus.OK:
            self.status = DagStatus.NODE_FAILED
        self._mark_futile(run)

    def _retry_left(self, run: NodeRun, value: int) -> bool:
        node = run.node
        if node.retry_unless_exit is not None and value == node.retry_unless_exit:
            return False
        return run.retry < node.retry

    def _release_children(self, run: NodeRun) -> None:
        for child_name in sorted(run.node.children, key=lambda name: self.runs[name].order):  # file order
            child = self.runs[child_name]
            child.parents_left -= 1
            if child.parents_left <= 0 and child.state == NodeState.NOT_READY:
                self._make_ready(child)

    def _mark_futile(self, run: NodeRun) -> None:
        stack = list(run.node.children)
        while stack:
            child = self.runs[stack.pop()]
            if child.state == NodeState.NOT_READY:
                self._advance(child, NodeState.FUTILE)
                stack.extend(child.node.children)

    def _make_ready(self, run: NodeRun) -> None:
        self._advance(run, NodeState.READY)
        self._queue_ready(run, self.settings.depth_first)

    def _queue_ready(self, run: NodeRun, first: bool) -> None:
        sequence = next(self._front) if first else next(self._back)
        priority = run.node.priority + self.settings.default_priority
        heapq.heappush(self.ready, (-priority, sequence, run.name))

    def _advance(self, run: NodeRun, state: NodeState) -> None:
        """The one place a node's state changes (the table says what may follow what); the counts follow."""
        before = run.state
        run.state = NODE_STATES.advance(before, state, run.name)
        self.in_state[before] -= 1
        self.in_state[run.state] += 1

    # -- the end ------------------------------------------------------------------------------
    def abort(self, exit_code: int, status: DagStatus = DagStatus.ABORT) -> None:
        """ABORT-DAG-ON or condor_rm: what runs is removed, nothing new starts; the FINAL node still runs."""
        if self.abort_return is not None:
            return
        self.status = status
        self.abort_return = exit_code
        for run in list(self.by_cluster.values()):
            if run.name != self.dag.final:
                self.actions.remove(run.cluster, f"the DAG is aborted ({status.name})")
        for run in self.runs.values():
            if run.state == NodeState.READY and run.name != self.dag.final:
                run.detail = "not run: the DAG was aborted"
        self.ready = []
        self._maybe_finish()

    def active(self) -> int:
        """Nodes with a script or job under way, the FINAL node apart."""
        final = self.runs.get(self.dag.final) if self.dag.final else None
        busy = sum(self.in_state[state] for state in ACTIVE)
        return busy - (1 if final is not None and final.state in ACTIVE else 0)

    def _maybe_finish(self) -> None:
        if self.finished or (self.ready and self.abort_return is None):
            return
        if self.active():
            if self.abort_return is None:
                return
            # aborting: only the removed jobs are still out; their ends need not be waited for
            if any(
                r.state != NodeState.SUBMITTED
                for r in self.runs.values()
                if r.state in ACTIVE and r.name != self.dag.final
            ):
                return
        final = self.runs.get(self.dag.final) if self.dag.final else None
        if final is not None and not self.final_started:
            self.final_started = True
            self.actions.note(f"Starting final node {final.name} (DAG status {int(self.status)})...")
            final.parents_left = 0
            if final.state == NodeState.NOT_READY:
                self._make_ready(final)
                self.ready = [entry for entry in self.ready if entry[2] == final.name]
                heapq.heapify(self.ready)
            return
        if final is not None and final.state not in ENDED:
            return
        self.finished = True
        if final is not None:
            self.exit_code = 0 if final.state == NodeState.DONE else 1
        elif self.abort_return is not None:
            self.exit_code = self.abort_return
        else:
            self.exit_code = 0 if self.status == DagStatus.OK else 1

    # -- macros ---------------------------------------------------------------------------------
    def failed_count(self) -> int:
        return self.in_state[NodeState.FAILED]

    def submit_macros(self, run: NodeRun) -> dict[str, str]:
        """The node's own names for its submit description ($(JOB), $(RETRY), ...), VARS apart."""
        return {
            "JOB": run.name,
            "RETRY": str(run.retry),
            "DAG_STATUS": str(int(self.status)),
            "FAILED_COUNT": str(self.failed_count()),
        }

    def script_macros(self, run: NodeRun, when: ScriptWhen) -> dict[str, str]:
        macros = {
            "JOB": run.name,
            "RETRY": str(run.retry),
            "MAX_RETRIES": str(run.node.retry),
            "DAG_STATUS": str(int(self.status)),
            "FAILED_COUNT": str(self.failed_count()),
        }
        if when == ScriptWhen.POST:
            macros.update(
                JOBID=f"{run.cluster}.{max(run.procs - 1, 0)}" if run.cluster else "",
                RETURN=str(run.job_return if run.job_return is not None else RETURN_JOB_SKIPPED),
                PRE_SCRIPT_RETURN=str(run.pre_return),
            )
        return macros

    # -- views ----------------------------------------------------------------------------------
    def counts(self) -> dict[NodeState, int]:
        return dict(self.in_state)

    def names_in(self, state: NodeState) -> list[str]:
        return [name for name, run in self.runs.items() if run.state == state]

    def held_procs(self) -> int:
        return sum(len(run.held) for run in self.by_cluster.values())

    def running_procs(self) -> int:
        return sum(len(run.started) for run in self.by_cluster.values())
