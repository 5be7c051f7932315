"""Claims and their leases: starting matched jobs, the pilots' reports, leases that run out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from updraft.core import classads, protocol
from updraft.core.classads import float_of, int_of
from updraft.core.errors import BadRequest
from updraft.core.payloads import ClaimReport
from updraft.core.protocol import ClaimEvent, HoldCode, literal, quote
from userpool import policy
from userpool.autoclusters import Autocluster
from userpool.claims import Claim, slot_name_of
from userpool.events import Tx
from userpool.jobs import CLAIMED, COMPLETED, IDLE, RUNNING
from userpool.queue import Job
from userpool.store import DELETE_CLAIM, INSERT_CLAIM, dumps_json

if TYPE_CHECKING:
    from userpool.actions import JobActions
    from userpool.schedd import Schedd


class Leases:
    """Claims under their leases: a match started, the pilot's reports, leases running out."""

    def __init__(self, schedd: Schedd, actions: JobActions) -> None:
        self.schedd = schedd
        self.actions = actions

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
        now = int(self.schedd.clock())
        slot_name = slot_name_of(slot)
        lease_s = max(10, int_of(job.get("JobLeaseDuration"), 2400))
        attrs: dict[str, str | None] = {
            "RemoteHost": quote(slot_name),
            "JobCurrentStartDate": str(now),
            "NumJobStarts": str(int_of(job.get("NumJobStarts")) + 1),
            "JobRunCount": str(int_of(job.get("JobRunCount")) + 1),
            "NumJobMatches": str(int_of(job.get("NumJobMatches")) + 1),
            "LastMatchTime": str(now),
            "LastJobLeaseRenewal": str(now),
        }
        if job.get("JobStartDate") is None:
            attrs["JobStartDate"] = str(now)
        for name in (
            protocol.ATTR_GLIDEIN_SITE,
            protocol.ATTR_GLIDEIN_ENTRY,
            protocol.ATTR_GLIDEIN_FACTORY,
            protocol.ATTR_GLIDEIN_NAME,
        ):
            if name in slot:
                attrs[f"MATCH_EXP_JOB_{name}"] = slot[name]
        machine_attrs = job.get("JobMachineAttrs")
        if machine_attrs and classads.is_literal(machine_attrs):
            for name in str(classads.value_of_text(machine_attrs)).replace(",", " ").split():
                if classads.canonical(name) in slot:
                    attrs[f"MachineAttr{name}0"] = slot[classads.canonical(name)]
        claim = Claim(
            self.schedd.claims.new_id(), job, slot_name, pilot, lease_s, self.schedd.clock() + lease_s, cpus, memory, disk,
            autocluster.submitter, self.schedd.clock(),
        )  # fmt: skip
        self.schedd.move(tx, job, RUNNING, pilot, "match", {"slot": slot_name, "pilot": pilot}, attrs)
        self.schedd.claims.add(claim)
        self.schedd.accountant.charge(claim.submitter, cpus)
        tx.batch.add(
            INSERT_CLAIM,
            (
                claim.claim_id, job.cluster.cluster_id, job.proc_id, claim.slot_name, pilot, claim.lease_expires, lease_s,
                dumps_json({"cpus": cpus, "memory_mb": memory, "disk_kb": disk, "submitter": claim.submitter}),
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
        value = classads.number(value)
        if value is None:
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
        now = int(self.schedd.clock())
        if event == ClaimEvent.STARTED:
            claim.started = True
            job.set("JobCurrentStartExecutingDate", str(now))
            self.schedd.touch(tx, job)
            self.schedd.events.record(
                tx, claim.pilot, job.cluster.cluster_id, job.proc_id, "execute", {"slot": claim.slot_name}
            )
            return
        if event in (ClaimEvent.SUSPENDED, ClaimEvent.CONTINUED, ClaimEvent.CREDENTIAL_REFRESHED):
            self.schedd.events.record(
                tx, claim.pilot, job.cluster.cluster_id, job.proc_id, event.value, {"slot": claim.slot_name}
            )
            return
        self.schedd.claims.end(claim)
        self.schedd.accountant.charge(claim.submitter, -claim.cpus)
        tx.batch.add(DELETE_CLAIM, (claim.claim_id,))
        usage = self._usage_attrs(job, report, claim)
        if event == ClaimEvent.VACATED:
            attrs = {**self.schedd.off_slot_attrs(job), **usage}
            self.schedd.move(
                tx, job, IDLE, claim.pilot, "evict", {"reason": report.message or "vacated by pilot"}, attrs
            )
        elif event == ClaimEvent.HELD:
            for name, text in usage.items():
                job.set(name, text)
            reason = report.hold_reason or "held by the pilot"
            self.actions.hold(
                tx,
                job,
                reason,
                report.hold_reason_code or HoldCode.StartdHeldJob,
                report.hold_reason_subcode,
                claim.pilot,
            )
        elif event == ClaimEvent.EXITED:
            self._exited(tx, job, claim, report, usage)
        self.schedd.retire(tx)

    def _usage_attrs(self, job: Job, report: ClaimReport, claim: Claim) -> dict[str, str | None]:
        usage = report.usage or {}
        attrs: dict[str, str | None] = {}
        user = float(usage.get("RemoteUserCpu", 0.0))
        system = float(usage.get("RemoteSysCpu", 0.0))
        attrs["RemoteUserCpu"] = repr(user)
        attrs["RemoteSysCpu"] = repr(system)
        attrs["CumulativeRemoteUserCpu"] = repr(float_of(job.get("CumulativeRemoteUserCpu")) + user)
        attrs["CumulativeRemoteSysCpu"] = repr(float_of(job.get("CumulativeRemoteSysCpu")) + system)
        wall = max(0.0, self.schedd.clock() - claim.granted)
        attrs["CumulativeSlotTime"] = repr(
            float_of(job.get("CumulativeSlotTime")) + wall * max(1, claim.cpus)
        )
        if "MemoryUsage" in usage:
            memory = int(usage["MemoryUsage"])
            attrs["MemoryUsage"] = str(memory)
            attrs["ResidentSetSize"] = str(memory * 1024)
            attrs["ImageSize"] = str(max(int_of(job.get("ImageSize")), memory * 1024))
        if "DiskUsage" in usage:
            attrs["DiskUsage"] = str(int(usage["DiskUsage"]))
        return attrs

    def _exited(
        self, tx: Tx, job: Job, claim: Claim, report: ClaimReport, usage: dict[str, str | None]
    ) -> None:
        now = int(self.schedd.clock())
        by_signal = report.exit_signal is not None
        attrs: dict[str, str | None] = {
            **self.schedd.off_slot_attrs(job),
            **usage,
            "ExitBySignal": literal(by_signal),
            "NumJobCompletions": str(int_of(job.get("NumJobCompletions")) + 1),
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
        self.schedd.events.record(tx, claim.pilot, job.cluster.cluster_id, job.proc_id, "terminate", details)
        if decision.action == "hold":
            self.actions.hold(tx, job, decision.reason, decision.code, decision.subcode, "schedd")
        elif decision.action == "complete":
            self.schedd.move(tx, job, COMPLETED, "schedd", "complete", details)
        else:
            self.schedd.move(tx, job, IDLE, "schedd", "requeue", {"reason": decision.reason})

    def expire_leases(self) -> Tx:
        tx = Tx()
        for claim in self.schedd.claims.expired():
            reason = f"the pilot on {claim.slot_name} stopped renewing its lease ({claim.lease_s} s)"
            self._requeue_lost(tx, claim, "lease_expired", reason)
        self.schedd.retire(tx)
        return self.schedd.finish(tx)

    def release_forgotten(self, claims: list[Claim]) -> Tx:
        """Claims a pilot stopped listing (ended in the book already): their jobs run again."""
        tx = Tx()
        for claim in claims:
            reason = (
                f"the pilot on {claim.slot_name} does not list its claim (the answer granting it was lost)"
            )
            self._requeue_lost(tx, claim, "claim_forgotten", reason)
        self.schedd.retire(tx)
        return self.schedd.finish(tx)

    def _requeue_lost(self, tx: Tx, claim: Claim, kind: str, reason: str) -> None:
        job = claim.job
        self.schedd.accountant.charge(claim.submitter, -claim.cpus)
        tx.batch.add(DELETE_CLAIM, (claim.claim_id,))
        if self.schedd.queue.get(job.cluster.cluster_id, job.proc_id) is not job or job.status not in CLAIMED:
            return
        self.schedd.move(
            tx,
            job,
            IDLE,
            "schedd",
            kind,
            {"slot": claim.slot_name, "reason": reason},
            self.schedd.off_slot_attrs(job),
        )
