"""The schedd's user actions: hold, release, remove, suspend, continue, vacate, and edits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from updraft.core import classads
from updraft.core.classads import int_of
from updraft.core.errors import BadRequest, Forbidden
from updraft.core.payloads import ActRequest, ActResult, CredentialRequest, EditRequest, SandboxFile
from updraft.core.protocol import (
    ATTR_DAGMAN_JOB_ID,
    HoldCode,
    JobAction,
    JobStatus,
    PilotCommand,
    ProtocolError,
    Scope,
    quote,
    safe_relative_path,
)
from userpool import policy
from userpool.events import Tx
from userpool.jobs import CLAIMED, COMPLETED, HELD, IDLE, REMOVED, RUNNING, SUSPENDED, TERMINAL
from userpool.queue import PROTECTED, SYNTHESIZED, Job, is_dag_job
from userpool.selection import Selector
from userpool.store import UPDATE_CLUSTER_AD, UPDATE_CLUSTER_INPUTS, dumps_json
from userpool.tokens import Identity

if TYPE_CHECKING:
    from userpool.schedd import Schedd

TOOLS = {
    JobAction.Hold: "condor_hold",
    JobAction.Release: "condor_release",
    JobAction.Remove: "condor_rm",
    JobAction.RemoveX: "condor_rm -forcex",
    JobAction.Suspend: "condor_suspend",
    JobAction.Continue: "condor_continue",
    JobAction.Vacate: "condor_vacate_job",
    JobAction.VacateFast: "condor_vacate_job -fast",
}


class _Edited:
    """A job as it would read with ``attrs`` edited in (for the cost check before the edit)."""

    def __init__(self, job: Job, attrs: dict[str, str]) -> None:
        self.job, self.attrs = job, attrs

    def get(self, name: str, /) -> str | None:
        text = self.attrs.get(name)
        return text if text is not None else self.job.get(name)


class JobActions:
    """Changes users (and policy) ask for, made through the schedd's transitions."""

    def __init__(self, schedd: Schedd) -> None:
        self.schedd = schedd

    # =========================================================================================
    # Actions
    # =========================================================================================
    def act(self, identity: Identity, request: ActRequest) -> tuple[ActResult, Tx]:
        identity.require(Scope.USER)  # a pilot or frontend token with a user's name is not that user
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
        jobs, missing = self.schedd.select(request.ids, request.owners, request.constraint)
        tx = Tx()
        result = ActResult(done=[], not_found=missing)
        reason = request.reason or f"via {TOOLS[action]} (by user {identity.subject})"
        for job in jobs:
            if job.owner != identity.subject and not identity.is_admin:
                result.refused[job.job_id] = f"not owner (job belongs to {job.owner})"
                continue
            why_not = self.apply_action(tx, job, action, reason, identity.name)
            if why_not:
                result.unchanged[job.job_id] = why_not
            else:
                result.done.append(job.job_id)
        self.schedd.retire(tx)
        return result, self.schedd.finish(tx)

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
            self.schedd.end_claim(tx, job, reason)
            self.schedd.move(
                tx, job, REMOVED, source, "remove", {"reason": reason}, {"RemoveReason": quote(reason)}
            )
            if is_dag_job(job.cluster):
                self.remove_dag_nodes(tx, job, source)
        elif action == JobAction.Suspend:
            if status != RUNNING:
                return "job is not running"
            claim = self.schedd.claims.of_job(job)
            self.schedd.move(
                tx,
                job,
                SUSPENDED,
                source,
                "suspend",
                {"reason": reason},
                {"LastSuspensionTime": str(int(self.schedd.clock()))},
            )
            job.set("TotalSuspensions", str(int_of(job.get("TotalSuspensions")) + 1))
            if claim is not None:
                self.schedd.claims.command(claim, PilotCommand.SUSPEND, reason)
                tx.after_commit.append(lambda: self.schedd.on_claim_news(claim.claim_id))
        elif action == JobAction.Continue:
            if status != SUSPENDED:
                return "job is not suspended"
            claim = self.schedd.claims.of_job(job)
            self.schedd.move(tx, job, RUNNING, source, "continue", {"reason": reason})
            if claim is not None:
                self.schedd.claims.command(claim, PilotCommand.CONTINUE, reason)
                tx.after_commit.append(lambda: self.schedd.on_claim_news(claim.claim_id))
        elif action in (JobAction.Vacate, JobAction.VacateFast):
            if status not in CLAIMED:
                return "job is not running"
            self.schedd.end_claim(tx, job, reason)
            self.schedd.move(
                tx, job, IDLE, source, "evict", {"reason": reason}, self.schedd.off_slot_attrs(job)
            )
        return ""

    def remove_dag_nodes(self, tx: Tx, dag_job: Job, source: str) -> None:
        """A removed DAG job takes its queued and running nodes with it (HTCondor's
        OtherJobRemoveRequirements), a node that is a DAG itself its own nodes too."""
        cluster_id = dag_job.cluster.cluster_id
        reason = f"removed with its DAG (job {dag_job.job_id})"
        nodes, _missing = self.schedd.select([], [dag_job.owner], f"{ATTR_DAGMAN_JOB_ID} == {cluster_id}")
        for node in nodes:
            if node.status not in TERMINAL:
                self.apply_action(tx, node, JobAction.Remove, reason, source)

    def hold(self, tx: Tx, job: Job, reason: str, code: int, subcode: int, source: str) -> None:
        self.schedd.end_claim(tx, job, reason)
        attrs = {
            "HoldReason": quote(reason),
            "HoldReasonCode": str(int(code)),
            "HoldReasonSubCode": str(int(subcode)),
            "NumHolds": str(int_of(job.get("NumHolds")) + 1),
        }
        if code not in (HoldCode.UserRequest, HoldCode.SubmittedOnHold):
            attrs["NumSystemHolds"] = str(int_of(job.get("NumSystemHolds")) + 1)
        if job.status in CLAIMED:
            attrs.update(self.schedd.off_slot_attrs(job))
        self.schedd.move(
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
        self.schedd.move(tx, job, IDLE, source, "release", {"reason": reason}, attrs)

    # =========================================================================================
    # Edits (condor_qedit; the frontend's overflow)
    # =========================================================================================
    def edit(self, identity: Identity, request: EditRequest) -> tuple[ActResult, Tx]:
        attrs = self.schedd.check_ad(request.attrs, "edit")
        if not attrs:
            raise BadRequest("edit needs at least one attribute")
        for name in attrs:
            if name in PROTECTED or name in SYNTHESIZED:
                raise Forbidden(f"{name} is maintained by the pool and cannot be edited")
        frontend_only = (
            not identity.is_admin and identity.has(Scope.FRONTEND) and not identity.has(Scope.USER)
        )
        if frontend_only:
            allowed = {classads.canonical(n) for n in self.schedd.config.frontend_editable}
            refused = sorted(set(attrs) - allowed)
            if refused:
                raise Forbidden(
                    f"a frontend may edit only {', '.join(sorted(allowed))}; not {', '.join(refused)}"
                )
        elif not identity.has(Scope.USER):
            raise Forbidden(f"{identity.name} may not edit jobs")
        jobs, missing = self.schedd.queue.by_ids(request.ids)
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
        if any(not classads.is_literal(text) for text in attrs.values()):
            for members in by_cluster.values():  # before anything changes: all or nothing
                for job in {frozenset((job.overrides or {}).items()): job for job in members}.values():
                    view = _Edited(job, attrs)
                    self.schedd.check_cost(
                        view, {*job.cluster.ad, *(job.overrides or {}), *attrs}, f"edit of {job.job_id}"
                    )
        for cluster_id, members in by_cluster.items():
            cluster = self.schedd.queue.clusters[cluster_id]
            if len(members) == len(cluster.jobs) and len(members) > 1:
                cluster.ad.update(attrs)  # the whole cluster: one change to the cluster ad
                for job in members:
                    for name in attrs:
                        if job.overrides and name in job.overrides:
                            job.set(name, None)
                            self.schedd.touch(tx, job)
                tx.batch.add(UPDATE_CLUSTER_AD, (dumps_json(cluster.ad), cluster_id))
                self.schedd.index.forget_cluster(cluster)
            else:
                for job in members:
                    for name, text in attrs.items():
                        job.set(name, text)
                    self.schedd.touch(tx, job)
            for job in members:
                self.schedd.index.rekey(job)
                result.done.append(job.job_id)
            self.schedd.events.record(
                tx, identity.name, cluster_id, members[0].proc_id if len(members) == 1 else -1, "edit",
                {"attrs": attrs, "procs": [j.proc_id for j in members] if len(members) <= 100 else len(members)},
            )  # fmt: skip
        if result.done:
            tx.after_commit.append(lambda: self.schedd.on_idle(len(result.done)))
        return result, self.schedd.finish(tx)

    # =========================================================================================
    # Credentials (the owner refreshed the proxy the jobs carry)
    # =========================================================================================
    def refresh_credential(
        self, identity: Identity, request: CredentialRequest, blob_present: bool
    ) -> tuple[ActResult, Tx]:
        """Point the jobs' sandbox at a new proxy and tell the pilots running them to fetch it."""
        identity.require(Scope.USER)
        if not blob_present:
            raise BadRequest(f"the new proxy ({request.digest[:12]}...) was not uploaded")
        try:
            name = safe_relative_path(request.path)
        except ProtocolError as exc:
            raise BadRequest(str(exc)) from None
        jobs, missing = self.schedd.queue.by_ids(request.ids)
        result = ActResult(done=[], not_found=missing)
        tx = Tx()
        for job in jobs:
            if job.owner != identity.subject and not identity.is_admin:
                result.refused[job.job_id] = f"not owner (job belongs to {job.owner})"
                continue
            inputs = job.cluster.inputs_of(job.proc_id)
            if not any(item.path == name for item in inputs):
                result.unchanged[job.job_id] = f"the job has no {name} in its sandbox"
                continue
            fresh = [
                SandboxFile(name, request.digest, request.size, 0o600) if item.path == name else item
                for item in inputs
            ]
            job.cluster.proc_inputs[job.proc_id] = fresh
            if request.expiration:
                job.set("x509UserProxyExpiration", str(int(request.expiration)))
                self.schedd.touch(tx, job)
            tx.batch.add(
                UPDATE_CLUSTER_INPUTS,
                (
                    dumps_json(
                        {str(k): [f.to_dict() for f in v] for k, v in job.cluster.proc_inputs.items()}
                    ),
                    job.cluster.cluster_id,
                ),
            )
            claim = self.schedd.claims.of_job(job)
            if claim is not None:
                details = {"path": name, "digest": request.digest, "size": str(request.size)}
                self.schedd.claims.command(
                    claim, PilotCommand.REFRESH_CREDENTIAL, "the owner refreshed the proxy", details
                )
                tx.after_commit.append(lambda claim_id=claim.claim_id: self.schedd.on_claim_news(claim_id))
            self.schedd.events.record(
                tx,
                identity.name,
                job.cluster.cluster_id,
                job.proc_id,
                "credential_refreshed",
                {"path": name, "running": claim is not None},
            )
            result.done.append(job.job_id)
        return result, self.schedd.finish(tx)

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
            for cluster in list(self.schedd.queue.clusters.values()):
                if name not in cluster.ad and name not in cluster.varying:
                    continue
                for job in list(fired.filter(cluster)):
                    if job.status not in statuses or (
                        attribute == "PeriodicRelease"
                        and int_of(job.get("HoldReasonCode")) == HoldCode.UserRequest
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
                        self.schedd.end_claim(tx, job, decision.reason)
                        self.schedd.move(
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
        self.schedd.retire(tx)
        return self.schedd.finish(tx)
