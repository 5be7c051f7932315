"""The simulator's inputs: site models and workloads, read from YAML as every Updraft config is."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frontend.config import duration_s
from updraft.core.configfile import build_model, load_model

#: a site model's times, given as durations ("20m") or seconds
DURATIONS = ("queue_wait_s", "startup_s", "failed_hold_s", "walltime_s", "idle_timeout_s")


@dataclass
class SiteModel:
    """One site with one entry (CE) for this VO."""

    name: str
    cores: int  # the cores this VO can get at the site
    pilot_cores: int = 8
    queue_wait_s: Any = "10m"  # mean wait in the site's batch queue (exponential)
    startup_s: Any = 60  # from start to a validated pilot
    validation_failure_rate: float = 0.0
    failed_hold_s: Any = "20m"  # a failed pilot keeps its slot this long
    walltime_s: Any = "24h"  # GLIDEIN_Max_Walltime
    idle_timeout_s: Any = "5m"
    max_glideins: int = 0  # the factory's limit at the entry (0: none)
    attributes: dict[str, Any] = field(default_factory=dict)  # more of the entry's glidefactory ad
    downtimes: list[list[Any]] = field(default_factory=list)  # [[from, to], ...] in simulated time

    def check(self) -> tuple[str, str] | None:
        if self.cores < 0:
            return "cores", "cannot be negative"
        if self.pilot_cores < 1:
            return "pilot_cores", "must be at least 1"
        if not 0 <= self.validation_failure_rate <= 1:
            return "validation_failure_rate", "must be between 0 and 1"
        for name in DURATIONS:
            try:
                duration_s(getattr(self, name))
            except ValueError as exc:
                return name, str(exc)
        try:
            [[duration_s(a), duration_s(b)] for a, b in self.downtimes]
        except (ValueError, TypeError):
            return "downtimes", "expected [[from, to], ...] durations"
        return None

    def settle(self) -> None:
        for name in DURATIONS:
            setattr(self, name, duration_s(getattr(self, name)))
        self.downtimes = [[duration_s(a), duration_s(b)] for a, b in self.downtimes]


@dataclass
class GeneratedSites:
    """Many sites at once: sizes spread evenly between the bounds, every other setting from ``like``."""

    count: int
    prefix: str = "Site"
    cores: list[int] = field(default_factory=lambda: [1000, 9000])  # [smallest, largest]
    like: dict[str, Any] = field(default_factory=dict)  # any other SiteModel setting


@dataclass
class SitesFile:
    sites: list[SiteModel] = field(default_factory=list)
    generate: GeneratedSites | None = None
    factory: str = "simfactory"


@dataclass
class Arrival:
    start: Any = 0  # when the first job arrives
    over: Any = 0  # spread evenly over this long (0: all at once)

    def check(self) -> tuple[str, str] | None:
        for name in ("start", "over"):
            try:
                setattr(self, name, duration_s(getattr(self, name)))
            except ValueError as exc:
                return name, str(exc)
        return None


@dataclass
class Batch:
    name: str
    count: int
    cores: int = 1
    runtime_s: Any = "1h"  # mean
    runtime: str = "exponential"  # exponential | fixed | uniform (mean/2 .. 3 mean/2)
    desired_sites: Any = "any"  # "any" (no DESIRED_Sites), [A, B], or {random: k, choices: n}
    allow_overflow: bool = True
    owner: str = "sim"
    attributes: dict[str, Any] = field(default_factory=dict)  # more job attributes (ClassAd values)
    arrival: Arrival = field(default_factory=Arrival)

    def check(self) -> tuple[str, str] | None:
        if self.count < 0:
            return "count", "cannot be negative"
        if self.cores < 1:
            return "cores", "must be at least 1"
        if self.runtime not in ("exponential", "fixed", "uniform"):
            return "runtime", "exponential, fixed or uniform"
        try:
            duration_s(self.runtime_s)
        except ValueError as exc:
            return "runtime_s", str(exc)
        spec = self.desired_sites
        if not (
            spec == "any"
            or isinstance(spec, list)
            or (isinstance(spec, dict) and set(spec) <= {"random", "choices"})
        ):
            return "desired_sites", 'expected "any", a list of sites or {random: k, choices: n}'
        return None

    def settle(self) -> None:
        self.runtime_s = duration_s(self.runtime_s)


@dataclass
class WorkloadFile:
    batches: list[Batch]
    arrival_step_s: float = 60.0  # arrivals are grouped in steps of this long


def load_sites(path: Path) -> list[SiteModel]:
    made: SitesFile
    made, source = load_model(SitesFile, path)
    sites = list(made.sites)
    if made.generate is not None:
        g = made.generate
        low, high = (g.cores * 2)[:2]
        for index in range(g.count):
            cores = low + (high - low) * index // max(1, g.count - 1)
            values = {**g.like, "name": f"{g.prefix}{index:03d}", "cores": cores}
            sites.append(build_model(SiteModel, values, ("generate", "like"), source))
    names = [s.name for s in sites]
    if not sites:
        raise source.error((), "no sites: give sites: [...] or generate: {count: N}")
    if len(set(names)) != len(names):
        raise source.error(
            ("sites",), f"site names repeat: {sorted(n for n, c in Counter(names).items() if c > 1)}"
        )
    return sites


def load_workload(path: Path) -> WorkloadFile:
    made: WorkloadFile = load_model(WorkloadFile, path)[0]
    return made


# -- the model -----------------------------------------------------------------------------------
