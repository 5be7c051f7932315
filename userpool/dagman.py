"""The DAG supervisor: the pool runs each DAG job's engine, as the DAG's owner, and follows it.

HTCondor's schedd starts ``condor_dagman`` for a scheduler-universe job, and DAGMan talks to
the schedd like any user's tool.  Updraft does the same: a DAG job (JobUniverse 7, Cmd
``condor_dagman``) is never matched to a pilot; this supervisor starts its engine
(userpool/dag/runner.py, through the launcher) as the owner's account (the identity map),
with a token for the owner bound to that DAG, and makes the DAG job's state follow it:

- a DAG job that is idle (just submitted, or released) gets an engine and turns running;
- a running DAG job with no engine (the pool was restarted, even by kill -9) gets one that
  recovers from the queue, the history and the nodes log: no node is submitted twice or lost;
- ``condor_hold`` stops the engine (its nodes go on; ``condor_release`` starts it again,
  recovering); ``condor_rm`` removes the nodes with the DAG job (userpool/actions.py) and
  tells the engine (SIGUSR1, HTCondor's remove_kill_sig) to run its FINAL node, write its
  rescue DAG and stop;
- the engine's exit code becomes the DAG job's ExitCode under its on_exit_remove; an engine
  that died unexpectedly is started again, recovering, up to ``dag_engine_restarts`` times
  an hour, then its DAG job is held with the reason.

Only a DAG's own engine may submit its nodes (its token carries the binding ``dag=N``), and
only while it runs: a node ad naming a DAG is refused from anyone else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from updraft.core import arglist, classads
from updraft.core.classads import int_of
from updraft.core.errors import Conflict, Forbidden
from updraft.core.protocol import (
    ATTR_DAG_ENGINE_LIVE,
    ATTR_DAG_NODE_NAME,
    ATTR_DAG_NODE_RETRY,
    ATTR_DAGMAN_JOB_ID,
    DAG_BINDING,
    HoldCode,
    Scope,
    quote,
)
from userpool import policy
from userpool.dag.launcher import EXIT_ENGINE_ERROR, EXIT_TRY_LATER, EngineLauncher, EngineSpec, LaunchError
from userpool.events import Tx
from userpool.identities import Account, Unmapped
from userpool.jobs import COMPLETED, HELD, IDLE, RUNNING
from userpool.queue import Cluster, Job, is_dag_job
from userpool.sandbox import string_attr
from userpool.store import INSERT_REVOCATION

if TYPE_CHECKING:
    from userpool.pool import Pool

log = logging.getLogger("updraft.dagman")

#: the engine's token lives this long; the engine renews it at half-life
TOKEN_LIFETIME_S = 7 * 86400
#: how long an engine told to stop for a hold (or the pool's stop) has before it is killed
STOP_GRACE_S = 10.0
#: the environment the DAG job carried (its getenv) may not set these: the pool sets them
POOL_SET = ("UPDRAFT_POOL", "UPDRAFT_TOKEN", "UPDRAFT_TOKEN_FILE", "UPDRAFT_CA", "UPDRAFT_HOME", "CONDOR_ID")


@dataclass
class Engine:
    """One running engine and why it may be stopping."""

    cluster_id: int
    pid: int
    owner: str
    started: float
    stopping: str = ""  # "hold" | "remove" | "pool": why we asked it to stop
    stop_sent: float = 0.0


@dataclass
class Crashes:
    times: list[float] = field(default_factory=list)


class DagSupervisor:
    """Starts, stops and reaps DAG engines; the one place a DAG job's status follows its engine."""

    def __init__(self, pool: Pool, launcher: EngineLauncher | None) -> None:
        self.pool = pool
        self.launcher = launcher
        self.engines: dict[int, Engine] = {}
        self.crashes: dict[int, Crashes] = {}
        self.node_dags: dict[int, int] = {}  # node cluster -> its DAG's cluster (the event filter)
        self.url = ""  # the pool's URL and CA, set by the server once it listens
        self.ca_path = ""
        self._wake = asyncio.Event()

    # -- what the schedd asks ---------------------------------------------------------------
    def check_submission(self, subject: str, bindings: dict[str, str], ad: dict[str, str]) -> None:
        """A node of a DAG (its ad names DAGManJobId) comes only from that DAG's running engine."""
        text = ad.get(ATTR_DAGMAN_JOB_ID)
        if text is None:
            return
        dag_id = int_of(text, -1)
        if bindings.get(DAG_BINDING) != str(dag_id):
            raise Forbidden(f"{ATTR_DAGMAN_JOB_ID} {text}: only that DAG's own DAGMan submits its nodes")
        engine = self.engines.get(dag_id)
        if engine is None or engine.owner != subject:
            raise Conflict(f"DAG {dag_id} is not running: it submits no more nodes")
        name = string_attr(ad, ATTR_DAG_NODE_NAME)
        retry = ad.get(ATTR_DAG_NODE_RETRY, "0")
        for cluster in self.pool.schedd.queue.clusters.values():  # a node's attempt is queued once
            if (
                cluster.ad.get(ATTR_DAGMAN_JOB_ID) == str(dag_id)
                and string_attr(cluster.ad, ATTR_DAG_NODE_NAME) == name
                and cluster.ad.get(ATTR_DAG_NODE_RETRY, "0") == retry
            ):
                raise Conflict(
                    f"node {name} (retry {retry}) of DAG {dag_id} is already job {cluster.cluster_id}"
                )

    def installed(self, cluster: Cluster) -> None:
        """A new cluster is in the queue: remember a node's DAG; a new DAG job needs an engine now."""
        dag_id = int_of(cluster.ad.get(ATTR_DAGMAN_JOB_ID), 0)
        if dag_id:
            self.node_dags[cluster.cluster_id] = dag_id
        if is_dag_job(cluster):
            self.wake()

    def dag_of(self, cluster_id: int) -> int:
        """The DAG a cluster is a node of (0: none), for the engines' event stream."""
        return self.node_dags.get(cluster_id, 0)

    def load(self) -> None:
        for cluster in self.pool.schedd.queue.clusters.values():
            dag_id = int_of(cluster.ad.get(ATTR_DAGMAN_JOB_ID), 0)
            if dag_id:
                self.node_dags[cluster.cluster_id] = dag_id

    # -- the loop -----------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    async def run(self, interval: float = 1.0) -> None:
        """Tick at once when woken (a DAG job submitted, held, released or removed, an engine ended),
        else every second."""
        if self.launcher is not None:
            asyncio.get_running_loop().add_reader(self.launcher.fileno(), self.wake)
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("the DAG supervisor's tick failed")

    def dag_jobs(self) -> list[Job]:
        queue = self.pool.schedd.queue
        return [
            job for cluster in queue.clusters.values() if is_dag_job(cluster) for job in cluster.jobs.values()
        ]

    async def tick(self) -> None:
        """Make every DAG job's engine agree with the job's status."""
        if not self.url or self.launcher is None:
            return
        tx = Tx()
        self._reap(tx)
        if self.launcher.gone:
            self._launcher_lost()
            if tx.events or tx.batch:
                await self.pool.commit(tx)
            return
        jobs = self.dag_jobs()
        running = Counter(job.owner for job in jobs if job.status == RUNNING)
        for job in sorted(jobs, key=lambda job: job.status != RUNNING):  # the running recover first
            cluster_id = job.cluster.cluster_id
            engine = self.engines.get(cluster_id)
            if job.status == RUNNING and engine is None and self._may_start(cluster_id):
                self._start(tx, job)
            elif job.status == IDLE and self._may_start(cluster_id) and self._room(running, job.owner):
                running[job.owner] += 1
                self._start(tx, job)
            elif job.status == HELD and engine is not None and not engine.stopping:
                self._stop(engine, "hold", signal.SIGTERM)
        now = time.monotonic()
        for cluster_id, engine in list(self.engines.items()):
            if (
                self.pool.schedd.queue.get(cluster_id, 0) is None and not engine.stopping
            ):  # removed (it left the queue): FINAL node, rescue, stop
                self._stop(engine, "remove", signal.SIGUSR1)
            grace = self.pool.config.dag_remove_grace_s if engine.stopping == "remove" else STOP_GRACE_S
            if engine.stopping and now - engine.stop_sent > grace:
                self._signal(engine, signal.SIGKILL)
        self._forget_nodes()
        self.pool.schedd.retire(tx)
        self.pool.schedd.finish(tx)
        if tx.events or tx.batch:
            await self.pool.commit(tx)

    def _launcher_lost(self) -> None:
        """The engines' helper died (a signal to the pool's whole process group): its engines died
        with it; their DAG jobs keep their status and recover when the pool starts again."""
        self._unwatch_launcher()
        log.error(
            "the DAG engines' launcher ended; %d engine(s) ended with it. DAG jobs wait, as they are, "
            "until the pool is restarted",
            len(self.engines),
        )
        self.engines.clear()
        self.launcher = None

    def _unwatch_launcher(self) -> None:
        if self.launcher is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.launcher.fileno())
            except (RuntimeError, ValueError):
                pass

    def _room(self, running: Counter[str], owner: str) -> bool:
        """HTCondor's limits on scheduler-universe jobs: START_SCHEDULER_UNIVERSE's default
        (fewer than 500 running) and MAX_RUNNING_SCHEDULER_JOBS_PER_OWNER (200); a DAG job past
        them stays idle until one ends."""
        config = self.pool.config
        return (
            sum(running.values()) < config.max_running_scheduler_jobs
            and running[owner] < config.max_running_scheduler_jobs_per_owner
        )

    def _may_start(self, cluster_id: int) -> bool:
        crashes = self.crashes.get(cluster_id)
        return crashes is None or not crashes.times or time.monotonic() - crashes.times[-1] >= 2.0

    def _forget_nodes(self) -> None:
        live = {cluster_id for cluster_id in self.pool.schedd.queue.clusters} | set(self.engines)
        if len(self.node_dags) > 2 * len(live) + 1000:
            self.node_dags = {
                node: dag for node, dag in self.node_dags.items() if dag in live or node in live
            }

    def stop_all(self) -> None:
        """The pool stops: the engines stop too (their DAG jobs stay running and recover at the next start)."""
        self._unwatch_launcher()
        for engine in self.engines.values():
            self._stop(engine, "pool", signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while self.engines and time.monotonic() < deadline:
            for pid, _status in self.launcher.exits() if self.launcher else []:
                for cluster_id, engine in list(self.engines.items()):
                    if engine.pid == pid:
                        del self.engines[cluster_id]
            time.sleep(0.05)
        for engine in self.engines.values():
            self._signal(engine, signal.SIGKILL)
        self.engines.clear()

    # -- starting ------------------------------------------------------------------------------
    def _start(self, tx: Tx, job: Job) -> None:
        schedd = self.pool.schedd
        cluster_id = job.cluster.cluster_id
        ad = job.ad()
        account = self._account(job)
        if isinstance(account, str):
            self._hold(tx, job, account)
            return
        iwd = string_attr(ad, "Iwd") or "/"
        try:
            argv = arglist.split_v2(string_attr(ad, "Arguments") or "", "arguments")
        except arglist.SyntaxProblem as exc:
            self._hold(tx, job, f"the DAG job's arguments cannot be read: {exc}")
            return
        recovering = job.status == RUNNING or (job.get(ATTR_DAG_ENGINE_LIVE) or "").lower() == "true"
        token, _expires = self.pool.tokens.issue(
            job.owner, frozenset({Scope.USER}), min(TOKEN_LIFETIME_S, self.pool.config.max_token_lifetime_s),
            {DAG_BINDING: str(cluster_id)},
        )  # fmt: skip
        environment = self._environment(ad, account)
        environment.update(
            UPDRAFT_POOL=self.url, UPDRAFT_TOKEN=token, CONDOR_ID=f"{cluster_id}.0",
            UPDRAFT_DAG_RECOVERY="1" if recovering else "0",
            UPDRAFT_DAG_SCRIPT_TIMEOUT=str(self.pool.config.dag_script_timeout_s),
        )  # fmt: skip
        if self.ca_path:
            environment["UPDRAFT_CA"] = self.ca_path
        spec = EngineSpec(
            argv, iwd, environment,
            account.uid if account else None, account.gid if account else None,
            tuple(account.groups) if account else (),
            _absolute(iwd, string_attr(ad, "Out")), _absolute(iwd, string_attr(ad, "Err")),
        )  # fmt: skip
        assert self.launcher is not None
        try:
            pid = self.launcher.spawn(spec)
        except LaunchError as exc:
            self._hold(tx, job, f"the DAG's engine could not be started in {iwd}: {exc}")
            return
        self.engines[cluster_id] = Engine(cluster_id, pid, job.owner, time.monotonic())
        now = str(int(schedd.clock()))
        if job.status == IDLE:
            schedd.move(
                tx, job, RUNNING, "schedd", "execute", {"slot": "condor_dagman", "engine_pid": pid},
                {"JobCurrentStartDate": now, "JobStartDate": job.get("JobStartDate") or now,
                 "NumJobStarts": str(int_of(job.get("NumJobStarts")) + 1), ATTR_DAG_ENGINE_LIVE: "true",
                 "RemoteHost": quote("condor_dagman")},
            )  # fmt: skip
        log.info(
            "DAG job %d.0 of %s: engine started (pid %d)%s",
            cluster_id, job.owner, pid, ", recovering" if recovering else "",
        )  # fmt: skip

    def _account(self, job: Job) -> Account | str | None:
        """Whom the engine runs as: the owner's account (a root pool), the pool's own (unprivileged,
        only for the owner the pool's account is mapped to); a string says why not."""
        found = self.pool.identities.account_of(job.owner)
        if isinstance(found, Unmapped):
            return f"the DAG's owner has no local account to run its DAGMan as: {found.reason}"
        if os.geteuid() != 0:
            if found.uid != os.geteuid():
                return f"{job.owner} maps to {found.name}, and this pool (not root) can run DAGMan only as itself"
            return None
        if found.uid == 0 or found.gid == 0:
            return "refusing to run a DAG as root"
        return found

    @staticmethod
    def _environment(ad: dict[str, str], account: Account | None) -> dict[str, str]:
        """The DAG job's own environment (condor_submit_dag's getenv), with the account's identity."""
        environment: dict[str, str] = {}
        raw = string_attr(ad, "Environment") or ""
        if raw:
            try:
                for item in arglist.split_v2(raw, "environment"):
                    name, _, value = item.partition("=")
                    if name and name not in POOL_SET:
                        environment[name] = value
            except arglist.SyntaxProblem:
                pass
        environment.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        if account is not None:
            try:
                import pwd

                entry = pwd.getpwuid(account.uid)
                environment.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
            except KeyError:
                pass
        return environment

    # -- stopping and reaping ------------------------------------------------------------------
    def _stop(self, engine: Engine, why: str, how: signal.Signals) -> None:
        engine.stopping = why
        engine.stop_sent = time.monotonic()
        self._signal(engine, how)

    def _signal(self, engine: Engine, how: signal.Signals) -> None:
        try:
            if self.launcher is not None:
                self.launcher.signal(engine.pid, how)
        except LaunchError as exc:
            log.warning("could not signal the engine of DAG %d: %s", engine.cluster_id, exc)

    def _reap(self, tx: Tx) -> None:
        assert self.launcher is not None
        by_pid = {engine.pid: engine for engine in self.engines.values()}
        for pid, status in self.launcher.exits():
            engine = by_pid.get(pid)
            if engine is None:
                continue
            del self.engines[engine.cluster_id]
            job = self.pool.schedd.queue.get(engine.cluster_id, 0)
            log.info("DAG job %d.0: engine (pid %d) ended with %d", engine.cluster_id, pid, status)
            if job is not None and not engine.stopping and job.status == RUNNING:
                if status < 0 or status in (EXIT_ENGINE_ERROR, EXIT_TRY_LATER):
                    self._crashed(tx, job, status)
                else:
                    self._complete(tx, job, status)
            if job is None or job.status == COMPLETED:
                self._revoke_token(tx, engine.cluster_id)

    def _revoke_token(self, tx: Tx, cluster_id: int) -> None:
        """The DAG is over: its engines' tokens (bound to it) are good for nothing more."""
        now = self.pool.clock()
        key = f"bind:{DAG_BINDING}={cluster_id}"
        tx.batch.add(INSERT_REVOCATION, (key, now + self.pool.config.max_token_lifetime_s, now))
        tx.after_commit.append(lambda: self.pool.tokens.revoke(key, now))

    def _crashed(self, tx: Tx, job: Job, status: int) -> None:
        crashes = self.crashes.setdefault(job.cluster.cluster_id, Crashes())
        now = time.monotonic()
        crashes.times = [t for t in crashes.times if now - t < 3600] + [now]
        how = f"died by signal {-status}" if status < 0 else f"stopped early ({status})"
        log.warning("DAG job %s: its engine %s", job.job_id, how)
        if len(crashes.times) > self.pool.config.dag_engine_restarts:
            self._hold(
                tx, job,
                f"the DAG's engine {how} {len(crashes.times)} times within an hour"
                " (see the DAG's dagman.out and lib.err)",
            )  # fmt: skip
        # else: the next tick starts it again, recovering

    def _complete(self, tx: Tx, job: Job, exit_code: int) -> None:
        """The engine finished the DAG: its exit code is the DAG job's, under its on_exit_remove."""
        schedd = self.pool.schedd
        now = str(int(schedd.clock()))
        attrs = {
            **schedd.off_slot_attrs(job),
            "ExitBySignal": "false",
            "ExitCode": str(exit_code),
            "ExitStatus": str(exit_code),
            "ExitSignal": None,
            "CompletionDate": now,
            "JobLastExitDate": now,
            "NumJobCompletions": str(int_of(job.get("NumJobCompletions")) + 1),
            ATTR_DAG_ENGINE_LIVE: "false",
        }
        for name, text in attrs.items():
            job.set(name, text)
        details = {"exit_code": exit_code, "exit_signal": None, "slot": "condor_dagman"}
        schedd.events.record(tx, "schedd", job.cluster.cluster_id, 0, "terminate", details)
        decision = policy.on_exit(classads.build(job.ad()))
        if decision.action == "hold":
            self.pool.actions.hold(tx, job, decision.reason, decision.code, decision.subcode, "schedd")
        elif decision.action == "complete":
            schedd.move(tx, job, COMPLETED, "schedd", "complete", details)
        else:  # DAGMan's own on_exit_remove keeps a DAG that exits with 3 or more: it runs again
            schedd.move(tx, job, IDLE, "schedd", "requeue", {"reason": decision.reason})
        log.info("DAG job %s ended with exit code %d (%s)", job.job_id, exit_code, decision.action)

    def _hold(self, tx: Tx, job: Job, reason: str) -> None:
        log.warning("DAG job %s held: %s", job.job_id, reason)
        if job.status == HELD:
            return
        self.pool.actions.hold(tx, job, reason, HoldCode.FailedToCreateProcess, 0, "schedd")


def _absolute(directory: str, path: str | None) -> str:
    if not path or path == "/dev/null":
        return ""
    return path if os.path.isabs(path) else os.path.join(directory, path)
