"""The ARC CE REST interface (A-REX, API 1.0) with requests: bulk xRSL, fresh states, delegation.

- Submission is one POST of a multi-xRSL for a whole cluster.  Each job waits in PREPARING
  for its input files, which ``commit`` uploads once the journal holds the job ids; a job
  the factory never recorded never gets its files and is found by its name (our tag).
- States come from ``GET /jobs?state=...`` (read from A-REX's status files on every call);
  ``action=status`` and ``arcstat`` lag by up to a minute.  WIPED is transient (A-REX moves
  the status file): treated as "look again".  A killed job ends FAILED with "canceled by
  external request", which is our REMOVED.
- One delegation per proxy, referenced by every job and renewed in place.
- ``verify=`` goes on every request: requests ignores ``Session.verify`` when
  REQUESTS_CA_BUNDLE is set.
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
from factory.adapters.grid import GridCE, rsl_quote
from factory.errors import SiteUnavailable
from factory.glideins import GlideinState

if TYPE_CHECKING:
    from factory.config import EntryConfig

ALL_STATES = (
    "ACCEPTING,ACCEPTED,PREPARING,PREPARED,SUBMITTING,QUEUING,RUNNING,HELD,EXITINGLRMS,OTHER,EXECUTED,"
    "FINISHING,KILLING,FINISHED,FAILED,KILLED,WIPED"
)
WAITING_FOR_INPUT = {"ACCEPTING", "ACCEPTED", "PREPARING"}
CANCELLED = "canceled by external request"


@dataclass
class ArcOptions:
    proxy: str = ""  # the factory's X.509 proxy: client certificate and the credential delegated to jobs
    token_file: str = ""  # or a bearer token (JWT) instead of the certificate
    ca: str = ""  # CA file or hashed directory that signs the CE's certificate
    queue: str = ""  # the CE's queue (default: its default)
    timeout_s: float = 60.0
    delegate: bool = True  # give jobs a delegated proxy, renewed by the factory


def _as_list(value: Any) -> list[Any]:
    """A-REX renders one element as an object, several as a list, none as nothing."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class ArcAdapter(GridCE):
    kind = "arc"
    options_model = ArcOptions
    native_states = {
        "ACCEPTING": GlideinState.QUEUED,
        "ACCEPTED": GlideinState.QUEUED,
        "PREPARING": GlideinState.QUEUED,
        "PREPARED": GlideinState.QUEUED,
        "SUBMITTING": GlideinState.QUEUED,
        "QUEUING": GlideinState.QUEUED,
        "HELD": GlideinState.HELD,
        "RUNNING": GlideinState.RUNNING,
        "EXITINGLRMS": GlideinState.RUNNING,
        "EXECUTED": GlideinState.RUNNING,
        "FINISHING": GlideinState.RUNNING,
        "KILLING": GlideinState.RUNNING,
        "OTHER": GlideinState.QUEUED,
        "FINISHED": GlideinState.COMPLETED,
        "FAILED": GlideinState.FAILED,
        "KILLED": GlideinState.REMOVED,
    }

    @classmethod
    def check_entry(cls, entry: EntryConfig) -> tuple[str, str] | None:
        if not entry.gatekeeper.startswith("https://"):
            return "gatekeeper", "give the CE's URL, e.g. https://ce.example.org:443/arex"
        options = entry.adapter_options
        if options is not None and not options.proxy and not options.token_file:
            return "options", "give a proxy (X.509) or a token_file to authenticate to the CE"
        return None

    # -- HTTP -------------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return self.entry.gatekeeper.rstrip("/") + "/rest/1.0"

    def configure_session(self, session: requests.Session) -> None:
        session.headers["Accept"] = "application/json"
        if self.options.token_file:
            session.headers["Authorization"] = "Bearer " + Path(self.options.token_file).read_text().strip()
        else:
            super().configure_session(session)

    def request(
        self, method: str, path: str, expect: Sequence[int] = (200, 201, 202), **kwargs: Any
    ) -> requests.Response:
        verify: str | bool = self.options.ca or True
        try:
            response = self.session().request(
                method, self.base + path, timeout=self.options.timeout_s, verify=verify, **kwargs
            )
        except (requests.RequestException, OSError) as exc:
            raise SiteUnavailable(f"{self.entry.name}: {method} {path}: {exc}") from None
        if response.status_code not in expect:
            raise SiteUnavailable(
                f"{self.entry.name}: {method} {path}: HTTP {response.status_code} {response.text.strip()[:300]}"
            )
        return response

    def jobs_action(self, action: str, site_ids: Sequence[str]) -> list[dict[str, Any]]:
        body = json.dumps({"job": [{"id": site_id} for site_id in site_ids]})
        # Content-Type must be exactly application/json: A-REX compares the string
        response = self.request(
            "POST",
            "/jobs",
            params={"action": action},
            data=body,
            headers={"Content-Type": "application/json"},
            expect=(201,),
        )
        return _as_list(response.json().get("job")) if response.content.strip() else []

    # -- delegation -------------------------------------------------------------------------------
    def new_delegation(self) -> str:
        response = self.request("POST", "/delegations", params={"action": "new"}, expect=(201,))
        delegation_id = response.headers.get("Location", "").rstrip("/").rsplit("/", 1)[-1]
        if not delegation_id:
            raise SiteUnavailable(f"{self.entry.name}: the CE gave no delegation id")
        self._put_delegation(delegation_id, response.content)
        return delegation_id

    def _put_delegation(self, delegation_id: str, request_pem: bytes) -> None:
        answer = self.delegated_proxy(request_pem)
        self.request("PUT", f"/delegations/{delegation_id}", data=answer, expect=(200, 201))

    # -- the verbs --------------------------------------------------------------------------------
    def xrsl(self, glidein: GlideinSpec, delegation_id: str) -> str:
        inputs = ["glidein_startup.sh", *sorted(glidein.files)]
        parts = [
            '(executable="glidein_startup.sh")',
            "(inputfiles=" + "".join(f'({rsl_quote(name)} "")' for name in inputs) + ")",
            '(stdout="stdout")(stderr="stderr")(outputfiles=("stdout" "")("stderr" ""))',
            f"(jobname={rsl_quote(glidein.tag)})",
            f"(count={glidein.cpus})" if glidein.cpus > 1 else "",
            f"(memory={glidein.memory_mb})" if glidein.memory_mb else "",
            f'(walltime="{max(1, (glidein.walltime_s + 59) // 60)} minutes")' if glidein.walltime_s else "",
            f"(queue={rsl_quote(self.options.queue)})" if self.options.queue else "",
            f"(delegationid={rsl_quote(delegation_id)})" if delegation_id else "",
        ]
        if glidein.environment:
            parts.append(
                "(environment="
                + "".join(f"({rsl_quote(k)} {rsl_quote(v)})" for k, v in sorted(glidein.environment.items()))
                + ")"
            )
        if self.entry.submit_extras:
            parts.append(render_extras(self.entry, glidein))
        return "&" + "".join(parts)

    def submit(self, glideins: Sequence[GlideinSpec]) -> list[SubmitOutcome]:
        retry = self.stage_all(glideins)
        if retry is not None:
            return retry
        try:
            delegation_id = self.delegation() if self.options.delegate and self.proxy else ""
            body = "+" + "".join(f"({self.xrsl(g, delegation_id)})" for g in glideins)
            response = self.request(
                "POST",
                "/jobs",
                params={"action": "new"},
                data=body.encode(),
                headers={"Content-Type": "application/rsl"},
                expect=(201,),
            )
        except SiteUnavailable as exc:
            return [Retry(str(exc))] * len(glideins)
        except OSError as exc:
            return [Retry(f"cannot record the delegation: {exc.strerror}")] * len(glideins)
        answers = _as_list(response.json().get("job")) if response.content.strip() else []
        if len(answers) != len(glideins):
            return [
                Retry(f"the CE answered {len(answers)} jobs for {len(glideins)}: {response.text[:200]}")
            ] * len(glideins)
        outcomes: list[SubmitOutcome] = []
        for answer in answers:
            if str(answer.get("status-code")) == "201" and answer.get("id"):
                outcomes.append(Submitted(str(answer["id"])))
            else:
                outcomes.append(Refused(f"{answer.get('status-code')} {answer.get('reason', '')}".strip()))
        return outcomes

    def commit(self, glideins: Mapping[str, str]) -> None:
        """Upload the startup script and the job's files: the job starts once they are there.

        A job not listed yet (A-REX is moving its status file) still gets them; one already
        past its input stage is left alone, so committing twice is harmless.
        """
        if not glideins:
            return
        states = self._states()
        for site_id, glidein_id in glideins.items():
            if states.get(site_id, "ACCEPTING") not in WAITING_FOR_INPUT | {"WIPED"}:
                continue
            directory = self.work_dir / glidein_id
            for path in sorted(directory.iterdir()):
                if path.name in ("stdout", "stderr"):
                    continue
                answer = self.request(
                    "PUT",
                    f"/jobs/{site_id}/session/{path.name}",
                    data=path.read_bytes(),
                    expect=(200, 201, 204, 404),
                )
                if answer.status_code == 404:
                    break  # the job is gone: nothing to run

    def _states(self) -> dict[str, str]:
        response = self.request("GET", "/jobs", params={"state": ALL_STATES})
        jobs = _as_list(response.json().get("job")) if response.content.strip() else []
        return {str(job["id"]): str(job.get("state", "")) for job in jobs if "id" in job}

    def status(self, site_ids: Sequence[str]) -> dict[str, SiteStatus]:
        states = self._states()
        out: dict[str, SiteStatus] = {}
        for site_id in site_ids:
            native = states.get(site_id)
            if native is None or native == "WIPED":
                continue  # gone, or between two status files: the factory looks again
            state, reason = self.map_native(native), ""
            if native == "FAILED":
                reason = self.request(
                    "GET", f"/jobs/{site_id}/diagnose/failed", expect=(200, 404)
                ).text.strip()
                if CANCELLED in reason:
                    state = GlideinState.REMOVED
            out[site_id] = SiteStatus(state, native, reason)
        return out

    def cancel(self, site_ids: Sequence[str]) -> dict[str, bool]:
        if not site_ids:
            return {}
        answers = {str(a.get("id")): str(a.get("status-code")) for a in self.jobs_action("kill", site_ids)}
        return {site_id: answers.get(site_id) in ("202", "200", "404") for site_id in site_ids}

    def cleanup(self, site_ids: Sequence[str]) -> None:
        if site_ids:
            self.jobs_action("clean", site_ids)

    def fetch_output(self, site_id: str, glidein_id: str) -> GlideinOutput | None:
        stdout = self.request("GET", f"/jobs/{site_id}/session/stdout", expect=(200, 404))
        if stdout.status_code == 404:
            return None
        stderr = self.request("GET", f"/jobs/{site_id}/session/stderr", expect=(200, 404))
        return GlideinOutput(stdout.text, stderr.text if stderr.status_code == 200 else "")

    def list_tagged(self) -> dict[str, str]:
        """Our glideins at the CE, by the jobname each was submitted with."""
        prefix = self.tag_prefix()
        found: dict[str, str] = {}
        states = self._states()
        ended = {"FINISHED", "FAILED", "KILLED", "WIPED", "DELETED"}
        # a tag the CE still lists twice (an ended job kept for its output): the live job wins
        for site_id in sorted(states, key=lambda s: states[s] not in ended):
            for attempt in range(3):  # A-REX answers 404 for a moment while it rewrites a job's files
                answer = self.request("GET", f"/jobs/{site_id}/diagnose/description", expect=(200, 404))
                if answer.status_code == 200:
                    break
                time.sleep(0.3 * (attempt + 1))
            if answer.status_code != 200 and states[site_id] not in ended:
                # a live job we cannot read yet may be ours: "not there" must never be answered for it
                raise SiteUnavailable(f"{self.entry.name}: A-REX cannot describe job {site_id} yet")
            description = answer.text if answer.status_code == 200 else ""
            match = re.search(r'\(\s*jobname\s*=\s*"([^"]+)"\s*\)', description)
            if match and match.group(1).startswith(prefix):
                found[match.group(1)] = site_id
        return found

    def renew_credential(self, site_ids: Sequence[str], proxy: Path) -> dict[str, bool]:
        """Renew the shared delegation with the new proxy: every job referencing it gets it."""
        self.proxy = str(proxy)
        delegation_id = self.delegation()
        try:
            response = self.request(
                "POST", f"/delegations/{delegation_id}", params={"action": "renew"}, expect=(200, 201)
            )
            self._put_delegation(delegation_id, response.content)
        except SiteUnavailable:
            return dict.fromkeys(site_ids, False)
        uses = (
            {
                str(a.get("id")): str(a.get("delegation_id", ""))
                for a in self.jobs_action("delegations", site_ids)
            }
            if site_ids
            else {}
        )
        return {site_id: uses.get(site_id, delegation_id) == delegation_id for site_id in site_ids}
