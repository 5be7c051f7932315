"""HTCondor-CE: grid-universe jobs through an HTCondor schedd, with the htcondor2 bindings.

The factory hands each glidein to a schedd (Condor-G) as a grid universe job with
``grid_resource = condor <ce> <ce>:9619``; the schedd forwards it to the CE, brings the
output back and keeps the proxy fresh at the CE.  The adapter only talks to the schedd:
submit, query by our tag, act (remove, release), refreshGSIProxy.

No HTCondor daemons can run on these machines, so this adapter is tested against its
contract only (a schedd stand-in in the tests); see docs/factory.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.adapters.base import (
    GlideinOutput,
    GlideinSpec,
    Refused,
    Retry,
    SiteAdapter,
    SiteStatus,
    SubmitOutcome,
    Submitted,
    read_output,
    render_extras,
)
from factory.errors import SiteUnavailable
from factory.glideins import GlideinState
from updraft.core.protocol import quote

if TYPE_CHECKING:
    from factory.config import EntryConfig

TAG = "UpdraftTag"
FACTORY = "UpdraftFactory"
# JobStatus of the grid universe job in the factory's schedd
JOB_STATUS = {
    1: "IDLE",
    2: "RUNNING",
    3: "REMOVED",
    4: "COMPLETED",
    5: "HELD",
    6: "TRANSFERRING_OUTPUT",
    7: "SUSPENDED",
}
PROJECTION = [
    "ClusterId",
    "ProcId",
    "JobStatus",
    "GridJobStatus",
    "HoldReason",
    "HoldReasonCode",
    "HoldReasonSubCode",
    "ExitCode",
    TAG,
    "EnteredCurrentStatus",
]


@dataclass
class CondorCEOptions:
    schedd: str = ""  # the schedd's name (default: the local schedd)
    collector: str = ""  # where to locate that schedd (default: the configured collector)
    proxy: str = ""  # x509userproxy for the CE
    token_file: str = ""  # or a SciToken for the CE (scitokens_file)
    port: int = 9619
    remote_schedd: str = ""  # the CE's schedd name, when it is not the gatekeeper's host name


class CondorCEAdapter(SiteAdapter):
    kind = "condor"
    options_model = CondorCEOptions
    native_states = {
        "IDLE": GlideinState.QUEUED,
        "RUNNING": GlideinState.RUNNING,
        "TRANSFERRING_OUTPUT": GlideinState.RUNNING,
        "HELD": GlideinState.HELD,
        "SUSPENDED": GlideinState.HELD,
        "COMPLETED": GlideinState.COMPLETED,
        "REMOVED": GlideinState.REMOVED,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._schedd: Any = None

    @classmethod
    def check_entry(cls, entry: EntryConfig) -> tuple[str, str] | None:
        if not entry.gatekeeper or "/" in entry.gatekeeper:
            return "gatekeeper", "give the CE's host name (and :port), e.g. ce.example.org:9619"
        _host, _, port = entry.gatekeeper.partition(":")
        if port and not port.isdigit():
            return "gatekeeper", f"the port {port!r} is not a number"
        if len(entry.gatekeeper.split()) > 1:
            return (
                "gatekeeper",
                "one host[:port]: glideinWMS's '<schedd> <collector>:9619' form is the collector as"
                " gatekeeper and the schedd as options.remote_schedd (updraft factory import-gwms does this)",
            )
        return None

    def schedd(self) -> Any:
        if self._schedd is None:
            try:
                import htcondor2

                if self.options.schedd or self.options.collector:
                    collector = htcondor2.Collector(self.options.collector or None)
                    location = collector.locate(htcondor2.DaemonType.Schedd, self.options.schedd or None)
                    self._schedd = htcondor2.Schedd(location)
                else:
                    self._schedd = htcondor2.Schedd()
            except Exception as exc:  # no schedd to talk to: the site is unavailable for now
                raise SiteUnavailable(f"{self.entry.name}: cannot reach the schedd: {exc}") from None
        return self._schedd

    @property
    def grid_resource(self) -> str:
        host = self.entry.gatekeeper.split(":")[0]
        contact = self.entry.gatekeeper if ":" in self.entry.gatekeeper else f"{host}:{self.options.port}"
        return f"condor {self.options.remote_schedd or host} {contact}"

    def description(self, glidein: GlideinSpec, script: Path) -> dict[str, str]:
        directory = script.parent
        description = {
            "universe": "grid",
            "grid_resource": self.grid_resource,
            "executable": str(script),
            "transfer_executable": "true",
            "transfer_input_files": ",".join(str(directory / name) for name in sorted(glidein.files)),
            "should_transfer_files": "YES",
            "when_to_transfer_output": "ON_EXIT",
            "output": str(directory / "stdout"),
            "error": str(directory / "stderr"),
            "environment": quote(" ".join(f"{k}='{v}'" for k, v in sorted(glidein.environment.items()))),
            f"+{TAG}": quote(glidein.tag),
            f"+{FACTORY}": quote(self.factory),
            "+xcount": str(max(1, glidein.cpus)),
        }
        if glidein.memory_mb:
            description["+maxMemory"] = str(glidein.memory_mb)
        if glidein.walltime_s:
            description["+maxWallTime"] = str(max(1, glidein.walltime_s // 60))
        if self.options.proxy:
            description["x509userproxy"] = self.options.proxy
        if self.options.token_file:
            description["scitokens_file"] = self.options.token_file
        if self.entry.submit_extras:
            for line in render_extras(self.entry, glidein).splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    description[key.strip()] = value.strip()
        return description

    def submit(self, glideins: Sequence[GlideinSpec]) -> list[SubmitOutcome]:
        import htcondor2

        outcomes: list[SubmitOutcome] = []
        for glidein in glideins:
            try:
                submit = htcondor2.Submit(self.description(glidein, self.stage(glidein)))
            except (OSError, ValueError) as exc:
                outcomes.append(Refused(f"cannot build the grid job: {exc}"))
                continue
            try:
                result = self.schedd().submit(submit, count=1)
            except SiteUnavailable as exc:
                outcomes.append(Retry(str(exc)))
                continue
            except Exception as exc:  # the schedd refused or did not answer: ask again later, by tag
                outcomes.append(Retry(f"schedd submit: {exc}"))
                continue
            outcomes.append(Submitted(f"{result.cluster()}.{result.first_proc()}"))
        return outcomes

    def _query(self, constraint: str) -> list[Any]:
        try:
            return list(self.schedd().query(constraint=constraint, projection=PROJECTION))
        except SiteUnavailable:
            raise
        except Exception as exc:
            raise SiteUnavailable(f"{self.entry.name}: schedd query: {exc}") from None

    def status(self, site_ids: Sequence[str]) -> dict[str, SiteStatus]:
        wanted = set(site_ids)
        out: dict[str, SiteStatus] = {}
        for ad in self._query(f"{FACTORY} == {quote(self.factory)}"):
            site_id = f"{ad['ClusterId']}.{ad['ProcId']}"
            if site_id not in wanted:
                continue
            native = JOB_STATUS.get(int(ad.get("JobStatus", 1)), "IDLE")
            state, reason = self.map_native(native), ""
            remote = str(ad.get("GridJobStatus", "") or "")
            hold: tuple[int | None, int | None] = (None, None)
            if native == "HELD":
                reason = str(ad.get("HoldReason", ""))
                hold = (_int_or_none(ad.get("HoldReasonCode")), _int_or_none(ad.get("HoldReasonSubCode")))
            if native == "COMPLETED" and int(ad.get("ExitCode", 0) or 0) != 0:
                state, reason = GlideinState.FAILED, f"exit code {ad.get('ExitCode')}"
            out[site_id] = SiteStatus(state, f"{native} ({remote})" if remote else native, reason, *hold)
        return out

    def _act(self, action_name: str, site_ids: Sequence[str]) -> dict[str, bool]:
        import htcondor2

        if not site_ids:
            return {}
        try:
            self.schedd().act(
                getattr(htcondor2.JobAction, action_name),
                list(site_ids),
                reason=f"updraft factory {self.factory}",
            )
        except SiteUnavailable:
            raise
        except Exception as exc:
            raise SiteUnavailable(f"{self.entry.name}: schedd {action_name}: {exc}") from None
        return dict.fromkeys(site_ids, True)

    def cancel(self, site_ids: Sequence[str]) -> dict[str, bool]:
        return self._act("Remove", site_ids)

    def release(self, site_ids: Sequence[str]) -> dict[str, bool]:
        return self._act("Release", site_ids)

    def fetch_output(self, site_id: str, glidein_id: str) -> GlideinOutput | None:
        return read_output(self.work_dir / glidein_id)  # the schedd transferred it back here

    def list_tagged(self) -> dict[str, str]:
        return {
            str(ad[TAG]): f"{ad['ClusterId']}.{ad['ProcId']}"
            for ad in self._query(f"{FACTORY} == {quote(self.factory)}")
            if TAG in ad
        }

    def renew_credential(self, site_ids: Sequence[str], proxy: Path) -> dict[str, bool]:
        """Hand the renewed proxy to the schedd, which forwards it to the CE for each job."""
        out = {}
        for site_id in site_ids:
            cluster, _, proc = site_id.partition(".")
            try:
                self.schedd().refreshGSIProxy(int(cluster), int(proc), str(proxy), -1)
                out[site_id] = True
            except Exception:
                out[site_id] = False
        return out


def _int_or_none(value: object) -> int | None:
    """A HoldReasonCode as the CE's schedd gives it (an int, or nothing)."""
    try:
        return int(str(value)) if value is not None else None
    except (TypeError, ValueError):
        return None
