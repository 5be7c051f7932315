"""The schedd: the durable job queue and every change of a job's state.

Changes happen in memory on the event loop and are queued, in the same step, as SQL
in a Tx; the caller commits the Tx and answers only after the commit.  The one
exception is submission, which writes first and installs in memory after, because a
new cluster touches nothing anyone else can see and a refused write must leave no
trace.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from updraft.core import classads
from updraft.core.classads import float_of, int_of
from updraft.core.errors import BadRequest, Conflict, Forbidden, NotFound, TooCostly, TooLarge
from updraft.core.payloads import SandboxFile, SubmitRequest, SubmitResult
from updraft.core.protocol import (
    MAX_AD_ATTRIBUTES,
    MAX_EXPRESSION_TEXT,
    SCHEDULER_UNIVERSE,
    JobStatus,
    Scope,
    format_job_id,
    quote,
)
from userpool import exprcost
from userpool.accountant import Accountant
from userpool.autoclusters import AutoclusterIndex
from userpool.claims import Claim, ClaimBook
from userpool.config import PoolConfig
from userpool.events import EventLog, Tx
from userpool.jobs import (
    CLAIMED,
    COMPLETED,
    HELD,
    IDLE,
    JOB_STATES,
    TERMINAL,
)
from userpool.negotiator import Negotiator
from userpool.queue import PROTECTED, Cluster, Job, JobQueue, check_dag_job, is_dag_job
from userpool.sandbox import check_manifest
from userpool.selection import Selector
from userpool.store import (
    DELETE_CLAIM,
    DELETE_JOB,
    INSERT_DELIVERY,
    INSERT_HISTORY,
    UPDATE_JOB,
    Batch,
    Store,
    dumps_json,
)
from userpool.tokens import Identity

log = logging.getLogger("updraft.schedd")

#: what the schedd fills in when the submitter left it out (HTCondor's JOB_DEFAULT_* knobs)
JOB_DEFAULTS = {
    "JobUniverse": "5",
    "Requirements": "true",
    "RequestCpus": "1",
    "RequestMemory": "ifthenelse(MemoryUsage isnt undefined,MemoryUsage,(ImageSize + 1023) / 1024)",
    "RequestDisk": "DiskUsage",
    "JobLeaseDuration": "2400",
    "JobPrio": "0",
    "NumJobStarts": "0",
    "NumJobCompletions": "0",
    "ImageSize": "0",
    "DiskUsage": "0",
}
VANILLA = 5
#: the events that end or stop a job: they say whose it was
OUTCOME_KINDS = frozenset({"complete", "remove", "hold"})


class Schedd:
    """The queue and its transitions: the one writer of job state, the pool's core.

    JobActions (userpool/actions.py) and Leases (userpool/leases.py) change jobs only through
    its public methods: ``move``, ``touch``, ``retire``, ``finish``, ``end_claim``.
    """

    def __init__(
        self, config: PoolConfig, store: Store, events: EventLog, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.store = store
        self.events = events
        self.clock = clock
        self.queue = JobQueue()
        self.index = AutoclusterIndex(self.queue)
        self.claims = ClaimBook(clock)
        self.accountant = Accountant(store, config.priority_halflife_s, config.default_prio_factor, clock)
        self.negotiator = Negotiator(
            self.index,
            self.accountant,
            config.match_shape_ttl_s,
            eval_budget_s=config.match_eval_budget_ms / 1000.0,
            penalty_s=config.match_penalty_s,
        )
        self.next_cluster_id = 1
        self.reservations: dict[int, str] = {}
        #: called with the number of jobs that became idle, so waiting pilots can be woken
        self.on_idle: Callable[[int], None] = lambda count: None
        #: called when a claim gets a command or is revoked, so its pilot's poll returns at once
        self.on_claim_news: Callable[[str], None] = lambda claim_id: None
        #: called after a job completed, with its final ad, so outputs can be delivered
        self.on_completed: Callable[[Job], None] = lambda job: None
        #: before the commit of a completion whose output will be delivered (the outbox expects it)
        self.on_completing: Callable[[Job], None] = lambda job: None
        #: checks a cluster ad that names a DAG (subject, token bindings, ad): only its engine submits nodes
        self.check_node: Callable[[str, dict[str, str], dict[str, str]], None] = lambda *args: None
        #: called with each new cluster once it is live, and after a DAG job changed status
        self.on_installed: Callable[[Cluster], None] = lambda cluster: None
        self.on_dag_change: Callable[[], None] = lambda: None

    # =========================================================================================
    # Loading
    # =========================================================================================
    def load(self) -> None:
        store = self.store
        self.next_cluster_id = max(int(store.meta("next_cluster_id", "1") or 1), self._ids_in_use() + 1)
        for cluster_id, owner in store.read("SELECT cluster_id, owner FROM reservations"):
            self.reservations[cluster_id] = owner
        clusters: dict[int, Cluster] = {}
        for cluster_id, owner, ad, inputs, proc_inputs in store.read_iter(
            "SELECT cluster_id, owner, ad, inputs, proc_inputs FROM clusters"
            " WHERE cluster_id IN (SELECT DISTINCT cluster_id FROM jobs)"
        ):
            clusters[cluster_id] = Cluster(
                cluster_id,
                owner,
                {classads.canonical(k): v for k, v in orjson.loads(ad).items()},
                [SandboxFile.from_dict(f) for f in orjson.loads(inputs)],
                {int(k): [SandboxFile.from_dict(f) for f in v] for k, v in orjson.loads(proc_inputs).items()},
            )
        for cluster_id, proc_id, status, overrides in store.read_iter(
            "SELECT cluster_id, proc_id, status, overrides FROM jobs ORDER BY cluster_id, proc_id"
        ):
            cluster = clusters[cluster_id]
            texts = (
                {classads.canonical(k): v for k, v in orjson.loads(overrides).items()} if overrides else None
            )
            if texts:
                cluster.varying.update(texts)
            cluster.jobs[proc_id] = Job(cluster, proc_id, status, texts)
        for cluster in clusters.values():
            self.queue.add_cluster(cluster)
            self.index.add_many(cluster.jobs.values())
        now = self.clock()
        for claim_id, cluster_id, proc_id, slot_name, pilot, _expires, lease_s, resources in store.read(
            "SELECT claim_id, cluster_id, proc_id, slot_name, pilot, lease_expires, lease_s, resources FROM claims"
        ):
            job = self.queue.get(cluster_id, proc_id)
            if job is None or job.status not in CLAIMED:
                continue
            amounts = orjson.loads(resources)
            # a restart grants a full lease: pilots get the whole lease to find the pool again
            claim = Claim(
                claim_id, job, slot_name, pilot, lease_s, now + lease_s, amounts["cpus"], amounts["memory_mb"],
                amounts["disk_kb"], amounts["submitter"], now, True,
            )  # fmt: skip
            self.claims.add(claim)
            self.accountant.charge(claim.submitter, claim.cpus)
        self._requeue_unclaimed()
        log.info(
            "loaded %d jobs in %d clusters, %d claims",
            len(self.queue),
            len(self.queue.clusters),
            len(self.claims.active),
        )

    def _ids_in_use(self) -> int:
        """The highest cluster id the history, the queue or the spool knows.

        The counter in the database is the authority, but a queue moved aside (or restored
        from an older backup) next to a spool must never hand out an id whose output is there.
        """
        highest = 0
        for table in ("clusters", "history"):
            rows = self.store.read(f"SELECT MAX(cluster_id) FROM {table}")
            highest = max(highest, int(rows[0][0] or 0))
        try:
            names = os.listdir(self.config.spool_dir)
        except OSError:
            names = []
        return max([highest, *(int(name) for name in names if name.isdigit() and len(name) < 19)])

    def _requeue_unclaimed(self) -> None:
        """A job recorded as running with no claim on disk cannot be reached by any pilot: requeue it."""
        orphans = [
            job
            for job in self.queue.jobs()
            if job.status in CLAIMED and self.claims.of_job(job) is None and not is_dag_job(job.cluster)
        ]  # a DAG job runs in the pool, with no claim: the DAG supervisor starts it again
        if not orphans:
            return
        tx = Tx()
        for job in orphans:
            reason = "no claim survived the pool's restart"
            self.move(tx, job, IDLE, "schedd", "evict", {"reason": reason}, self.off_slot_attrs(job))
        self.store.write_now(self.events.seal(self.finish(tx)).batch)
        log.warning("requeued %d running job(s) that had no claim", len(orphans))

    # =========================================================================================
    # Writing helpers
    # =========================================================================================
    def finish(self, tx: Tx) -> Tx:
        """Turn the Tx's dirty and retired jobs into SQL (call once, before committing)."""
        rows = []
        for (cluster_id, proc_id), job in tx.dirty.items():
            if job.cluster.jobs.get(proc_id) is job:
                rows.append(
                    (job.status, dumps_json(job.overrides) if job.overrides else None, cluster_id, proc_id)
                )
        if rows:
            tx.batch.add_many(UPDATE_JOB, rows)
        if tx.retired:
            now = self.clock()
            tx.batch.add_many(DELETE_JOB, [(j.cluster.cluster_id, j.proc_id) for j in tx.retired])
            tx.batch.add_many(
                INSERT_HISTORY,
                [
                    (
                        j.cluster.cluster_id,
                        j.proc_id,
                        now,
                        j.cluster.owner,
                        j.status,
                        dumps_json(j.overrides) if j.overrides else None,
                    )
                    for j in tx.retired
                ],
            )
            tx.batch.add_many(
                INSERT_DELIVERY,
                [(j.cluster.cluster_id, j.proc_id) for j in tx.retired if j.status == COMPLETED],
            )
        return tx

    def touch(self, tx: Tx, job: Job) -> None:
        tx.dirty[(job.cluster.cluster_id, job.proc_id)] = job

    def move(
        self,
        tx: Tx,
        job: Job,
        status: int,
        source: str,
        kind: str,
        details: dict[str, Any] | None = None,
        attrs: Mapping[str, str | None] | None = None,
    ) -> None:
        """The one way a job's JobStatus changes: table-checked, evented, indexed, persisted."""
        JOB_STATES.advance(JobStatus(job.status), JobStatus(status), job.job_id)
        was_idle = job.status == IDLE
        if was_idle:
            self.index.remove(job)
        self.queue.set_status(job, status)
        job.set("EnteredCurrentStatus", str(int(self.clock())))
        for name, text in (attrs or {}).items():
            job.set(name, text)
        if status == IDLE:
            self.index.add(job)
            tx.after_commit.append(lambda: self.on_idle(1))
        if is_dag_job(job.cluster):
            tx.after_commit.append(self.on_dag_change)
        self.touch(tx, job)
        if kind in OUTCOME_KINDS:  # whose job it was, for the monitor's per-user and per-group counts
            group = job.get("AcctGroup")
            details = {**(details or {}), "owner": job.owner}
            if group and classads.is_literal(group):
                details["group"] = str(classads.value_of_text(group))
        self.events.record(tx, source, job.cluster.cluster_id, job.proc_id, kind, details)

    def retire(self, tx: Tx) -> None:
        """Move finished jobs (COMPLETED, REMOVED) to history, unless LeaveJobInQueue says stay."""
        for job in list(tx.dirty.values()):
            if job.status not in TERMINAL or job.cluster.jobs.get(job.proc_id) is not job:
                continue
            if job.status == COMPLETED and self._leave_in_queue(job):
                continue
            self.queue.remove_job(job)
            tx.retired.append(job)
            if job.status == COMPLETED:
                self.on_completing(job)
                tx.after_commit.append(lambda job=job: self.on_completed(job))

    def _leave_in_queue(self, job: Job) -> bool:
        text = job.get("LeaveJobInQueue")
        if text is None or text.strip().lower() == "false":
            return False
        try:
            return classads.is_true(classads.evaluate(text, classads.build(job.ad())))
        except classads.ExpressionError:
            return False

    # =========================================================================================
    # Submission
    # =========================================================================================
    def reserve(self, identity: Identity) -> tuple[int, Batch]:
        identity.require(Scope.USER)
        cluster_id = self.next_cluster_id
        self.next_cluster_id += 1
        self.reservations[cluster_id] = identity.subject
        batch = Batch()
        Store.set_meta(batch, "next_cluster_id", str(self.next_cluster_id))
        batch.add(
            "INSERT INTO reservations (cluster_id, owner, time) VALUES (?, ?, ?)",
            (cluster_id, identity.subject, self.clock()),
        )
        return cluster_id, batch

    def check_ad(
        self,
        texts: Mapping[str, Any],
        where: str,
        names: dict[str, str] | None = None,
        parsed: list[str] | None = None,
    ) -> dict[str, str]:
        """The ad's texts under their canonical names, each name and expression checked.

        ``names``: checked names -> canonical, shared by the procs of one submission, which
        spell the same few names 100,000 times.  ``parsed`` collects the names whose texts
        needed the parser (the rest are plain strings and integers, literals for sure).
        """
        if not isinstance(texts, Mapping):
            raise BadRequest(f"{where}: expected an object of attribute texts")
        if len(texts) > MAX_AD_ATTRIBUTES:
            raise TooLarge(f"{where}: more than {MAX_AD_ATTRIBUTES} attributes")
        known = {} if names is None else names
        out: dict[str, str] = {}
        for name, text in texts.items():
            canonical = known.get(name)
            if canonical is None:
                if not classads.is_valid_attribute_name(name):
                    raise BadRequest(f"{where}: {name!r} is not an attribute name")
                canonical = known[name] = classads.canonical(name)
            if not isinstance(text, str):
                raise BadRequest(f"{where}: {name}: value must be the text of a ClassAd expression")
            if len(text) > MAX_EXPRESSION_TEXT:
                raise TooLarge(f"{where}: {name}: expression longer than {MAX_EXPRESSION_TEXT} characters")
            if not classads.plainly_literal(text):
                classads.check(text, f"{where} attribute {name}")
                if parsed is not None:
                    parsed.append(canonical)
            out[canonical] = text
        return out

    def check_cost(self, texts: Any, names: Iterable[str], where: str) -> None:
        """Refuse an ad whose expressions would take too long to evaluate (see exprcost)."""
        problem = exprcost.over_budget(
            texts,
            [n for n in names if not classads.is_literal(texts.get(n) or "0")],
            self.config.max_expression_terms,
            self.config.max_expression_depth,
        )
        if problem:
            raise TooCostly(f"{where}: {problem}")

    def prepare_submit(
        self, identity: Identity, request: SubmitRequest, blobs_present: Callable[[str], bool]
    ) -> tuple[Cluster, Tx]:
        """Validate a cluster and build its rows; nothing is in memory until install()."""
        identity.require(Scope.USER)
        cluster_id = request.cluster_id
        reserved_by = self.reservations.get(cluster_id)
        if reserved_by is None:
            raise Conflict(f"cluster {cluster_id} was not reserved (or was already used); ask for a new one")
        if reserved_by != identity.subject and not identity.is_admin:
            raise Forbidden(f"cluster {cluster_id} was reserved by {reserved_by}")
        if not request.procs:
            raise BadRequest("a cluster needs at least one proc")
        if len(request.procs) > self.config.max_jobs_per_submission:
            raise TooLarge(
                f"{len(request.procs)} procs; this pool takes at most {self.config.max_jobs_per_submission} per submission"
            )
        ad = self.check_ad(request.cluster_ad, "cluster ad")
        now = int(self.clock())
        for name, text in JOB_DEFAULTS.items():
            ad.setdefault(classads.canonical(name), text)
        universe = int_of(ad.get("JobUniverse"), VANILLA)
        if universe == SCHEDULER_UNIVERSE:
            check_dag_job(ad, len(request.procs))
        elif universe != VANILLA:
            raise BadRequest(f"JobUniverse {universe}: Updraft runs vanilla universe jobs (5) only")
        self.check_node(identity.subject, identity.bindings, ad)
        initial_status = int_of(ad.pop("JobStatus", None), int(IDLE))
        for name in ("ClusterId", "ProcId"):
            ad.pop(name, None)
        ad["Owner"] = quote(identity.subject)
        ad["User"] = quote(f"{identity.subject}@updraft")
        ad["QDate"] = str(now)
        ad["EnteredCurrentStatus"] = str(now)
        max_file = self.config.max_input_file_mb << 20
        max_total = self.config.max_input_sandbox_mb << 20
        check_manifest(request.inputs, max_file, max_total)
        proc_inputs: dict[int, list[SandboxFile]] = {}
        for key, files in request.proc_inputs.items():
            try:
                index = int(key)
            except ValueError:
                raise BadRequest(f"proc_inputs key {key!r} is not a proc index") from None
            if not 0 <= index < len(request.procs):
                raise BadRequest(f"proc_inputs names proc {index}, which is not in this cluster")
            check_manifest(files, max_file, max_total)
            proc_inputs[index] = list(files)
        for item in [*request.inputs, *(f for files in proc_inputs.values() for f in files)]:
            if not blobs_present(item.digest):
                raise BadRequest(f"input {item.path!r} ({item.digest[:12]}...) was not uploaded")
        self.check_cost(ad, ad, "cluster ad")
        cluster = Cluster(cluster_id, identity.subject, ad, list(request.inputs), proc_inputs)
        rows = []
        costed: set[frozenset[tuple[str, str]]] = set()
        names: dict[str, str] = {}
        for proc_id, delta in enumerate(request.procs):
            if delta:
                parsed: list[str] = []
                texts = self.check_ad(delta, f"proc {proc_id}", names, parsed)
                status = int_of(texts.pop("JobStatus", None), initial_status)
                for name in PROTECTED.intersection(texts):
                    del texts[name]
                texts = {k: v for k, v in texts.items() if ad.get(k) != v} or None
            else:
                texts, status, parsed = None, initial_status, []
            if status not in (IDLE, HELD):
                raise BadRequest(f"proc {proc_id}: a job is submitted Idle (1) or Held (5), not {status}")
            if texts:
                cluster.varying.update(texts)
            job = cluster.jobs[proc_id] = Job(cluster, proc_id, status, texts)
            if texts and parsed:  # only a text that needed the parser can be more than a literal
                computed = frozenset(
                    (k, v) for k in parsed if (v := texts.get(k)) is not None and not classads.is_literal(v)
                )
                if computed and computed not in costed:  # procs share their few distinct expressions
                    costed.add(computed)
                    self.check_cost(job, {*ad, *texts}, f"proc {proc_id}")
            rows.append((cluster_id, proc_id, status, dumps_json(texts) if texts else None))
        tx = Tx()
        tx.batch.add(
            "INSERT INTO clusters (cluster_id, owner, ad, inputs, proc_inputs) VALUES (?, ?, ?, ?, ?)",
            (
                cluster_id,
                identity.subject,
                dumps_json(ad),
                dumps_json([f.to_dict() for f in request.inputs]),
                dumps_json({str(k): [f.to_dict() for f in v] for k, v in proc_inputs.items()}),
            ),
        )
        tx.batch.add_many(
            "INSERT INTO jobs (cluster_id, proc_id, status, overrides) VALUES (?, ?, ?, ?)", rows
        )
        tx.batch.add("DELETE FROM reservations WHERE cluster_id = ?", (cluster_id,))
        batch_name = ad.get("JobBatchName")
        self.events.record(
            tx, identity.name, cluster_id, -1, "submit",
            {"procs": len(rows), "owner": identity.subject, "batch": classads.value_of_text(batch_name) if batch_name and classads.is_literal(batch_name) else None},
        )  # fmt: skip
        held = sum(1 for job in cluster.jobs.values() if job.status == HELD)
        if held:
            self.events.record(
                tx, identity.name, cluster_id, -1, "hold", {"procs": held, "reason": "submitted on hold"}
            )
        return cluster, tx

    def install(self, cluster: Cluster) -> SubmitResult:
        """Make a committed cluster live."""
        self.reservations.pop(cluster.cluster_id, None)
        self.queue.add_cluster(cluster)
        self.index.add_many(cluster.jobs.values())
        idle = sum(1 for job in cluster.jobs.values() if job.status == IDLE)
        if idle:
            self.on_idle(idle)
        self.on_installed(cluster)
        return SubmitResult(cluster.cluster_id, 0, len(cluster.jobs))

    # =========================================================================================
    # Selecting
    # =========================================================================================
    def select(
        self, ids: Iterable[str], owners: Iterable[str], constraint: str
    ) -> tuple[list[Job], list[str]]:
        """Jobs named by ids (all if none), restricted to owners and a constraint; plus unknown ids."""
        id_list = list(ids)
        owner_set = set(owners)
        selector = Selector(constraint)
        if id_list:
            jobs, missing = self.queue.by_ids(id_list)
            if owner_set:
                jobs = [j for j in jobs if j.owner in owner_set]
            if selector:
                jobs = [j for j in jobs if selector.matches(j)]
            return jobs, missing
        out: list[Job] = []
        for cluster in self.queue.clusters.values():
            if owner_set and cluster.owner not in owner_set:
                continue
            out.extend(selector.filter(cluster))
        return out, []

    # =========================================================================================
    # Claims ending (used by the job actions and the leases)
    # =========================================================================================
    def end_claim(self, tx: Tx, job: Job, reason: str) -> None:
        """The job stops running under its claim: the pilot is told to kill it."""
        claim = self.claims.of_job(job)
        if claim is None:
            return
        self.claims.end(claim, reason, revoke=True)
        self.accountant.charge(claim.submitter, -claim.cpus)
        tx.batch.add(DELETE_CLAIM, (claim.claim_id,))
        tx.after_commit.append(lambda: self.on_claim_news(claim.claim_id))

    def off_slot_attrs(self, job: Job) -> dict[str, str | None]:
        now = int(self.clock())
        attrs: dict[str, str | None] = {"RemoteHost": None, "LastVacateTime": str(now)}
        if job.get("RemoteHost") is not None:
            attrs["LastRemoteHost"] = job.get("RemoteHost")
        started = int_of(job.get("JobCurrentStartDate"), now)
        attrs["RemoteWallClockTime"] = repr(float_of(job.get("RemoteWallClockTime")) + max(0, now - started))
        return attrs

    # =========================================================================================
    # Views
    # =========================================================================================
    def job_or_404(self, job_id: str) -> Job:
        job = self.queue.find(job_id)
        if job is None:
            raise NotFound(f"job {job_id} is not in the queue")
        return job

    def job_id_of(self, claim: Claim) -> str:
        return format_job_id(claim.job.cluster.cluster_id, claim.job.proc_id)
