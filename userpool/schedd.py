"""The schedd: the durable job queue and every change of a job's state.

Changes happen in memory on the event loop and are queued, in the same step, as SQL
in a Tx; the caller commits the Tx and answers only after the commit.  The one
exception is submission, which writes first and installs in memory after, because a
new cluster touches nothing anyone else can see and a refused write must leave no
trace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from userpool import classads, policy
from userpool.accountant import Accountant
from userpool.autoclusters import Autocluster, AutoclusterIndex
from userpool.claims import Claim, ClaimBook
from userpool.config import PoolConfig
from userpool.errors import BadRequest, Conflict, Forbidden, NotFound, TooLarge
from userpool.events import EventLog, Tx
from userpool.jobs import (
    CLAIMED,
    COMPLETED,
    HELD,
    IDLE,
    REMOVED,
    RUNNING,
    SUSPENDED,
    TERMINAL,
    check_transition,
)
from userpool.negotiator import Negotiator
from userpool.protocol import (
    ActRequest,
    ActResult,
    ClaimEvent,
    ClaimReport,
    EditRequest,
    HoldCode,
    JobAction,
    JobStatus,
    PilotCommand,
    SandboxFile,
    Scope,
    SubmitRequest,
    SubmitResult,
    format_job_id,
    literal,
    quote,
)
from userpool.queue import SYNTHESIZED, Cluster, Job, JobQueue
from userpool.sandbox import check_manifest
from userpool.selection import Selector
from userpool.store import Batch, Store
from userpool.tokens import Identity

log = logging.getLogger("updraft.schedd")

MAX_ATTRIBUTES = 2000
MAX_TEXT = 128 * 1024
#: attributes nobody sets by submit or edit: the schedd owns them
PROTECTED = frozenset(
    classads.canonical(n)
    for n in (
        "ClusterId", "ProcId", "JobStatus", "Owner", "User", "QDate", "MyType", "EnteredCurrentStatus",
        "NumJobStarts", "NumJobMatches", "RemoteHost", "GlobalJobId", "AuthenticatedIdentity", "NumJobCompletions",
    )
)  # fmt: skip
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

UPDATE_JOB = "UPDATE jobs SET status = ?, overrides = ? WHERE cluster_id = ? AND proc_id = ?"
DELETE_JOB = "DELETE FROM jobs WHERE cluster_id = ? AND proc_id = ?"
INSERT_HISTORY = "INSERT OR REPLACE INTO history (cluster_id, proc_id, completed, owner, status, overrides) VALUES (?, ?, ?, ?, ?, ?)"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _int(text: str | None, default: int = 0) -> int:
    if text is None:
        return default
    try:
        value = classads.value_of_text(text)
    except Exception:
        return default
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _float(text: str | None) -> float:
    if text is None:
        return 0.0
    try:
        value = classads.value_of_text(text)
    except Exception:
        return 0.0
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


class Schedd:
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
        self.negotiator = Negotiator(self.index, self.accountant, config.match_shape_ttl_s)
        self.next_cluster_id = 1
        self.reservations: dict[int, str] = {}
        #: called with the number of jobs that became idle, so waiting pilots can be woken
        self.on_idle: Callable[[int], None] = lambda count: None
        #: called when a claim gets a command or is revoked, so its pilot's poll returns at once
        self.on_claim_news: Callable[[str], None] = lambda claim_id: None
        #: called after a job completed, with its final ad, so outputs can be delivered
        self.on_completed: Callable[[Job], None] = lambda job: None

    # =========================================================================================
    # Loading
    # =========================================================================================
    def load(self) -> None:
        store = self.store
        self.next_cluster_id = int(store.meta("next_cluster_id", "1") or 1)
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
        log.info(
            "loaded %d jobs in %d clusters, %d claims",
            len(self.queue),
            len(self.queue.clusters),
            len(self.claims.active),
        )

    # =========================================================================================
    # Writing helpers
    # =========================================================================================
    def finish(self, tx: Tx) -> Tx:
        """Turn the Tx's dirty and retired jobs into SQL (call once, before committing)."""
        rows = []
        for (cluster_id, proc_id), job in tx.dirty.items():
            if job.cluster.jobs.get(proc_id) is job:
                rows.append(
                    (job.status, _dumps(job.overrides) if job.overrides else None, cluster_id, proc_id)
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
                        _dumps(j.overrides) if j.overrides else None,
                    )
                    for j in tx.retired
                ],
            )
        tx.flush_events()
        return tx

    def _touch(self, tx: Tx, job: Job) -> None:
        tx.dirty[(job.cluster.cluster_id, job.proc_id)] = job

    def _move(
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
        check_transition(job.status, status, job.job_id)
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
        self._touch(tx, job)
        self.events.record(tx, source, job.cluster.cluster_id, job.proc_id, kind, details)

    def _retire(self, tx: Tx) -> None:
        """Move finished jobs (COMPLETED, REMOVED) to history, unless LeaveJobInQueue says stay."""
        for job in list(tx.dirty.values()):
            if job.status not in TERMINAL or job.cluster.jobs.get(job.proc_id) is not job:
                continue
            if job.status == COMPLETED and self._leave_in_queue(job):
                continue
            self.queue.remove_job(job)
            tx.retired.append(job)
            if job.status == COMPLETED:
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

    def _check_ad(self, texts: Mapping[str, Any], where: str) -> dict[str, str]:
        if not isinstance(texts, Mapping):
            raise BadRequest(f"{where}: expected an object of attribute texts")
        if len(texts) > MAX_ATTRIBUTES:
            raise TooLarge(f"{where}: more than {MAX_ATTRIBUTES} attributes")
        out: dict[str, str] = {}
        for name, text in texts.items():
            if not classads.is_valid_attribute_name(name):
                raise BadRequest(f"{where}: {name!r} is not an attribute name")
            if not isinstance(text, str):
                raise BadRequest(f"{where}: {name}: value must be the text of a ClassAd expression")
            if len(text) > MAX_TEXT:
                raise TooLarge(f"{where}: {name}: expression longer than {MAX_TEXT} characters")
            classads.check(text, f"{where} attribute {name}")
            out[classads.canonical(name)] = text
        return out

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
        ad = self._check_ad(request.cluster_ad, "cluster ad")
        now = int(self.clock())
        for name, text in JOB_DEFAULTS.items():
            ad.setdefault(classads.canonical(name), text)
        universe = _int(ad.get("JobUniverse"), VANILLA)
        if universe != VANILLA:
            raise BadRequest(f"JobUniverse {universe}: Updraft runs vanilla universe jobs (5) only")
        initial_status = _int(ad.pop("JobStatus", None), int(IDLE))
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
        cluster = Cluster(cluster_id, identity.subject, ad, list(request.inputs), proc_inputs)
        rows = []
        for proc_id, delta in enumerate(request.procs):
            if delta:
                texts = self._check_ad(delta, f"proc {proc_id}")
                status = _int(texts.pop("JobStatus", None), initial_status)
                for name in PROTECTED:
                    texts.pop(name, None)
                texts = {k: v for k, v in texts.items() if ad.get(k) != v} or None
            else:
                texts, status = None, initial_status
            if status not in (IDLE, HELD):
                raise BadRequest(f"proc {proc_id}: a job is submitted Idle (1) or Held (5), not {status}")
            if texts:
                cluster.varying.update(texts)
            cluster.jobs[proc_id] = Job(cluster, proc_id, status, texts)
            rows.append((cluster_id, proc_id, status, _dumps(texts) if texts else None))
        tx = Tx()
        tx.batch.add(
            "INSERT INTO clusters (cluster_id, owner, ad, inputs, proc_inputs) VALUES (?, ?, ?, ?, ?)",
            (
                cluster_id,
                identity.subject,
                _dumps(ad),
                _dumps([f.to_dict() for f in request.inputs]),
                _dumps({str(k): [f.to_dict() for f in v] for k, v in proc_inputs.items()}),
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
        tx.flush_events()
        return cluster, tx

    def install(self, cluster: Cluster) -> SubmitResult:
        """Make a committed cluster live."""
        self.reservations.pop(cluster.cluster_id, None)
        self.queue.add_cluster(cluster)
        self.index.add_many(cluster.jobs.values())
        idle = sum(1 for job in cluster.jobs.values() if job.status == IDLE)
        if idle:
            self.on_idle(idle)
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
    # Actions
    # =========================================================================================
    def act(self, identity: Identity, request: ActRequest) -> tuple[ActResult, Tx]:
        try:
            action = (
                JobAction[request.action] if not request.action.isdigit() else JobAction(int(request.action))
            )
        except (KeyError, ValueError):
            raise BadRequest(
                f"unknown action {request.action!r} (known: {', '.join(a.name for a in JobAction)})"
            ) from None
        if not request.ids and not request.constraint and not request.owners:
            raise BadRequest("say which jobs: ids, owners or a constraint")
        jobs, missing = self.select(request.ids, request.owners, request.constraint)
        tx = Tx()
        result = ActResult(done=[], not_found=missing)
        tool = {
            JobAction.Hold: "condor_hold", JobAction.Release: "condor_release", JobAction.Remove: "condor_rm",
            JobAction.RemoveX: "condor_rm -forcex", JobAction.Suspend: "condor_suspend",
            JobAction.Continue: "condor_continue", JobAction.Vacate: "condor_vacate_job", JobAction.VacateFast: "condor_vacate_job -fast",
        }[action]  # fmt: skip
        reason = request.reason or f"via {tool} (by user {identity.subject})"
        for job in jobs:
            if job.owner != identity.subject and not identity.is_admin:
                result.refused[job.job_id] = f"not owner (job belongs to {job.owner})"
                continue
            why_not = self.apply_action(tx, job, action, reason, identity.name)
            if why_not:
                result.unchanged[job.job_id] = why_not
            else:
                result.done.append(job.job_id)
        self._retire(tx)
        return result, self.finish(tx)

    def apply_action(self, tx: Tx, job: Job, action: JobAction, reason: str, source: str) -> str:
        """Apply one action; returns why nothing changed, or '' when it did."""
        status = JobStatus(job.status)
        if action == JobAction.Hold:
            if status in (HELD, REMOVED, COMPLETED):
                return f"job is already {status.name.lower()}"
            self.hold(tx, job, reason, HoldCode.UserRequest, 0, source)
        elif action == JobAction.Release:
            if status != HELD:
                return "job is not held"
            self.release(tx, job, reason, source)
        elif action in (JobAction.Remove, JobAction.RemoveX):
            if status in (REMOVED, COMPLETED):
                return f"job is already {status.name.lower()}"
            self._end_claim(tx, job, reason)
            self._move(
                tx, job, REMOVED, source, "remove", {"reason": reason}, {"RemoveReason": quote(reason)}
            )
        elif action == JobAction.Suspend:
            if status != RUNNING:
                return "job is not running"
            claim = self.claims.of_job(job)
            self._move(
                tx,
                job,
                SUSPENDED,
                source,
                "suspend",
                {"reason": reason},
                {"LastSuspensionTime": str(int(self.clock()))},
            )
            job.set("TotalSuspensions", str(_int(job.get("TotalSuspensions")) + 1))
            if claim is not None:
                self.claims.command(claim, PilotCommand.SUSPEND, reason)
                tx.after_commit.append(lambda: self.on_claim_news(claim.claim_id))
        elif action == JobAction.Continue:
            if status != SUSPENDED:
                return "job is not suspended"
            claim = self.claims.of_job(job)
            self._move(tx, job, RUNNING, source, "continue", {"reason": reason})
            if claim is not None:
                self.claims.command(claim, PilotCommand.CONTINUE, reason)
                tx.after_commit.append(lambda: self.on_claim_news(claim.claim_id))
        elif action in (JobAction.Vacate, JobAction.VacateFast):
            if status not in CLAIMED:
                return "job is not running"
            self._end_claim(tx, job, reason)
            self._move(tx, job, IDLE, source, "evict", {"reason": reason}, self._off_slot_attrs(job))
        return ""

    def hold(self, tx: Tx, job: Job, reason: str, code: int, subcode: int, source: str) -> None:
        self._end_claim(tx, job, reason)
        attrs = {
            "HoldReason": quote(reason),
            "HoldReasonCode": str(int(code)),
            "HoldReasonSubCode": str(int(subcode)),
            "NumHolds": str(_int(job.get("NumHolds")) + 1),
        }
        if code not in (HoldCode.UserRequest, HoldCode.SubmittedOnHold):
            attrs["NumSystemHolds"] = str(_int(job.get("NumSystemHolds")) + 1)
        if job.status in CLAIMED:
            attrs.update(self._off_slot_attrs(job))
        self._move(
            tx,
            job,
            HELD,
            source,
            "hold",
            {"reason": reason, "code": int(code), "subcode": int(subcode)},
            attrs,
        )

    def release(self, tx: Tx, job: Job, reason: str, source: str) -> None:
        attrs: dict[str, str | None] = {
            "LastHoldReason": job.get("HoldReason"),
            "LastHoldReasonCode": job.get("HoldReasonCode"),
            "LastHoldReasonSubCode": job.get("HoldReasonSubCode"),
            "ReleaseReason": quote(reason),
            "HoldReason": None,
            "HoldReasonCode": None,
            "HoldReasonSubCode": None,
        }
        self._move(tx, job, IDLE, source, "release", {"reason": reason}, attrs)

    def _end_claim(self, tx: Tx, job: Job, reason: str) -> None:
        """The job stops running under its claim: the pilot is told to kill it."""
        claim = self.claims.of_job(job)
        if claim is None:
            return
        self.claims.end(claim, reason, revoke=True)
        self.accountant.charge(claim.submitter, -claim.cpus)
        tx.batch.add("DELETE FROM claims WHERE claim_id = ?", (claim.claim_id,))
        tx.after_commit.append(lambda: self.on_claim_news(claim.claim_id))

    def _off_slot_attrs(self, job: Job) -> dict[str, str | None]:
        now = int(self.clock())
        attrs: dict[str, str | None] = {"RemoteHost": None, "LastVacateTime": str(now)}
        if job.get("RemoteHost") is not None:
            attrs["LastRemoteHost"] = job.get("RemoteHost")
        started = _int(job.get("JobCurrentStartDate"), now)
        attrs["RemoteWallClockTime"] = repr(_float(job.get("RemoteWallClockTime")) + max(0, now - started))
        return attrs

    # =========================================================================================
    # Edits (condor_qedit; the frontend's overflow)
    # =========================================================================================
    def edit(self, identity: Identity, request: EditRequest) -> tuple[ActResult, Tx]:
        attrs = self._check_ad(request.attrs, "edit")
        if not attrs:
            raise BadRequest("edit needs at least one attribute")
        for name in attrs:
            if name in PROTECTED or name in SYNTHESIZED:
                raise Forbidden(f"{name} is maintained by the pool and cannot be edited")
        frontend_only = (
            not identity.is_admin and identity.has(Scope.FRONTEND) and not identity.has(Scope.USER)
        )
        if frontend_only:
            allowed = {classads.canonical(n) for n in self.config.frontend_editable}
            refused = sorted(set(attrs) - allowed)
            if refused:
                raise Forbidden(
                    f"a frontend may edit only {', '.join(sorted(allowed))}; not {', '.join(refused)}"
                )
        elif not identity.has(Scope.USER):
            raise Forbidden(f"{identity.name} may not edit jobs")
        jobs, missing = self.queue.by_ids(request.ids)
        result = ActResult(done=[], not_found=missing)
        tx = Tx()
        by_cluster: dict[int, list[Job]] = {}
        for job in jobs:
            if not frontend_only and job.owner != identity.subject and not identity.is_admin:
                result.refused[job.job_id] = f"not owner (job belongs to {job.owner})"
                continue
            if job.status in TERMINAL:
                result.unchanged[job.job_id] = "job is leaving the queue"
                continue
            by_cluster.setdefault(job.cluster.cluster_id, []).append(job)
        for cluster_id, members in by_cluster.items():
            cluster = self.queue.clusters[cluster_id]
            if len(members) == len(cluster.jobs) and len(members) > 1:
                cluster.ad.update(attrs)  # the whole cluster: one change to the cluster ad
                for job in members:
                    for name in attrs:
                        if job.overrides and name in job.overrides:
                            job.set(name, None)
                            self._touch(tx, job)
                tx.batch.add(
                    "UPDATE clusters SET ad = ? WHERE cluster_id = ?", (_dumps(cluster.ad), cluster_id)
                )
                self.index.forget_cluster(cluster)
            else:
                for job in members:
                    for name, text in attrs.items():
                        job.set(name, text)
                    self._touch(tx, job)
            for job in members:
                self.index.rekey(job)
                result.done.append(job.job_id)
            self.events.record(
                tx, identity.name, cluster_id, members[0].proc_id if len(members) == 1 else -1, "edit",
                {"attrs": attrs, "procs": [j.proc_id for j in members] if len(members) <= 100 else len(members)},
            )  # fmt: skip
        if result.done:
            tx.after_commit.append(lambda: self.on_idle(len(result.done)))
        return result, self.finish(tx)

    # =========================================================================================
    # Pilots: start, report, lease expiry
    # =========================================================================================
    def start(
        self,
        tx: Tx,
        job: Job,
        autocluster: Autocluster,
        slot: Mapping[str, str],
        slot_ad: classads.ClassAd,
        pilot: str,
    ) -> Claim:
        """A job the negotiator took out of its autocluster starts on ``slot``."""
        cpus, memory, disk = self.requests_of(autocluster, slot_ad)
        now = int(self.clock())
        slot_name = (
            classads.value_of_text(slot.get("Name", '""'))
            if classads.is_literal(slot.get("Name", '""'))
            else "unknown"
        )
        lease_s = max(10, _int(job.get("JobLeaseDuration"), 2400))
        attrs: dict[str, str | None] = {
            "RemoteHost": quote(str(slot_name)),
            "JobCurrentStartDate": str(now),
            "NumJobStarts": str(_int(job.get("NumJobStarts")) + 1),
            "JobRunCount": str(_int(job.get("JobRunCount")) + 1),
            "NumJobMatches": str(_int(job.get("NumJobMatches")) + 1),
            "LastMatchTime": str(now),
            "LastJobLeaseRenewal": str(now),
        }
        if job.get("JobStartDate") is None:
            attrs["JobStartDate"] = str(now)
        for name in ("GLIDEIN_Site", "GLIDEIN_Entry_Name", "GLIDEIN_Factory", "GLIDEIN_Name"):
            if name in slot:
                attrs[f"MATCH_EXP_JOB_{name}"] = slot[name]
        machine_attrs = job.get("JobMachineAttrs")
        if machine_attrs and classads.is_literal(machine_attrs):
            for name in str(classads.value_of_text(machine_attrs)).replace(",", " ").split():
                if classads.canonical(name) in slot:
                    attrs[f"MachineAttr{name}0"] = slot[classads.canonical(name)]
        claim = Claim(
            self.claims.new_id(), job, str(slot_name), pilot, lease_s, self.clock() + lease_s, cpus, memory, disk,
            autocluster.submitter, self.clock(),
        )  # fmt: skip
        self._move(tx, job, RUNNING, pilot, "match", {"slot": str(slot_name), "pilot": pilot}, attrs)
        self.claims.add(claim)
        self.accountant.charge(claim.submitter, cpus)
        tx.batch.add(
            "INSERT INTO claims (claim_id, cluster_id, proc_id, slot_name, pilot, lease_expires, lease_s, resources)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                claim.claim_id, job.cluster.cluster_id, job.proc_id, claim.slot_name, pilot, claim.lease_expires, lease_s,
                _dumps({"cpus": cpus, "memory_mb": memory, "disk_kb": disk, "submitter": claim.submitter}),
            ),
        )  # fmt: skip
        return claim

    def requests_of(self, autocluster: Autocluster, slot_ad: classads.ClassAd) -> tuple[int, int, int]:
        """The cores, memory and disk a job of ``autocluster`` takes from this slot."""
        if autocluster.requests is not None:
            return autocluster.requests
        job_ad = autocluster.ad
        requests = (
            self._request(autocluster, "RequestCpus", job_ad, slot_ad, 1),
            self._request(autocluster, "RequestMemory", job_ad, slot_ad, 0),
            self._request(autocluster, "RequestDisk", job_ad, slot_ad, 0),
        )
        slot_dependent = False
        for name in ("RequestCpus", "RequestMemory", "RequestDisk"):
            text = autocluster.texts.get(name)
            if text is not None and not classads.is_literal(text):
                own, target = classads.references(text)
                # TARGET.x, or an unscoped name the job does not have (looked up in the slot)
                if target or any(
                    name not in autocluster.texts for name in classads.closure(own, autocluster.texts)
                ):
                    slot_dependent = True
        if not slot_dependent:
            autocluster.requests = requests
        return requests

    @staticmethod
    def _request(
        autocluster: Autocluster, name: str, job_ad: classads.ClassAd, slot_ad: classads.ClassAd, default: int
    ) -> int:
        text = autocluster.texts.get(name)
        if text is None:
            return default
        try:
            value = classads.evaluate(text, job_ad, slot_ad)
        except classads.ExpressionError:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return default
        return max(0, int(value))

    def report(self, tx: Tx, claim: Claim, report: ClaimReport) -> None:
        job = claim.job
        try:
            event = ClaimEvent(report.event)
        except ValueError:
            raise BadRequest(
                f"unknown claim event {report.event!r} (known: {', '.join(e.value for e in ClaimEvent)})"
            ) from None
        now = int(self.clock())
        if event == ClaimEvent.STARTED:
            claim.started = True
            job.set("JobCurrentStartExecutingDate", str(now))
            self._touch(tx, job)
            self.events.record(
                tx, claim.pilot, job.cluster.cluster_id, job.proc_id, "execute", {"slot": claim.slot_name}
            )
            return
        if event in (ClaimEvent.SUSPENDED, ClaimEvent.CONTINUED):
            self.events.record(
                tx, claim.pilot, job.cluster.cluster_id, job.proc_id, event.value, {"slot": claim.slot_name}
            )
            return
        self.claims.end(claim)
        self.accountant.charge(claim.submitter, -claim.cpus)
        tx.batch.add("DELETE FROM claims WHERE claim_id = ?", (claim.claim_id,))
        usage = self._usage_attrs(job, report, claim)
        if event == ClaimEvent.VACATED:
            attrs = {**self._off_slot_attrs(job), **usage}
            self._move(
                tx, job, IDLE, claim.pilot, "evict", {"reason": report.message or "vacated by pilot"}, attrs
            )
        elif event == ClaimEvent.HELD:
            for name, text in usage.items():
                job.set(name, text)
            reason = report.hold_reason or "held by the pilot"
            self.hold(
                tx,
                job,
                reason,
                report.hold_reason_code or HoldCode.StartdHeldJob,
                report.hold_reason_subcode,
                claim.pilot,
            )
        elif event == ClaimEvent.EXITED:
            self._exited(tx, job, claim, report, usage)
        self._retire(tx)

    def _usage_attrs(self, job: Job, report: ClaimReport, claim: Claim) -> dict[str, str | None]:
        usage = report.usage or {}
        attrs: dict[str, str | None] = {}
        user = float(usage.get("RemoteUserCpu", 0.0))
        system = float(usage.get("RemoteSysCpu", 0.0))
        attrs["RemoteUserCpu"] = repr(user)
        attrs["RemoteSysCpu"] = repr(system)
        attrs["CumulativeRemoteUserCpu"] = repr(_float(job.get("CumulativeRemoteUserCpu")) + user)
        attrs["CumulativeRemoteSysCpu"] = repr(_float(job.get("CumulativeRemoteSysCpu")) + system)
        wall = max(0.0, self.clock() - claim.granted)
        attrs["CumulativeSlotTime"] = repr(_float(job.get("CumulativeSlotTime")) + wall * max(1, claim.cpus))
        if "MemoryUsage" in usage:
            memory = int(usage["MemoryUsage"])
            attrs["MemoryUsage"] = str(memory)
            attrs["ResidentSetSize"] = str(memory * 1024)
            attrs["ImageSize"] = str(max(_int(job.get("ImageSize")), memory * 1024))
        if "DiskUsage" in usage:
            attrs["DiskUsage"] = str(int(usage["DiskUsage"]))
        return attrs

    def _exited(
        self, tx: Tx, job: Job, claim: Claim, report: ClaimReport, usage: dict[str, str | None]
    ) -> None:
        now = int(self.clock())
        by_signal = report.exit_signal is not None
        attrs: dict[str, str | None] = {
            **self._off_slot_attrs(job),
            **usage,
            "ExitBySignal": literal(by_signal),
            "NumJobCompletions": str(_int(job.get("NumJobCompletions")) + 1),
            "CompletionDate": str(now),
            "JobLastExitDate": str(now),
        }
        if by_signal:
            attrs["ExitSignal"] = str(int(report.exit_signal or 0))
            attrs["ExitCode"] = None
            attrs["ExitStatus"] = str(int(report.exit_signal or 0))
        else:
            attrs["ExitCode"] = str(int(report.exit_code or 0))
            attrs["ExitStatus"] = str(int(report.exit_code or 0))
            attrs["ExitSignal"] = None
        for name, text in attrs.items():
            job.set(name, text)
        decision = policy.on_exit(classads.build(job.ad()))
        details = {"exit_code": report.exit_code, "exit_signal": report.exit_signal, "slot": claim.slot_name}
        self.events.record(tx, claim.pilot, job.cluster.cluster_id, job.proc_id, "terminate", details)
        if decision.action == "hold":
            self.hold(tx, job, decision.reason, decision.code, decision.subcode, "schedd")
        elif decision.action == "complete":
            self._move(tx, job, COMPLETED, "schedd", "complete", details)
        else:
            self._move(tx, job, IDLE, "schedd", "requeue", {"reason": decision.reason})

    def expire_leases(self) -> Tx:
        tx = Tx()
        for claim in self.claims.expired():
            job = claim.job
            self.accountant.charge(claim.submitter, -claim.cpus)
            tx.batch.add("DELETE FROM claims WHERE claim_id = ?", (claim.claim_id,))
            if self.queue.get(job.cluster.cluster_id, job.proc_id) is not job or job.status not in CLAIMED:
                continue
            reason = f"the pilot on {claim.slot_name} stopped renewing its lease ({claim.lease_s} s)"
            self._move(
                tx,
                job,
                IDLE,
                "schedd",
                "lease_expired",
                {"slot": claim.slot_name, "reason": reason},
                self._off_slot_attrs(job),
            )
        self._retire(tx)
        return self.finish(tx)

    # =========================================================================================
    # Periodic policy
    # =========================================================================================
    def periodic(self) -> Tx:
        tx = Tx()
        active = frozenset({IDLE, RUNNING, SUSPENDED, JobStatus.TRANSFERRING_OUTPUT})
        passes = (
            ("PeriodicHold", active),
            ("PeriodicRemove", active | {HELD}),
            ("PeriodicRelease", frozenset({HELD})),
        )
        for attribute, statuses in passes:
            fired = Selector(
                f"isUndefined({attribute}) || isError({attribute}) || ({attribute} =?= true) || ({attribute} > 0)"
            )
            name = classads.canonical(attribute)
            for cluster in list(self.queue.clusters.values()):
                if name not in cluster.ad and name not in cluster.varying:
                    continue
                for job in list(fired.filter(cluster)):
                    if job.status not in statuses or (
                        attribute == "PeriodicRelease"
                        and _int(job.get("HoldReasonCode")) == HoldCode.UserRequest
                    ):
                        continue
                    if job.get(name) is None:
                        continue
                    decision = policy.periodic_decision(classads.build(job.ad()), attribute)
                    if decision is None:
                        continue
                    if decision.action == "hold":
                        if job.status == HELD:
                            continue
                        self.hold(tx, job, decision.reason, decision.code, decision.subcode, "schedd")
                    elif decision.action == "remove":
                        self._end_claim(tx, job, decision.reason)
                        self._move(
                            tx,
                            job,
                            REMOVED,
                            "schedd",
                            "remove",
                            {"reason": decision.reason},
                            {"RemoveReason": quote(decision.reason)},
                        )
                    elif decision.action == "release":
                        self.release(tx, job, decision.reason, "schedd")
        self._retire(tx)
        return self.finish(tx)

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
