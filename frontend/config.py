"""The frontend's YAML config: groups, their matching, limits, removal and overflow.

Every number glideinWMS hard-codes or defaults is a knob here, with glideinWMS's default as
ours (frontend.xml: idle_glideins_per_entry max 100 reserve 5; idle_vms_per_entry max 100
curb 5; idle_vms_total max 1000 curb 200; running_glideins_per_entry max 10000 min 0
relative_to_queue 1.15; running_glideins_total max 100000 curb 90000; the frontend's totals
and the pool-wide ``*_global`` totals with the same numbers; ramp_up_attenuation 3; old idle
after 10 minutes; ignore_down_entries false).  glideinWMS's ``idle_vms_*`` are called
``idle_slots_*`` here; they count registered idle slots, as there.  Deliberate differences,
each a knob: removal of the configured type waits ``wait_cycles: 3`` cycles without demand
(glideinWMS ``wait`` 0, i.e. one cycle), because removing on one bad reading once drained a
whole pool; a curb of 0 is off (glideinWMS would halve always).

Expressions are ClassAd text, checked here; nothing in the file is evaluated as Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from updraft.core import classads
from updraft.core.configfile import ConfigError, RelativePaths, load_model, suggest
from updraft.core.errors import ExpressionError
from updraft.service import PoolSettings as ServicePoolSettings

REMOVAL_POLICIES = ("NO", "WAIT", "IDLE", "ALL", "DISABLE")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_s(value: int | float | str) -> float:
    """Seconds from 90, "90s", "30m", "6h" or "1d"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a duration (use seconds, or 30m, 6h, 1d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class MaxCurb:
    max: int
    curb: int

    def check(self) -> tuple[str, str] | None:
        if self.max < 0 or self.curb < 0:
            return "", "max and curb cannot be negative"
        return None


@dataclass
class IdleGlideinsPerEntry:
    """The idle glideins a group asks one entry for."""

    max: int = 100  # the request never asks for more
    reserve: int = 5  # extra asked for when jobs have been idle a long time (at most old idle / 3)
    curb: int = 0  # Updraft's own: halve the request when this many of our glideins wait in the site's queue (0: never)

    def check(self) -> tuple[str, str] | None:
        if min(self.max, self.reserve, self.curb) < 0:
            return "", "max, reserve and curb cannot be negative"
        return None


@dataclass
class RunningGlideinsPerEntry:
    max: int = 10000  # the group's slots registered at the entry: no more requests beyond this
    min: int = 0  # a floor of idle jobs assumed at the entry: keeps a warm pool even with an empty queue
    relative_to_queue: float = 1.15  # max running = (idle jobs - idle slots + running jobs) x this + 1

    def check(self) -> tuple[str, str] | None:
        if self.max < 0 or self.min < 0:
            return "max" if self.max < 0 else "min", "cannot be negative"
        if self.min > self.max:
            return "min", f"{self.min} is above max ({self.max})"
        if self.relative_to_queue <= 0:
            return "relative_to_queue", "must be positive"
        return None


@dataclass
class GroupLimits:
    idle_glideins_per_entry: IdleGlideinsPerEntry = field(default_factory=IdleGlideinsPerEntry)
    idle_slots_per_entry: MaxCurb = field(
        default_factory=lambda: MaxCurb(100, 5)
    )  # registered idle slots of the group at the entry (glideinWMS idle_vms_per_entry)
    idle_slots_total: MaxCurb = field(default_factory=lambda: MaxCurb(1000, 200))
    running_glideins_per_entry: RunningGlideinsPerEntry = field(default_factory=RunningGlideinsPerEntry)
    running_glideins_total: MaxCurb = field(default_factory=lambda: MaxCurb(100000, 90000))


@dataclass
class FrontendLimits:
    """Over every group of this frontend, and (``*_global``) over every slot in the pool."""

    idle_slots_total: MaxCurb = field(default_factory=lambda: MaxCurb(1000, 200))
    running_glideins_total: MaxCurb = field(default_factory=lambda: MaxCurb(100000, 90000))
    idle_slots_total_global: MaxCurb = field(default_factory=lambda: MaxCurb(1000, 200))
    running_glideins_total_global: MaxCurb = field(default_factory=lambda: MaxCurb(100000, 90000))


@dataclass
class Removal:
    """glideinWMS's glideins_removal: type, wait, requests_tracking, margin; plus the automatic levels."""

    policy: str = "NO"  # NO | WAIT (unsubmitted) | IDLE (also queued) | ALL (also idle pilots) | DISABLE (not even automatic)
    wait_cycles: int = 3  # cycles without idle jobs (complete data only) before the configured type is sent
    margin: int = 0  # glideins kept on top of the request; sent only with requests_tracking, as in glideinWMS
    requests_tracking: bool = False  # send the configured type every cycle and let the factory compare
    include_busy: bool = False  # ALL also removes glideins running jobs (max running 0): explicit only
    auto_wait_after: int = 5  # automatic WAIT after more than this many cycles without idle jobs
    auto_idle_after: int = 10  # ... IDLE when also no slot has been in use for more than this many
    auto_all_after: int = 10  # ... ALL when also no slot has been registered for more than this many

    def check(self) -> tuple[str, str] | None:
        policy = self.policy.upper()
        if policy not in REMOVAL_POLICIES:
            return (
                "policy",
                f"must be one of {', '.join(REMOVAL_POLICIES)}{suggest(policy, REMOVAL_POLICIES)}",
            )
        if policy not in ("NO", "DISABLE") and self.wait_cycles < 1:
            return (
                "wait_cycles",
                "removal needs at least one cycle without demand (missing data never counts)",
            )
        if self.margin < 0:
            return "margin", "cannot be negative"
        if min(self.auto_wait_after, self.auto_idle_after, self.auto_all_after) < 0:
            return "auto_wait_after", "the automatic removal counts cannot be negative"
        if self.include_busy and policy != "ALL":
            return "include_busy", "only with policy ALL"
        return None

    def settle(self) -> None:
        self.policy = self.policy.upper()


#: which jobs may overflow: CRAB's opt-in flag unless it says "False", and Updraft's opt-out
OVERFLOW_ELIGIBLE = 'AllowOverflow =!= false && ifThenElse(isString(CMS_ALLOW_OVERFLOW), toLower(CMS_ALLOW_OVERFLOW) =!= "false", true)'
OVERFLOW_CLOCKS = {"queued": "QDate", "idle": "EnteredCurrentStatus"}


@dataclass
class Overflow:
    """Jobs waiting longer than ``after`` for their home sites may also run at those sites' neighbours.

    As CMS runs it (the CRAB schedds' JobRouter "Overflow" route): the clock is the time
    since submission (``QDate``) by default, 20 minutes, and each home site names its own
    region of targets.  ``clock: idle`` measures the time in the current idle state instead
    (a requeued job starts again); ``eligible`` is the ClassAd test a job must pass, e.g.
    CRAB's opt-in ``CMS_ALLOW_OVERFLOW =?= "True"``.
    """

    after: Any = "20m"  # seconds or 30m / 6h / 1d
    sites: Any = field(default_factory=dict)  # {HomeSite: [OtherSite, ...]}, or "any" said explicitly
    max_per_home_site: int = 0  # overflowed jobs reading from one home site at once (0: no bound)
    clock: str = "queued"  # queued: since QDate (CMS) | idle: since EnteredCurrentStatus
    eligible: str = OVERFLOW_ELIGIBLE  # a job for which this is not true never overflows
    after_s: float = field(default=0.0, init=False)

    def check(self) -> tuple[str, str] | None:
        try:
            duration_s(self.after)
        except ValueError as exc:
            return "after", str(exc)
        if self.clock not in OVERFLOW_CLOCKS:
            return (
                "clock",
                f"must be one of {', '.join(OVERFLOW_CLOCKS)}{suggest(self.clock, OVERFLOW_CLOCKS)}",
            )
        try:
            classads.check(self.eligible, "eligible")
        except ExpressionError as exc:
            return "eligible", f"{exc.reason}: {exc.text!r}"
        if not self.sites:
            return (
                "sites",
                'name each home site\'s overflow sites {HomeSite: [OtherSite, ...]} (or say "any")',
            )
        if self.sites != "any":
            if not isinstance(self.sites, dict):
                return "sites", 'expected a mapping {HomeSite: [OtherSite, ...]} or "any"'
            for home, others in self.sites.items():
                if not isinstance(others, list) or not all(isinstance(o, str) for o in others):
                    return "sites", f"{home}: expected a list of site names"
                if home in others:
                    return "sites", f"{home}: a site cannot overflow to itself"
        if self.max_per_home_site < 0:
            return "max_per_home_site", "cannot be negative"
        return None

    def settle(self) -> None:
        self.after_s = duration_s(self.after)

    @property
    def clock_attribute(self) -> str:
        return OVERFLOW_CLOCKS[self.clock]

    def targets(self, home: str, known_sites: set[str]) -> list[str]:
        if self.sites == "any":
            return sorted(known_sites - {home})
        return list(self.sites.get(home, []))

    def covers(self, home: str) -> bool:
        return self.sites == "any" or home in self.sites


@dataclass
class PilotTokens:
    lifetime_s: int = 6 * 3600  # the pilot renews it at a third of its life
    renew_after_s: int = 0  # mint a new one after this (0: half the lifetime)


@dataclass
class GroupConfig:
    name: str
    enabled: bool = True
    job_constraint: str = "true"  # which jobs of the queue this group provisions for
    factory_constraint: str = "true"  # which entries it may use (evaluated on the glidefactory ad)
    match_expr: str = "true"  # MY: the job, TARGET: the entry's glidefactory ad
    start_expr: str = "true"  # added to the pilot's START (MY: the slot, TARGET: the job)
    match_attrs: list[str] = field(
        default_factory=list
    )  # job attributes to group by (default: what match_expr reads)
    limits: GroupLimits = field(default_factory=GroupLimits)
    ramp_up_attenuation: float = 3.0
    old_idle_s: float = 600.0
    removal: Removal = field(default_factory=Removal)
    idle_lifetime_s: int = (
        0  # glideins idle in the site queue longer than this are removed by the factory (0: its own)
    )
    pilot_tokens: PilotTokens = field(default_factory=PilotTokens)
    params: dict[str, str] = field(
        default_factory=dict
    )  # GlideinParam<Name>: GLIDEIN_Glexec_Use, GLIDEIN_Idle_Timeout...
    overflow: Overflow | None = None
    ignore_down_entries: bool | None = None  # None: the frontend's setting
    job_refs: list[str] = field(default_factory=list, init=False)  # the attributes the group reads from jobs

    def check(self) -> tuple[str, str] | None:
        for name in ("job_constraint", "factory_constraint", "match_expr", "start_expr"):
            try:
                classads.check(getattr(self, name), name)
            except ExpressionError as exc:
                return name, f"{exc.reason}: {exc.text!r}"
        for name in self.match_attrs:
            if not classads.is_valid_attribute_name(name):
                return "match_attrs", f"{name!r} is not an attribute name"
        if self.ramp_up_attenuation < 1:
            return "ramp_up_attenuation", "must be at least 1"
        return None

    def settle(self) -> None:
        own, _target = classads.references(self.match_expr)
        self.job_refs = (
            sorted(set(self.match_attrs) | own) if not self.match_attrs else list(self.match_attrs)
        )


@dataclass
class PoolSettings(ServicePoolSettings):
    """The user pool (url, token_file: scope frontend, subject = this frontend's name, ca_file)."""

    #: the pool as pilots reach it, when it is not ``url`` (named in every request, with its CA)
    pilot_url: str = ""


@dataclass
class FactoryPoolSettings(ServicePoolSettings):
    """The factories' own pool (glideinWMS's WMS collector), when it is not the user pool.

    Empty url: the factories read requests from the user pool itself (one pool in both roles).
    Otherwise the frontend reads the entries and advertises its requests there, with a token
    that pool gave it, and each request names the user pool its pilots must join.
    """

    #: token_file: a token with scope frontend from that pool, subject = this frontend's name


@dataclass
class FrontendConfig(RelativePaths):
    name: str
    groups: list[GroupConfig]
    pool: PoolSettings = field(default_factory=PoolSettings)
    factory_pool: FactoryPoolSettings = field(default_factory=FactoryPoolSettings)
    state_dir: str = "state"
    log_dir: str = ""
    cycle_s: float = 60.0
    query_timeout_s: float = 30.0
    advertise_lifetime_s: int = 0  # 0: five cycles
    factories: list[str] = field(default_factory=list)  # factory names to use (empty: any that allows us)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = -1  # GET /metrics for Prometheus on this port (0: any free port, -1: off)
    limits: FrontendLimits = field(default_factory=FrontendLimits)
    ignore_down_entries: bool = (
        False  # glideinWMS's default: a down entry keeps its share of the jobs, asks 0
    )
    downtimes_file: str = ""  # the frontend's own downtimes (default: <state_dir>/downtimes.json)
    path: str = field(default="", init=False)

    def check(self) -> tuple[str, str] | None:
        if self.cycle_s <= 0:
            return "cycle_s", "must be positive"
        if self.query_timeout_s <= 0:
            return "query_timeout_s", "must be positive"
        if not -1 <= self.metrics_port <= 65535:
            return "metrics_port", "a TCP port (0: any free port, -1: off)"
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            return "name", "letters, digits, '.', '_' and '-' only"
        if not self.factory_pool.url and (self.factory_pool.token_file or self.factory_pool.ca_file):
            return "factory_pool.url", "name the factories' pool (or leave factory_pool out: the user pool)"
        return None

    def group(self, name: str) -> GroupConfig | None:
        return next((g for g in self.groups if g.name == name), None)


def load_frontend_config(path: Path | str) -> FrontendConfig:
    config: FrontendConfig
    config, source = load_model(FrontendConfig, path)
    seen: set[str] = set()
    for index, group in enumerate(config.groups):
        if group.name in seen:
            raise source.error(("groups", index, "name"), f"group {group.name!r} is defined twice")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", group.name):
            raise source.error(("groups", index, "name"), "letters, digits, '_' and '-' only")
        seen.add(group.name)
        idle = group.limits.idle_glideins_per_entry
        where = ("groups", index, "limits", "idle_glideins_per_entry", "reserve")
        if idle.reserve > idle.max and source.lines.given(where):  # given, not the default 5
            raise source.error(
                where,
                f"{idle.reserve} is above max ({idle.max}): the request never asks for more than max,"
                " so that reserve could never be asked for",
            )
    if not config.groups:
        raise source.error(("groups",), "a frontend needs at least one group")
    return config


__all__ = ["ConfigError", "FrontendConfig", "FrontendLimits", "GroupConfig", "load_frontend_config"]
