"""The glidein's startup script, rendered per entry and glidein from a jinja2 template.

Everything the pilot needs is written into the script (pool, site, limits, checks with their
sha256) except the token, which travels as a file with the job: never on a command line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from updraft.core import protocol

if TYPE_CHECKING:
    from factory.config import EntryConfig, FactoryConfig

TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class StagedFile:
    name: str
    sha256: str
    failure_type: str = ""  # custom checks: the failure type when the script says none


@dataclass(frozen=True)
class StartupSpec:
    """Everything one glidein's startup script says: who it is, where to go, what to fetch."""

    factory: FactoryConfig
    entry: EntryConfig
    glidein_id: str
    client: str  # "<frontend>.<group>" the glidein serves
    params: dict[str, str]  # the frontend group's GlideinParam<Name> choices
    pool_url: str
    staging_url: str
    pilot: StagedFile
    checks: list[StagedFile] = field(default_factory=list)
    lease_until: float = 0.0  # the factory's lease: the pilot never lives past it
    pool_ca: bool = False  # the pool's CA travels with the glidein (POOL_CA_FILE): the pilot verifies with it


def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def pilot_settings(
    factory: FactoryConfig, entry: EntryConfig, client: str, params: dict[str, str], pool_url: str, checks: list[StagedFile], lease_until: float = 0.0
) -> dict[str, Any]:  # fmt: skip
    """pilot.json for one glidein: the factory's, then the entry's, then what the frontend asks for."""
    attributes = entry.published_attributes()
    settings: dict[str, Any] = {
        "pool": pool_url,
        "site": entry.site,
        "entry": entry.name,
        "factory": factory.name,
        "glidein_name": factory.name,
        "frontend": client.split(".", 1)[0],
        "group": client.split(".", 1)[1] if "." in client else "",
        "cpus": str(entry.cpus) if entry.cpus else "auto",
        "max_walltime_s": entry.walltime_s,
        "max_cputime_s": int(attributes.get(protocol.ATTR_GLIDEIN_MAX_CPUTIME, 0) or 0),
        "glexec": entry.glexec,
        "software_paths": list(entry.software_paths),
        "squid": entry.squid,
        "start_expr": entry.start_expr,
        "custom_checks": [
            {"path": c.name, "sha256": c.sha256, "type": c.failure_type} for c in checks
        ],  # next to pilot.json
        "lease_until": float(lease_until),
        "attributes": {
            k: v
            for k, v in attributes.items()
            if k.startswith("GLIDEIN_") and k not in (protocol.ATTR_GLIDEIN_SITE,)
        },
    }
    if not settings["max_walltime_s"] and getattr(factory, "glidein_lifetime_s", 0):
        settings["lifetime_s"] = int(factory.glidein_lifetime_s)  # every glidein ends by itself
    if entry.memory_mb:
        settings["memory_mb"] = entry.memory_mb
    settings.update(factory.pilot)
    settings.update(entry.pilot)
    for name, value in params.items():  # the frontend group's choices (start expression, gLExec policy...)
        key = FRONTEND_PARAMS.get(name)
        if key:
            settings[key] = value
    return settings


#: GlideinParam<Name> a frontend may send -> the pilot parameter it sets
FRONTEND_PARAMS = {
    protocol.ATTR_GLIDEIN_START_EXPR: "group_start_expr",
    protocol.ATTR_GLIDEIN_GLEXEC_USE: "glexec_policy",
    protocol.ATTR_GLIDEIN_IDLE_TIMEOUT: "idle_timeout_s",
    protocol.ATTR_GLIDEIN_TAIL_TIMEOUT: "tail_timeout_s",
    protocol.ATTR_GLIDEIN_RANK: "rank",
}


#: the name the pool's CA has in a glidein's files, as the token's is pilot.token
POOL_CA_FILE = "pool-ca.pem"


def render(spec: StartupSpec) -> str:
    settings = pilot_settings(
        spec.factory, spec.entry, spec.client, spec.params, spec.pool_url, spec.checks, spec.lease_until
    )
    settings["work_dir"] = ""  # set on the command line
    settings["glidein_id"] = spec.glidein_id
    if spec.pool_ca:
        settings["ca_file"] = POOL_CA_FILE  # beside pilot.json in the work directory
    text = json.dumps(settings, indent=1, sort_keys=True)
    return environment().get_template("glidein_startup.sh.j2").render(
        glidein_id=spec.glidein_id, entry=spec.entry.name, site=spec.entry.site, factory=spec.factory.name,
        client=spec.client, staging_url=spec.staging_url.rstrip("/"), pilot_name=spec.pilot.name,
        pilot_sha256=spec.pilot.sha256, checks=spec.checks, pilot_json=text,
    )  # fmt: skip
