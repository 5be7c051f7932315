"""The glidein's startup script, rendered per entry and glidein from a jinja2 template.

Everything the pilot needs is written into the script (pool, site, limits, checks with their
sha256) except the token, which travels as a file with the job: never on a command line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from updraft.core import protocol

TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class StagedFile:
    name: str
    sha256: str
    failure_type: str = ""  # custom checks: the failure type when the script says none


def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def pilot_settings(
    factory: Any, entry: Any, client: str, params: dict[str, str], pool_url: str, checks: list[StagedFile], lease_until: float = 0.0
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


def render(
    factory: Any, entry: Any, glidein_id: str, client: str, params: dict[str, str], pool_url: str, staging_url: str,
    pilot: StagedFile, checks: list[StagedFile], lease_until: float = 0.0,
) -> str:  # fmt: skip
    settings = pilot_settings(factory, entry, client, params, pool_url, checks, lease_until)
    settings["work_dir"] = ""  # set on the command line
    text = json.dumps(settings, indent=1, sort_keys=True)
    return environment().get_template("glidein_startup.sh.j2").render(
        glidein_id=glidein_id, entry=entry.name, site=entry.site, factory=factory.name, client=client, staging_url=staging_url.rstrip("/"),
        pilot_name=pilot.name, pilot_sha256=pilot.sha256, checks=checks, pilot_json=text,
    )  # fmt: skip
