"""The pilot's parameters (pilot.json): their names, types and defaults, and how a value is read.

The pilot reads them (pilot/config.py: command line, environment, pilot.json); the factory
writes pilot.json and checks an entry's ``pilot:`` settings against the same table at load.
Standard library only (Python >= 3.9): the pilot bundles it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from updraft.core.errors import UpdraftError


class PilotConfigError(UpdraftError):
    """The parameters themselves are wrong (the pilot exits 2)."""

    exit_status = 2


DEFAULT_CHECKS = [
    "python", "blacklist", "drain", "disk", "tmp", "resources", "software", "pool", "squid", "credential", "glexec",
    "custom",
]  # fmt: skip


def _split(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [part.strip() for part in str(value).replace(";", ",").split(",") if part.strip()]


@dataclass
class PilotConfig:
    # -- where and who ---------------------------------------------------------------------
    pool: str = ""
    token_file: str = ""
    site: str = ""
    entry: str = ""
    factory: str = ""
    glidein_name: str = "updraft"  # GLIDEIN_Name: the factory's name for this kind of glidein
    glidein_id: str = ""  # the factory's id of this glidein: lets it tell idle pilots from busy ones
    frontend: str = ""
    group: str = ""
    ca_file: str = ""
    # -- resources -------------------------------------------------------------------------
    cpus: str = "auto"  # auto | node | slot | N
    memory_mb: int = 0  # 0: detect
    disk_gb: float = 0.0  # 0: what the work directory has free
    work_dir: str = ""
    # -- lifetime (seconds) ----------------------------------------------------------------
    idle_timeout_s: int = 1200  # no job at all for this long after validation: leave
    tail_timeout_s: int = 420  # idle this long after the last job: leave
    lifetime_s: int = 0  # hard end from start; 0: from the site limits below, else unlimited
    lease_until: float = 0.0  # the factory's lease (epoch s): never live past it, even if forgotten
    max_walltime_s: int = 0  # GLIDEIN_Max_Walltime of the entry
    max_cputime_s: int = 0  # GLIDEIN_MaxCPUTime of the entry
    die_margin_s: int = 300  # ToDie = min(limits) - margin ...
    die_spread_s: int = 300  # ... - a random part of this, so pilots do not all end together
    retire_before_die_s: int = 0  # ToRetire = ToDie - this; 0: 10 % of the lifetime, at most an hour
    vacate_grace_s: int = 30  # after SIGTERM or ToDie: how long jobs get to stop
    # -- validation ------------------------------------------------------------------------
    checks: list[str] = field(default_factory=lambda: list(DEFAULT_CHECKS))
    min_python: str = "3.9"
    min_disk_gb: float = 1.0
    min_memory_mb: int = 0
    min_cpus: int = 1
    software_paths: list[str] = field(default_factory=list)  # e.g. /cvmfs/cms.cern.ch
    software_probe: str = ""  # a command that must succeed ("CMSSW is available")
    squid: str = "auto"  # auto | none | http://host:port
    squid_required: bool = False
    squid_test_url: str = ""  # fetched through the proxy; default: the pool's ping
    credential_margin_s: int = 3600  # credentials must outlive the pilot by this much
    blacklist: list[str] = field(default_factory=list)  # host names or fnmatch patterns refused
    drain_file: str = ""  # if this file exists the site is draining: take no jobs
    glexec_policy: str = "NEVER"  # NEVER | OPTIONAL | REQUIRED (the frontend group's)
    glexec: str = "none"  # none | auto | /path/to/glexec (the entry's)
    isolation: str = "none"  # none | auto | bwrap: bubblewrap when gLExec is not used
    custom_checks: list[dict[str, Any]] = field(
        default_factory=list
    )  # [{"path": ..., "sha256": ..., "type": ...}]
    check_timeout_s: int = 120
    failure_hold_s: int = 1200  # keep a broken node's batch slot busy this long before exiting
    # -- matching and running ----------------------------------------------------------------
    start_expr: str = "true"  # the entry's START
    group_start_expr: str = "true"  # the frontend group's start_expr
    rank: str = "0"
    attributes: dict[str, Any] = field(
        default_factory=dict
    )  # more slot ad attributes (GLIDEIN_Supported_VOs ...)
    poll_wait_s: float = 20.0
    monitor_interval_s: float = 1.0
    job_max_runtime_s: int = 0  # a ceiling for every job on this pilot; 0: none
    memory_enforcement: bool = True  # hold jobs whose memory goes over RequestMemory ...
    memory_floor_mb: int = 128  # ... or this much, whichever is more (the default RequestMemory is tiny)
    black_hole_failures: int = 5  # this many jobs in a row failing fast stop the pilot taking jobs
    claim_reuse: bool = True  # take the next job in the answer to an exit report (no poll in between)
    black_hole_seconds: int = 60  # ... where fast means within this many seconds
    transport: str = "auto"  # auto (requests when importable) | stdlib
    result_file: str = ""  # where the final record goes; default <work>/pilot-result.json

    @property
    def name_hint(self) -> str:
        return self.glidein_name


def convert_parameter(name: str, kind: str, value: Any) -> Any:
    try:
        if kind == "int":
            return int(float(value))
        if kind == "float":
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            return str(value).strip().lower() in ("1", "true", "yes", "on")
        if kind.lower().startswith("list"):
            if name == "custom_checks":
                return value if isinstance(value, list) else json.loads(value)
            return _split(value)
        if kind.lower().startswith("dict"):
            return value if isinstance(value, dict) else json.loads(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise PilotConfigError(f"{name}: cannot use {value!r} ({exc})") from None
