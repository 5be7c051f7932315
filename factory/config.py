"""The factory's YAML config: one typed model per section, validated with file:line errors.

``load_factory_config(path)`` returns a FactoryConfig or raises ConfigError naming the
file, the line and the field, with "did you mean" for misspelled keys.  Each entry's
``options:`` is checked against the options model of its ``gridtype`` (one per adapter).
Knobs carry their unit in their name; the defaults are glideinWMS's where it has one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from updraft.core import protocol
from updraft.core.configfile import ConfigError, RelativePaths, Source, build_model, load_model, suggest
from updraft.service import PoolSettings as ServicePoolSettings

REMOVE_POLICIES = ("NO", "WAIT", "IDLE", "ALL")


@dataclass
class Limits:
    """How many glideins may exist at once (0: no limit).

    As in glideinWMS, ``max_glideins`` counts glideins idle (unsubmitted or queued) and
    running, not held ones; held glideins have ``max_held`` of their own.  Updraft also
    counts glideins it has asked the site to remove until they are gone, so a slow site
    cannot be flooded while it catches up.
    """

    max_glideins: int = 0  # idle + running (+ being removed)
    max_idle: int = 0  # unsubmitted + queued at the site
    max_held: int = 0

    def check(self) -> tuple[str, str] | None:
        for name in ("max_glideins", "max_idle", "max_held"):
            if getattr(self, name) < 0:
                return "", f"{name} cannot be negative"
        return None


def entry_limits() -> Limits:
    """glideinWMS's <per_entry glideins="10000" idle="2000" held="1000"/>."""
    return Limits(10000, 2000, 1000)


def default_frontend_limits() -> Limits:
    """glideinWMS's <default_per_frontend glideins="5000" idle="100" held="50"/>."""
    return Limits(5000, 100, 50)


@dataclass
class Pacing:
    """glideinWMS's <submit cluster_size max_per_cycle>, <remove max_per_cycle>, <release max_per_cycle>."""

    cluster_size: int = 10  # glideins per submission call to the site
    max_per_cycle: int = 100  # glideins submitted per request (entry and client) per cycle
    remove_max_per_cycle: int = 5  # excess glideins removed per request per cycle
    release_max_per_cycle: int = 20  # held glideins released per entry per cycle

    def check(self) -> tuple[str, str] | None:
        if self.cluster_size < 1 or self.max_per_cycle < 1:
            return "", "cluster_size and max_per_cycle must be at least 1"
        if self.remove_max_per_cycle < 1 or self.release_max_per_cycle < 1:
            return "", "remove_max_per_cycle and release_max_per_cycle must be at least 1"
        return None


@dataclass
class StaleAges:
    """Glideins older than these in a state are removed (0: never)."""

    unsubmitted_s: int = 900
    queued_s: int = 2 * 86400
    held_s: int = 2 * 3600
    running_s: int = 0  # 0: the pilot's own lifetime (GLIDEIN_Max_Walltime) plus an hour
    missing_s: int = 120  # absent from the site's answers this long: ended (its output says how) or lost


