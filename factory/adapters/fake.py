"""The reference adapter: a site in memory, exact and instant.

It defines what every adapter must do (the contract tests run the same suite on it and
on the real ones) and lets the factory's own logic be tested with sites that misbehave
on demand: refuse, time out, lose glideins, hold them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from factory.adapters.base import (
    GlideinOutput,
    GlideinSpec,
    Refused,
    Retry,
    SiteAdapter,
    SiteStatus,
    SubmitOutcome,
    Submitted,
)
from factory.errors import SiteUnavailable
from factory.glideins import GlideinState


@dataclass
class FakeOptions:
    start_immediately: bool = True  # submitted glideins run at once (else they stay queued)
    refuse: bool = False
    unavailable: bool = False
    status_delay_s: float = 0.0  # a slow CE: every status call takes this long


@dataclass
class FakeJob:
    tag: str
    state: GlideinState
    native: str
    reason: str = ""
    output: str = ""
    releases: int = 0
    hold_code: int | None = None
    spec: GlideinSpec | None = None


@dataclass
class FakeSite:
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))


SITES: dict[str, FakeSite] = {}  # by entry name: shared by every FakeAdapter of that entry, as a real site is


class FakeAdapter(SiteAdapter):
    kind = "fake"
    offered = False  # the tests' in-memory site: never suggested to users
    options_model = FakeOptions
    native_states = {
        "IDLE": GlideinState.QUEUED,
        "RUNNING": GlideinState.RUNNING,
        "HELD": GlideinState.HELD,
        "DONE": GlideinState.COMPLETED,
        "FAILED": GlideinState.FAILED,
        "CANCELLED": GlideinState.REMOVED,
    }

    @property
    def site(self) -> FakeSite:
        return SITES.setdefault(self.entry.name, FakeSite())

    def _available(self) -> None:
        if self.options.status_delay_s:
            time.sleep(self.options.status_delay_s)
        if self.options.unavailable:
            raise SiteUnavailable(f"{self.entry.name}: the fake CE does not answer")

    def submit(self, glideins: Sequence[GlideinSpec]) -> list[SubmitOutcome]:
        if self.options.unavailable:
            return [Retry("the fake CE does not answer")] * len(glideins)
        if self.options.refuse:
            return [Refused("the fake CE refuses this entry")] * len(glideins)
        out: list[SubmitOutcome] = []
        for glidein in glideins:
            site_id = f"fake.{next(self.site.counter)}"
            native = "RUNNING" if self.options.start_immediately else "IDLE"
            self.site.jobs[site_id] = FakeJob(glidein.tag, self.native_states[native], native, spec=glidein)
            out.append(Submitted(site_id))
        return out

    def status(self, site_ids: Sequence[str]) -> dict[str, SiteStatus]:
        self._available()
        return {
            i: SiteStatus(
                self.site.jobs[i].state,
                self.site.jobs[i].native,
                self.site.jobs[i].reason,
                self.site.jobs[i].hold_code,
                0 if self.site.jobs[i].hold_code is not None else None,
            )
            for i in site_ids
            if i in self.site.jobs
        }

    def cancel(self, site_ids: Sequence[str]) -> dict[str, bool]:
        self._available()
        out = {}
        for site_id in site_ids:
            job = self.site.jobs.get(site_id)
            if job is not None and job.state not in (GlideinState.COMPLETED, GlideinState.FAILED):
                job.state, job.native = GlideinState.REMOVED, "CANCELLED"
            out[site_id] = job is not None
        return out

    def cleanup(self, site_ids: Sequence[str]) -> None:
        for site_id in site_ids:
            self.site.jobs.pop(site_id, None)

    def fetch_output(self, site_id: str, glidein_id: str) -> GlideinOutput | None:
        job = self.site.jobs.get(site_id)
        return GlideinOutput(job.output) if job is not None else None

    def release(self, site_ids: Sequence[str]) -> dict[str, bool]:
        out = {}
        for site_id in site_ids:
            job = self.site.jobs.get(site_id)
            if job is not None and job.state == GlideinState.HELD:
                job.state, job.native, job.releases = GlideinState.QUEUED, "IDLE", job.releases + 1
                out[site_id] = True
            else:
                out[site_id] = False
        return out

    def list_tagged(self) -> dict[str, str]:
        self._available()
        return {job.tag: site_id for site_id, job in self.site.jobs.items()}

    # -- for tests: make the site do things ----------------------------------------------------
    def set_state(
        self, site_id: str, native: str, reason: str = "", output: str = "", hold_code: int | None = None
    ) -> None:
        job = self.site.jobs[site_id]
        job.native, job.state, job.reason, job.hold_code = (
            native,
            self.native_states[native],
            reason,
            hold_code,
        )
        if output:
            job.output = output
