"""Globus GRAM5: two-phase commit, save_state, files and output through a GASS server of our own.

The sequence, as Condor-G does it:

1. ``submit``: a job request with ``(two_phase=N)(save_state=yes)``; the job manager
   answers "waiting for commit" with the job contact, and runs nothing yet.
2. The factory records the contact in its journal, then ``commit`` sends COMMIT_REQUEST.
   A crash before the journal has the contact leaves a request nobody commits: the job
   manager drops it after N seconds, so a glidein is never started that we do not know.
   A crash after it is committed at the next status poll (the journal asked about it).
3. ``status`` through the library, which tells "forgotten" (156) from "cannot reach the
   job manager" (79): the command line prints DONE for both.
4. The terminal state stays until ``cleanup`` sends COMMIT_END.

The startup script and the token file are fetched by the job manager from a GASS server
the adapter runs (GSI https, the factory's proxy), and stdout/stderr are written back to
it.  The server runs detached and outlives a factory restart, so running glideins can
still return their output.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.adapters import gram_client
from factory.adapters.base import (
    GlideinOutput,
    GlideinSpec,
    Refused,
    Retry,
    SiteStatus,
    SubmitOutcome,
    Submitted,
    read_output,
    render_extras,
)
from factory.adapters.grid import GridCE, rsl_quote
from factory.errors import SiteUnavailable
from factory.glideins import GlideinState
from updraft.core.pilotrecord import RESULT_MARKER

if TYPE_CHECKING:
    from factory.config import EntryConfig

TRANSIENT = {
    gram_client.ERROR_CONNECTION_FAILED,
    gram_client.ERROR_JOB_MANAGER_UNREACHABLE,
    3,
    7,
    10,
    31,
    41,
}  # connection, I/O, auth, timeouts


@dataclass
class GramOptions:
    proxy: str = ""  # X509_USER_PROXY (default: the environment's)
    cert_dir: str = ""  # X509_CERT_DIR, the trusted CAs
    hostname: str = "localhost"  # GLOBUS_HOSTNAME: the name in our GASS URLs the job manager dials
    port_range: str = ""  # GLOBUS_TCP_PORT_RANGE for the GASS server (a firewall's open range)
    parallel: int = 4  # helper processes: GRAM calls in flight at once
    two_phase_s: int = 600  # an uncommitted request is dropped by the job manager after this
    call_timeout_s: float = 120.0


class GramAdapter(GridCE):
    kind = "gram"
    options_model = GramOptions
    finds_by_tag = False
    native_states = {
        "UNSUBMITTED": GlideinState.QUEUED,  # waiting for commit
        "STAGE_IN": GlideinState.QUEUED,
        "PENDING": GlideinState.QUEUED,
        "ACTIVE": GlideinState.RUNNING,
        "STAGE_OUT": GlideinState.RUNNING,
        "SUSPENDED": GlideinState.HELD,
        "DONE": GlideinState.COMPLETED,
        "FAILED": GlideinState.FAILED,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.helpers: queue.Queue[gram_client.Helper] = queue.Queue()
        self.helper_count = 0

    @classmethod
    def check_entry(cls, entry: EntryConfig) -> tuple[str, str] | None:
        if not entry.gatekeeper:
            return "gatekeeper", "give the GRAM contact, e.g. ce.example.org:2119/jobmanager-pbs"
        if entry.gatekeeper.split(":")[0] in ("127.0.0.1", "::1"):
            return "gatekeeper", "use localhost, not an IP address: GSI checks the host certificate's name"
        return None

    # -- the environment of helpers and the GASS server ---------------------------------------
    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.proxy:
            env["X509_USER_PROXY"] = self.proxy
        if self.options.cert_dir:
            env["X509_CERT_DIR"] = self.options.cert_dir
        if self.options.hostname:
            env["GLOBUS_HOSTNAME"] = self.options.hostname
        if self.options.port_range:
            env["GLOBUS_TCP_PORT_RANGE"] = self.options.port_range
        for name in ("X509_USER_CERT", "X509_USER_KEY"):
            env.pop(name, None)  # the proxy, never the long-lived key
        return env

    def _helper(self) -> gram_client.Helper:
        try:
            return self.helpers.get_nowait()
        except queue.Empty:
            pass
        if self.helper_count < max(1, self.options.parallel):
            self.helper_count += 1
            try:
                return gram_client.Helper(self.environment())
            except OSError as exc:
                self.helper_count -= 1
                raise SiteUnavailable(f"{self.entry.name}: {exc}") from None
        return self.helpers.get(timeout=self.options.call_timeout_s)

    def call(self, op: str, **arguments: Any) -> dict[str, Any]:
        helper = self._helper()
        try:
            answer = helper.call(op, self.options.call_timeout_s, **arguments)
        except (OSError, TimeoutError, ValueError) as exc:
            helper.close()
            self.helper_count -= 1
            raise SiteUnavailable(f"{self.entry.name}: GRAM {op} failed: {exc}") from None
        self.helpers.put(helper)
        return answer

    def _map(
        self, op: str, items: Sequence[Any], arguments: Callable[[Any], dict[str, Any]]
    ) -> list[dict[str, Any] | Exception]:
        def one(item: Any) -> dict[str, Any] | Exception:
            try:
                return self.call(op, **arguments(item))
            except SiteUnavailable as exc:
                return exc

        if len(items) <= 1:
            return [one(item) for item in items]
        with ThreadPoolExecutor(max_workers=max(1, self.options.parallel)) as pool:
            return list(pool.map(one, items))

    def close(self) -> None:
        while True:
            try:
                self.helpers.get_nowait().close()
            except queue.Empty:
                break
        self.helper_count = 0

    # -- GASS -----------------------------------------------------------------------------------
    def gass_url(self) -> str:
        """The adapter's GASS server (started detached if none is alive): files in, output back."""
        record = self.work_dir / "gass.json"
        try:
            known = json.loads(record.read_text())
            if _is_gass_server(int(known["pid"])):
                return str(known["url"])
        except (OSError, ValueError, KeyError):
            pass
        url_file = self.work_dir / "gass.url"
        url_file.write_text("")
        with open(url_file, "w") as out, open(self.work_dir / "gass.err", "a") as err:
            process = subprocess.Popen(
                ["globus-gass-server", "-r", "-w", "-c"], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                env=self.environment(), cwd=self.work_dir, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            text = url_file.read_text().strip()
            if text.startswith("https://"):
                url = text.splitlines()[0]
                record.write_text(json.dumps({"pid": process.pid, "url": url}))
                return url
            if process.poll() is not None:
                break
            time.sleep(0.1)
        process.kill()
        raise SiteUnavailable(
            f"{self.entry.name}: the GASS server did not start: {(self.work_dir / 'gass.err').read_text()[-300:]}"
        )

    # -- the verbs --------------------------------------------------------------------------------
    def rsl(self, glidein: GlideinSpec, gass: str) -> str:
        directory = self.glidein_dir(glidein.glidein_id)
        stage_in = "".join(
            f"({gass}{directory / name} $(SCRATCH_DIRECTORY)/{name})" for name in sorted(glidein.files)
        )
        environment = "".join(f"({k} {rsl_quote(v)})" for k, v in sorted(glidein.environment.items()))
        parts = [
            f"(executable={gass}{directory / 'glidein_startup.sh'})",
            "(scratch_dir=$(HOME))(directory=$(SCRATCH_DIRECTORY))",
            f"(file_stage_in={stage_in})" if stage_in else "",
            f"(stdout={gass}{directory / 'stdout'})(stderr={gass}{directory / 'stderr'})",
            f"(jobtype=single)(count={glidein.cpus})" if glidein.cpus > 1 else "",
            f"(maxWallTime={max(1, (glidein.walltime_s + 59) // 60)})" if glidein.walltime_s else "",
            f"(maxMemory={glidein.memory_mb})" if glidein.memory_mb else "",
            f"(environment={environment})" if environment else "",
            f"(two_phase={self.options.two_phase_s})(save_state=yes)",
            render_extras(self.entry, glidein) if self.entry.submit_extras else "",
        ]
        return "&" + "".join(parts)

    def submit(self, glideins: Sequence[GlideinSpec]) -> list[SubmitOutcome]:
        try:
            gass = self.gass_url()
        except SiteUnavailable as exc:
            return [Retry(str(exc))] * len(glideins)
        except OSError as exc:
            return [Retry(f"cannot start the GASS server: {exc.strerror}")] * len(glideins)
        retry = self.stage_all(glideins)
        if retry is not None:
            return retry
        answers = self._map(
            "submit", glideins, lambda g: {"gatekeeper": self.entry.gatekeeper, "rsl": self.rsl(g, gass)}
        )
        outcomes: list[SubmitOutcome] = []
        for answer in answers:
            if isinstance(answer, Exception):
                outcomes.append(Retry(str(answer)))
            elif answer["rc"] in (0, gram_client.ERROR_WAITING_FOR_COMMIT) and answer.get("contact"):
                outcomes.append(Submitted(answer["contact"]))
            elif answer["rc"] in TRANSIENT:
                outcomes.append(Retry(f"GRAM error {answer['rc']}: {answer.get('error', '')}"))
            else:
                outcomes.append(Refused(f"GRAM error {answer['rc']}: {answer.get('error', '')}"))
        return outcomes

    def commit(self, glideins: Mapping[str, str]) -> None:
        site_ids = list(glideins)
        self._map(
            "signal",
            site_ids,
            lambda contact: {"contact": contact, "signal": gram_client.SIGNAL_COMMIT_REQUEST},
        )

    def status(self, site_ids: Sequence[str]) -> dict[str, SiteStatus]:
        answers = self._map("status", site_ids, lambda contact: {"contact": contact})
        out: dict[str, SiteStatus] = {}
        uncommitted = []
        for contact, answer in zip(site_ids, answers, strict=True):
            if isinstance(answer, Exception):
                raise answer
            rc = answer["rc"]
            if rc == gram_client.ERROR_CONTACT_NOT_FOUND:
                continue  # forgotten by the job manager: the factory judges it by its output
            if rc != 0:
                # 79 and friends: the job manager did not answer; "done" cannot be told from "unreachable"
                raise SiteUnavailable(
                    f"{self.entry.name}: GRAM status of {contact}: error {rc}: {answer.get('error', '')}"
                )
            native, failure = answer["state"], int(answer.get("failure") or 0)
            state, reason = self.map_native(native), ""
            if native == "UNSUBMITTED":
                uncommitted.append(contact)  # recorded in the journal (we asked about it): let it run
            if native == "FAILED":
                if failure == 8:  # the job was cancelled
                    state, reason = GlideinState.REMOVED, "cancelled"
                elif failure == 111:
                    reason = "never committed: the request expired"
                else:
                    reason = f"GRAM failure code {failure}"
            out[contact] = SiteStatus(state, native if not failure else f"{native} ({failure})", reason)
        if uncommitted:
            self.commit(dict.fromkeys(uncommitted, ""))
        return out

    def cancel(self, site_ids: Sequence[str]) -> dict[str, bool]:
        answers = self._map("cancel", site_ids, lambda contact: {"contact": contact})
        return {
            contact: not isinstance(answer, Exception)
            and answer["rc"] in (0, gram_client.ERROR_CONTACT_NOT_FOUND)
            for contact, answer in zip(site_ids, answers, strict=True)
        }

    def cleanup(self, site_ids: Sequence[str]) -> None:
        self._map(
            "signal", site_ids, lambda contact: {"contact": contact, "signal": gram_client.SIGNAL_COMMIT_END}
        )

    def fetch_output(self, site_id: str, glidein_id: str) -> GlideinOutput | None:
        # the GASS server may write stdout a moment after the job manager says DONE
        deadline = time.monotonic() + 3.0
        while True:
            output = read_output(self.work_dir / glidein_id)
            if (output and RESULT_MARKER in output.stdout) or time.monotonic() > deadline:
                return output
            time.sleep(0.2)

    def list_tagged(self) -> dict[str, str]:
        """GRAM cannot list a user's jobs; none are needed: a request nobody recorded is never committed."""
        return {}

    def renew_credential(self, site_ids: Sequence[str], proxy: Path) -> dict[str, bool]:
        """Delegate the renewed proxy to the job manager of each glidein (fresh helpers read it)."""
        self.close()  # the Globus libraries keep the credential they acquired: new helpers, new proxy
        self.proxy = str(proxy)
        answers = self._map("refresh", site_ids, lambda contact: {"contact": contact})
        return {
            c: not isinstance(a, Exception) and a["rc"] == 0 for c, a in zip(site_ids, answers, strict=True)
        }


def _is_gass_server(pid: int) -> bool:
    try:
        return b"globus-gass-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop_gass_servers(work_dirs: Iterable[Path]) -> None:
    """For tests and operators: stop the detached GASS servers of these entries."""
    for work_dir in work_dirs:
        try:
            pid = int(json.loads((work_dir / "gass.json").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            continue
        if _is_gass_server(pid):
            os.kill(pid, signal.SIGTERM)