@dataclass
class HeldPolicy:
    """What becomes of a held glidein: glideinWMS (since 3.6.2) removes it unless its hold code is recoverable.

    A recoverable one is released once it has been held NumSystemHolds x ``min_release_time_s``
    (the count of its holds so far), at most ``max_releases`` times, at most
    ``pacing.release_max_per_cycle`` per cycle; then it is removed.  The text patterns are
    Updraft's extra, for sites whose holds carry no code: ``unrecoverable`` wins over
    everything, ``recoverable`` makes a hold recoverable whatever its code.
    """

    recoverable_exitcodes: str = ""  # glideinWMS's form: "CODE [SUBCODE ...],CODE ...", e.g. "2 0 4,34"
    max_releases: int = 10  # glideinWMS max_release_count
    min_release_time_s: int = 300  # glideinWMS min_release_time (x the number of holds)
    recoverable: list[str] = field(default_factory=list)  # hold reasons (substrings) to release anyway
    unrecoverable: list[str] = field(default_factory=list)  # hold reasons (substrings) never released
    codes: dict[int, list[int]] = field(default_factory=dict, init=False)  # parsed recoverable_exitcodes

    def check(self) -> tuple[str, str] | None:
        try:
            parse_exitcodes(self.recoverable_exitcodes)
        except ValueError as exc:
            return "recoverable_exitcodes", str(exc)
        if self.max_releases < 0 or self.min_release_time_s < 0:
            return "", "max_releases and min_release_time_s cannot be negative"
        return None

    def settle(self) -> None:
        self.codes = parse_exitcodes(self.recoverable_exitcodes)

    def recoverable_hold(self, code: int | None, subcode: int | None, reason: str) -> bool:
        """glideinWMS's isGlideinUnrecoverable, negated, with the text patterns around it."""
        text = reason.lower()
        if any(pattern.lower() in text for pattern in self.unrecoverable):
            return False
        if any(pattern.lower() in text for pattern in self.recoverable):
            return True
        if code is None or code not in self.codes:
            return False
        subcodes = self.codes[code]
        return not subcodes or subcode in subcodes


def parse_exitcodes(text: str) -> dict[int, list[int]]:
    """ "2 0 4,34" -> {2: [0, 4], 34: []}: hold codes, each with the subcodes it is limited to."""
    out: dict[int, list[int]] = {}
    for part in text.split(","):
        words = part.split()
        if not words:
            continue
        try:
            numbers = [int(word) for word in words]
        except ValueError:
            raise ValueError(f"{part.strip()!r}: expected a hold code and its subcodes, as numbers") from None
        out[numbers[0]] = numbers[1:]
    return out


@dataclass
class CustomCheck:
    """A validation script staged for the pilots of this entry (or of every entry)."""

    path: str
    type: str = "VO_Config"


#: the typed entry settings and the attributes they are published as (glideinWMS's names)
TYPED_ATTRIBUTES = {
    "cpus": protocol.ATTR_GLIDEIN_CPUS,
    "memory_mb": protocol.ATTR_GLIDEIN_MAX_MEMORY,
    "walltime_s": protocol.ATTR_GLIDEIN_MAX_WALLTIME,
}


@dataclass
class EntryConfig:
    name: str
    gridtype: str
    enabled: bool = True
    gatekeeper: str = ""  # CE contact, URL or partition, per gridtype
    #: GLIDEIN_CPUS: the cores a glidein gets; 0: not said (the pilot counts them, the factory counts 1)
    cpus: int = 0
    #: GLIDEIN_MaxMemMBs: the memory a glidein may use; 0: not said
    memory_mb: int = 0
    #: GLIDEIN_Max_Walltime: how long the site lets a glidein run; 0: not said
    walltime_s: int = 0
    attributes: dict[str, Any] = field(
        default_factory=dict
    )  # published too: GLIDEIN_Site, GLIDEIN_Supported_VOs, ...
    glexec: str = "none"  # none | auto | /path/to/glexec
    software_paths: list[str] = field(default_factory=list)
    squid: str = "auto"
    start_expr: str = "true"
    submit_extras: str = ""  # jinja2 over the entry's attributes: RSL, xRSL, JDL or sbatch options
    allowed_frontends: list[str] = field(default_factory=list)  # frontend names, or "*"
    limits: Limits = field(default_factory=entry_limits)  # glideinWMS <per_entry>
    frontend_limits: dict[str, Limits] = field(default_factory=dict)  # per frontend name, or "default"
    pacing: Pacing = field(default_factory=Pacing)
    stale: StaleAges = field(default_factory=StaleAges)
    held: HeldPolicy = field(default_factory=HeldPolicy)
    pilot: dict[str, Any] = field(default_factory=dict)  # extra pilot.json parameters
    custom_checks: list[CustomCheck] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # the adapter's own settings, see its options model
    adapter_options: Any = field(default=None, init=False)

    @property
    def site(self) -> str:
        return str(self.attributes.get(protocol.ATTR_GLIDEIN_SITE, self.name))

    @property
    def cores(self) -> int:
        """The cores the factory counts per glidein."""
        return self.cpus or 1

    def published_attributes(self) -> dict[str, Any]:
        """What the entry's glidefactory ad and its pilots carry: the attributes and the typed fields."""
        out = dict(self.attributes)
        for name, attribute in TYPED_ATTRIBUTES.items():
            value = getattr(self, name)
            if value:
                out[attribute] = value
        return out

    def allows(self, frontend: str) -> bool:
        return "*" in self.allowed_frontends or frontend in self.allowed_frontends

    def limits_for(self, frontend: str, factory_defaults: dict[str, Limits]) -> Limits:
        """One frontend's limits at this entry, over all its groups (glideinWMS's per_frontend)."""
        for table in (self.frontend_limits, factory_defaults):
            if frontend in table:
                return table[frontend]
        return (
            self.frontend_limits.get("default")
            or factory_defaults.get("default")
            or default_frontend_limits()
        )


