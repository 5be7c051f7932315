"""CREAM CEs: delegate a proxy, register jobs under a lease, upload their sandbox, start them.

The sequence the CREAM-WMS integration design describes:

- one delegation per proxy (getProxyReq + putProxy), renewed in place (renewProxyReq) when
  the factory's proxy is renewed: every job that references it gets the new one;
- one lease per entry, renewed every cycle while the factory runs; a CE whose lease runs
  out cancels and purges the jobs under it, so a factory that died leaves no zombies;
- JobRegister with autoStart false: nothing runs until ``commit`` has uploaded the input
  sandbox and called JobStart, after the journal holds the job id;
- JobInfo for status (CEMon notifications are not used: polling is the fail-safe the
  design asks for, and enough); JobCancel, JobResume, JobPurge.

The JDL is rendered per entry; ``submit_extras`` adds JDL attributes.  The job carries
its tag as ``UpdraftTag`` so that a restarted factory finds it with JobList.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from factory.adapters import cream_soap
from factory.adapters.base import (
    GlideinOutput,
    GlideinSpec,
    Refused,
    Retry,
    SiteStatus,
    SubmitOutcome,
    Submitted,
    render_extras,
)
from factory.adapters.grid import GridCE
from factory.errors import SiteUnavailable
from factory.glideins import GlideinState
from updraft.core.protocol import literal

if TYPE_CHECKING:
    from factory.config import EntryConfig

REFUSALS = {"InvalidArgumentFault", "AuthorizationFault", "JobSubmissionDisabledFault"}


@dataclass
class CreamOptions:
    proxy: str = ""  # the factory's X.509 proxy (client certificate, and what is delegated)
    ca: str = ""  # CA file or directory that signs the CE's certificate
    queue: str = ""  # JDL QueueName
    batch_system: str = ""  # JDL BatchSystem
    lease_s: int = 3600  # jobs outlive a silent factory by at most this long
    timeout_s: float = 60.0


class CreamAdapter(GridCE):
    kind = "cream"
    options_model = CreamOptions
    native_states = {
        "REGISTERED": GlideinState.QUEUED,
        "PENDING": GlideinState.QUEUED,
        "IDLE": GlideinState.QUEUED,
        "RUNNING": GlideinState.RUNNING,
        "REALLY-RUNNING": GlideinState.RUNNING,
        "HELD": GlideinState.HELD,
        "DONE-OK": GlideinState.COMPLETED,
        "DONE-FAILED": GlideinState.FAILED,
        "CANCELLED": GlideinState.REMOVED,
        "ABORTED": GlideinState.FAILED,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lease_until = 0.0

    @classmethod
    def check_entry(cls, entry: EntryConfig) -> tuple[str, str] | None:
        if not entry.gatekeeper.startswith("https://"):
            return "gatekeeper", "give the CE's URL, e.g. https://cream.example.org:8443"
        if entry.adapter_options is not None and not entry.adapter_options.proxy:
            return "options", "a CREAM CE needs a proxy (options.proxy)"
        return None

    # -- SOAP over HTTPS -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.entry.gatekeeper.rstrip("/")

    def call(self, operation: str, body: cream_soap.Node, delegation: bool = False) -> cream_soap.Node:
        path, namespace = (
            (cream_soap.DELEGATION_PATH, cream_soap.NS_DELEGATION)
            if delegation
            else (cream_soap.CREAM_PATH, cream_soap.NS_CREAM)
        )
        try:
            response = self.session().post(
                self.url + path, data=cream_soap.envelope(operation + "Request", body, namespace),
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": operation},
                verify=self.options.ca or True, timeout=self.options.timeout_s,
            )  # fmt: skip
        except (requests.RequestException, OSError) as exc:
            raise SiteUnavailable(f"{self.entry.name}: CREAM {operation}: {exc}") from None
        try:
            element, content = cream_soap.parse(response.content)
        except cream_soap.SoapFault as fault:
            raise SiteUnavailable(f"{self.entry.name}: CREAM {operation}: {fault}") from None
        if element != operation + "Response":
            raise SiteUnavailable(f"{self.entry.name}: CREAM {operation}: unexpected answer {element}")
        return content

    def jobs(self, operation: str, site_ids: Sequence[str]) -> dict[str, tuple[str, cream_soap.Node]]:
        """Per job: ('', the result) or (the CREAM fault type, its description)."""
        answer = self.call(operation, cream_soap.job_ids(site_ids, self.url + cream_soap.CREAM_PATH))
        out: dict[str, tuple[str, cream_soap.Node]] = {}
        for result in answer.nodes("result"):
            job_id = result.node("jobId").text("id")
            fault = next(
                (
                    name
                    for name, value in result.children
                    if name.endswith("Fault") and isinstance(value, cream_soap.Node)
                ),
                "",
            )
            out[job_id] = (fault, result.node(fault) if fault else result)
        return out

    # -- lease and delegation ----------------------------------------------------------------------
    @property
    def lease_id(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", f"updraft-{self.factory}-{self.entry.name}")

    def renew_lease(self, now: float | None = None) -> None:
        """Keep the entry's lease a full ``lease_s`` ahead, renewed once a third of it has passed."""
        now = time.time() if now is None else now
        if self.lease_until - now > self.options.lease_s * 2 / 3:
            return
        answer = self.call(
            "setLease",
            cream_soap.Node().add(
                "lease",
                cream_soap.Node()
                .add("leaseId", self.lease_id)
                .add("leaseTime", f"{now + self.options.lease_s:.0f}"),
            ),
        )
        self.lease_until = float(answer.node("lease").text("leaseTime") or now)

    def new_delegation(self) -> str:
        delegation_id = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{self.lease_id}-{int(time.time())}")
        request = self.call(
            "getProxyReq", cream_soap.Node().add("delegationID", delegation_id), delegation=True
        )
        self._put_proxy(delegation_id, request.text("getProxyReqReturn"))
        return delegation_id

    def _put_proxy(self, delegation_id: str, request_pem: str) -> None:
        proxy = self.delegated_proxy(request_pem.encode()).decode()
        self.call(
            "putProxy",
            cream_soap.Node().add("delegationID", delegation_id).add("proxy", proxy),
            delegation=True,
        )

    # -- the verbs --------------------------------------------------------------------------------
    def jdl(self, glidein: GlideinSpec) -> str:
        inputs = ["glidein_startup.sh", *sorted(glidein.files)]
        attributes: list[tuple[str, Any]] = [
            ("Type", "Job"), ("JobType", "Normal"), ("Executable", "glidein_startup.sh"),
            ("InputSandbox", inputs), ("StdOutput", "stdout"), ("StdError", "stderr"),
            ("OutputSandbox", ["stdout", "stderr"]), ("OutputSandboxBaseDestURI", "gsiftp://localhost"),
            ("Environment", [f"{k}={v}" for k, v in sorted(glidein.environment.items())]),
            ("UpdraftTag", glidein.tag),
        ]  # fmt: skip
        if glidein.cpus > 1:
            attributes += [("CpuNumber", glidein.cpus), ("SMPGranularity", glidein.cpus)]
        if self.options.queue:
            attributes.append(("QueueName", self.options.queue))
        if self.options.batch_system:
            attributes.append(("BatchSystem", self.options.batch_system))
        if glidein.walltime_s:
            attributes.append(
                (
                    "CERequirements",
                    f"other.GlueCEPolicyMaxWallClockTime >= {max(1, glidein.walltime_s // 60)}",
                )
            )
        lines = [f"  {name} = {literal(value)};" for name, value in attributes]
        if self.entry.submit_extras:
            lines.append("  " + render_extras(self.entry, glidein).strip().rstrip(";") + ";")
        return "[\n" + "\n".join(lines) + "\n]"

    def submit(self, glideins: Sequence[GlideinSpec]) -> list[SubmitOutcome]:
        retry = self.stage_all(glideins)
        if retry is not None:
            return retry
        try:
            self.renew_lease()
            delegation_id = self.delegation()
            body = cream_soap.Node()
            for glidein in glideins:
                description = (
                    cream_soap.Node().add("jobDescriptionId", glidein.tag).add("JDL", self.jdl(glidein))
                )
                body.add(
                    "jobDescriptionList",
                    description.add("delegationId", delegation_id)
                    .add("leaseId", self.lease_id)
                    .add("autoStart", False),
                )
            answer = self.call("JobRegister", body)
        except SiteUnavailable as exc:
            return [Retry(str(exc))] * len(glideins)
        except OSError as exc:
            return [Retry(f"cannot record the delegation: {exc.strerror}")] * len(glideins)
        results = {r.text("jobDescriptionId"): r for r in answer.nodes("result")}
        outcomes: list[SubmitOutcome] = []
        for glidein in glideins:
            result = results.get(glidein.tag)
            if result is None:
                outcomes.append(Retry("the CE did not answer for this glidein"))
                continue
            fault = next((name for name, value in result.children if name.endswith("Fault")), "")
            if fault:
                reason = f"{fault}: {result.node(fault).text('description')}"
                outcomes.append(Refused(reason) if fault in REFUSALS else Retry(reason))
                continue
            job = result.node("jobId")
            properties = {p.text("name"): p.text("value") for p in job.nodes("property")}
            self._remember(job.text("id"), glidein.glidein_id, properties)
            outcomes.append(Submitted(job.text("id")))
        return outcomes

    def _remember(self, site_id: str, glidein_id: str, properties: dict[str, str]) -> None:
        index = self.work_dir / "jobs"
        index.mkdir(exist_ok=True)
        (index / f"{site_id}.json").write_text(json.dumps({"glidein_id": glidein_id, **properties}))

    def _recall(self, site_id: str) -> dict[str, str]:
        try:
            return json.loads((self.work_dir / "jobs" / f"{site_id}.json").read_text())
        except (OSError, ValueError):
            return {}

    def commit(self, glideins: Mapping[str, str]) -> None:
        """Upload the input sandbox of registered jobs and start them (safe to repeat)."""
        if not glideins:
            return
        registered = [
            site_id
            for site_id, (fault, result) in self.jobs("JobInfo", list(glideins)).items()
            if not fault and _state(result) == "REGISTERED"
        ]
        started = []
        for site_id in registered:
            known = self._recall(site_id)
            isb = known.get("CREAMInputSandboxURI", "")
            directory = self.work_dir / (glideins[site_id] or known.get("glidein_id", ""))
            if not isb or not directory.is_dir():
                continue
            for path in sorted(directory.iterdir()):
                if path.name in ("stdout", "stderr"):
                    continue
                try:
                    response = self.session().put(
                        f"{isb}/{path.name}",
                        data=path.read_bytes(),
                        verify=self.options.ca or True,
                        timeout=self.options.timeout_s,
                    )
                except (requests.RequestException, OSError) as exc:
                    raise SiteUnavailable(f"{self.entry.name}: input sandbox upload: {exc}") from None
                if response.status_code >= 300:
                    raise SiteUnavailable(
                        f"{self.entry.name}: input sandbox upload: HTTP {response.status_code} {response.text[:200]}"
                    )
            started.append(site_id)
        if started:
            self.jobs("JobStart", started)

    def status(self, site_ids: Sequence[str]) -> dict[str, SiteStatus]:
        self.renew_lease()
        out: dict[str, SiteStatus] = {}
        uncommitted: dict[str, str] = {}
        for site_id, (fault, result) in self.jobs("JobInfo", site_ids).items():
            if fault == "JobUnknownFault":
                continue  # purged (by us, or with its lease)
            if fault:
                raise SiteUnavailable(f"{self.entry.name}: JobInfo {site_id}: {fault}")
            native = _state(result)
            status = result.node("JobInfo").nodes("status")[-1]
            reason = status.text("failureReason") or (
                status.text("description") if native in ("DONE-FAILED", "ABORTED", "HELD") else ""
            )
            if native == "REGISTERED":
                uncommitted[site_id] = ""  # the journal knows it (we asked): let it run
            out[site_id] = SiteStatus(self.map_native(native), native, reason)
        if uncommitted:
            self.commit(uncommitted)
        return out

    def cancel(self, site_ids: Sequence[str]) -> dict[str, bool]:
        if not site_ids:
            return {}
        answers = self.jobs("JobCancel", site_ids)
        return {
            s: answers.get(s, ("", None))[0] in ("", "JobUnknownFault", "InvalidArgumentFault")
            for s in site_ids
        }

    def release(self, site_ids: Sequence[str]) -> dict[str, bool]:
        answers = self.jobs("JobResume", site_ids) if site_ids else {}
        return {s: answers.get(s, ("?", None))[0] == "" for s in site_ids}

    def cleanup(self, site_ids: Sequence[str]) -> None:
        if site_ids:
            self.jobs("JobPurge", site_ids)
        for site_id in site_ids:
            (self.work_dir / "jobs" / f"{site_id}.json").unlink(missing_ok=True)

    def fetch_output(self, site_id: str, glidein_id: str) -> GlideinOutput | None:
        osb = self._recall(site_id).get("CREAMOutputSandboxURI")
        if not osb:
            return None
        texts = []
        for name in ("stdout", "stderr"):
            try:
                response = self.session().get(
                    f"{osb}/{name}", verify=self.options.ca or True, timeout=self.options.timeout_s
                )
            except (requests.RequestException, OSError) as exc:
                raise SiteUnavailable(f"{self.entry.name}: output sandbox: {exc}") from None
            texts.append(response.text if response.status_code == 200 else "")
        return GlideinOutput(*texts) if texts[0] or texts[1] else None

    def list_tagged(self) -> dict[str, str]:
        listing = self.call("JobList", cream_soap.Node())
        site_ids = [r.text("id") for r in listing.nodes("result")]
        if not site_ids:
            return {}
        prefix, found = self.tag_prefix(), {}
        for site_id, (fault, result) in self.jobs("JobInfo", site_ids).items():
            match = (
                re.search(r'UpdraftTag\s*=\s*"([^"]+)"', result.node("JobInfo").text("JDL"))
                if not fault
                else None
            )
            if match and match.group(1).startswith(prefix):
                found[match.group(1)] = site_id
        return found

    def renew_credential(self, site_ids: Sequence[str], proxy: Path) -> dict[str, bool]:
        """renewProxyReq + putProxy on the shared delegation: the CE replaces every job's proxy."""
        self.proxy = str(proxy)
        try:
            delegation_id = self.delegation()
            request = self.call(
                "renewProxyReq", cream_soap.Node().add("delegationID", delegation_id), delegation=True
            )
            self._put_proxy(
                delegation_id, request.text("renewProxyReqReturn") or request.text("getProxyReqReturn")
            )
        except SiteUnavailable:
            return dict.fromkeys(site_ids, False)
        return dict.fromkeys(site_ids, True)


def _state(result: cream_soap.Node) -> str:
    statuses = result.node("JobInfo").nodes("status")
    return statuses[-1].text("name") if statuses else ""