@dataclass
class PoolSettings(ServicePoolSettings):
    pilot_url: str = ""  # the pool as glideins reach it (default: url)


@dataclass
class StagingSettings:
    dir: str = "staging"  # pilot bundle and checks, served over HTTP to the glideins
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    url: str = ""  # what glideins use, when they reach the server under another name


@dataclass
class CredentialSettings:
    """The factory's own credential at the sites (X.509 proxy), renewed at the CEs before it expires."""

    proxy: str = ""
    renew_before_s: int = 6 * 3600


@dataclass
class FactoryConfig(RelativePaths):
    name: str
    entries: list[EntryConfig]
    pool: PoolSettings = field(default_factory=PoolSettings)
    state_dir: str = "state"
    log_dir: str = ""
    staging: StagingSettings = field(default_factory=StagingSettings)
    cycle_s: float = 60.0
    status_timeout_s: float = 60.0
    status_concurrency: int = 4
    advertise_lifetime_s: int = 0  # 0: five cycles
    frontend_limits: dict[str, Limits] = field(default_factory=dict)  # per frontend name, or "default"
    unknown_glideins: str = "adopt"  # adopt | cancel: glideins at a site that the journal does not know
    submit_grace_s: float = (
        60.0  # a submission in doubt (crash, timeout) may take this long to show at the site
    )
    glidein_lifetime_s: int = 86400  # a glidein's life when its entry sets no GLIDEIN_Max_Walltime
    keep_ended_days: float = 7.0  # ended glideins stay in the journal (and `factory analyze`) this long
    credential: CredentialSettings = field(default_factory=CredentialSettings)
    pilot: dict[str, Any] = field(default_factory=dict)  # pilot.json parameters for every entry
    custom_checks: list[CustomCheck] = field(default_factory=list)
    path: str = field(default="", init=False)

    def check(self) -> tuple[str, str] | None:
        if self.unknown_glideins not in ("adopt", "cancel"):
            return "unknown_glideins", "must be adopt or cancel"
        if self.cycle_s <= 0:
            return "cycle_s", "must be positive"
        return None

    def entry(self, name: str) -> EntryConfig | None:
        return next((e for e in self.entries if e.name == name), None)


def load_factory_config(path: Path | str) -> FactoryConfig:
    config: FactoryConfig
    config, source = load_model(FactoryConfig, path)
    check_glidein_settings(config, config, (), source)
    seen: set[str] = set()
    for index, entry in enumerate(config.entries):
        where = ("entries", index)
        if entry.name in seen:
            raise source.error((*where, "name"), f"entry {entry.name!r} is defined twice")
        seen.add(entry.name)
        validate_entry(entry, where, source)
        check_glidein_settings(config, entry, where, source)
    return config


def check_glidein_settings(
    config: FactoryConfig, part: FactoryConfig | EntryConfig, where: tuple[Any, ...], source: Source
) -> None:
    """What every glidein would otherwise find out at its site: pilot.json parameters and check scripts."""
    from updraft.core.pilotparams import PilotConfig, PilotConfigError, convert_parameter

    known = {spec.name: str(spec.type) for spec in dataclasses.fields(PilotConfig)}
    for name, value in part.pilot.items():
        if name not in known:
            raise source.error((*where, "pilot", name), "not a pilot parameter" + suggest(str(name), known))
        try:
            convert_parameter(name, known[name], value)
        except PilotConfigError as exc:
            raise source.error((*where, "pilot", name), str(exc).split(": ", 1)[-1]) from None
    for index, check in enumerate(part.custom_checks):
        script = config.resolve(check.path)
        if not script.is_file():
            raise source.error((*where, "custom_checks", index, "path"), f"no such file: {script}")


def build_entry(data: dict[str, Any], source: Source | None = None) -> EntryConfig:
    """One entry from its mapping (a journal snapshot, a test), checked as the config file's are."""
    from updraft.core.configfile import LineMap

    source = source or Source("<entry>", LineMap(None))
    entry: EntryConfig = build_model(EntryConfig, data, (), source)
    return validate_entry(entry, (), source)


def validate_entry(entry: EntryConfig, where: tuple[Any, ...], source: Source) -> EntryConfig:
    """What the field types cannot say: the gridtype and its options, frontends, attributes, templates."""
    from factory.adapters import ADAPTERS

    adapter = ADAPTERS.get(entry.gridtype)
    if adapter is None:
        offered = [name for name, kind in ADAPTERS.items() if kind.offered]
        known = ", ".join(offered)
        raise source.error(
            (*where, "gridtype"),
            f"unknown gridtype {entry.gridtype!r}{suggest(entry.gridtype, offered)} (known: {known})",
        )
    entry.adapter_options = build_model(adapter.options_model, entry.options, (*where, "options"), source)
    problem = adapter.check_entry(entry)
    if problem:
        raise source.error((*where, problem[0]), problem[1])
    if not entry.allowed_frontends:
        raise source.error(
            (*where, "allowed_frontends"), "name the frontends that may use this entry (or '*')"
        )
    if entry.glexec not in ("none", "auto") and not entry.glexec.startswith("/"):
        raise source.error((*where, "glexec"), "must be none, auto or an absolute path")
    for key in (*TYPED_ATTRIBUTES.values(), protocol.ATTR_GLIDEIN_MAX_CPUTIME):
        value = entry.attributes.get(key)
        if value is not None and not (isinstance(value, int) and value >= 0):
            raise source.error((*where, "attributes", key), f"expected a whole number, got {value!r}")
    for name, attribute in TYPED_ATTRIBUTES.items():
        given = getattr(entry, name)
        if given < 0:
            raise source.error((*where, name), f"expected a whole number, got {given!r}")
        if attribute in entry.attributes:  # the glideinWMS spelling of the same setting
            value = entry.attributes.pop(attribute)
            if given and given != value:
                raise source.error(
                    (*where, name), f"given twice: {name}: {given} and attributes.{attribute}: {value}"
                )
            setattr(entry, name, value)
    if entry.submit_extras:
        from jinja2 import Environment, StrictUndefined, TemplateSyntaxError

        try:
            Environment(undefined=StrictUndefined).from_string(entry.submit_extras)
        except TemplateSyntaxError as exc:
            raise source.error((*where, "submit_extras"), f"template error: {exc.message}") from None
    return entry


def config_summary(config: FactoryConfig) -> list[dict[str, Any]]:
    return [
        dataclasses.asdict(entry) | {"adapter_options": dataclasses.asdict(entry.adapter_options)}
        for entry in config.entries
    ]


__all__ = ["ConfigError", "EntryConfig", "FactoryConfig", "Limits", "load_factory_config"]
