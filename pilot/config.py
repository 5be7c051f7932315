"""The pilot's parameters (updraft.core.pilotparams), read from the command line, the startup environment and pilot.json.

Precedence: command line, then environment (``UPDRAFT_PILOT_<NAME>`` for every knob, plus
the glideinWMS names a factory's startup script exports, such as ``GLIDEIN_Site``), then the
``--config`` JSON file, then the defaults below.  Standard library only (Python >= 3.9).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Optional

from updraft.core import protocol
from updraft.core.pilotparams import DEFAULT_CHECKS, PilotConfig, PilotConfigError, convert_parameter

#: environment names a factory's startup script may use instead of UPDRAFT_PILOT_<NAME>
ENV_ALIASES: Mapping[str, list[str]] = {
    "pool": ["UPDRAFT_POOL"],
    "token_file": ["UPDRAFT_TOKEN_FILE"],
    "site": [protocol.ATTR_GLIDEIN_SITE],
    "entry": [protocol.ATTR_GLIDEIN_ENTRY],
    "factory": [protocol.ATTR_GLIDEIN_FACTORY],
    "glidein_name": [protocol.ATTR_GLIDEIN_NAME],
    "frontend": [protocol.ATTR_GLIDEIN_CLIENT],
    "group": [protocol.ATTR_GLIDEIN_CLIENT_GROUP],
    "cpus": [protocol.ATTR_GLIDEIN_CPUS],
    "memory_mb": [protocol.ATTR_GLIDEIN_MAX_MEMORY],
    "max_walltime_s": [protocol.ATTR_GLIDEIN_MAX_WALLTIME],
    "max_cputime_s": [protocol.ATTR_GLIDEIN_MAX_CPUTIME],
    "work_dir": [protocol.ATTR_GLIDEIN_WORK_DIR],
    "glexec": [protocol.ATTR_GLIDEIN_GLEXEC_LOCATION, "GLEXEC_BIN"],
    "glexec_policy": [protocol.ATTR_GLIDEIN_GLEXEC_USE],
    "squid": [protocol.ATTR_GLIDEIN_PROXY_URL],
}

_FLAGS = {
    "token_file": "--token-file",
    "idle_timeout_s": "--idle-timeout",
    "lifetime_s": "--lifetime",
    "memory_mb": "--memory",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="updraft-pilot", description="Validate this worker node, then pull and run jobs."
    )
    parser.add_argument("--config", help="pilot.json with any of the parameters below")
    for spec in fields(PilotConfig):
        flag = _FLAGS.get(spec.name, "--" + spec.name.replace("_", "-"))
        parser.add_argument(
            flag,
            dest=spec.name,
            default=None,
            help=argparse.SUPPRESS if spec.name in ("attributes", "custom_checks") else None,
        )
    return parser


def load_config(argv: Optional[list[str]] = None, environ: Optional[Mapping[str, str]] = None) -> PilotConfig:
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    values: dict[str, Any] = {}
    known = {spec.name: str(spec.type) for spec in fields(PilotConfig)}
    if args.config:
        try:
            with open(args.config) as handle:
                loaded = json.load(handle)
        except (OSError, ValueError) as exc:
            raise PilotConfigError(f"--config {args.config}: {exc}") from None
        if not isinstance(loaded, dict):
            raise PilotConfigError(f"--config {args.config}: expected a JSON object")
        unknown = sorted(set(loaded) - set(known))
        if unknown:
            raise PilotConfigError(f"--config {args.config}: unknown parameter(s) {', '.join(unknown)}")
        values.update(loaded)
    for name in known:
        for variable in ["UPDRAFT_PILOT_" + name.upper(), *ENV_ALIASES.get(name, [])]:
            if environ.get(variable):
                values[name] = environ[variable]
                break
        given = getattr(args, name)
        if given is not None:
            values[name] = given
    converted = {name: convert_parameter(name, known[name], value) for name, value in values.items()}
    config = PilotConfig(**converted)
    base = os.path.dirname(os.path.abspath(args.config)) if args.config else os.getcwd()
    for check in config.custom_checks:  # relative paths: next to the config file (the glidein's work dir)
        if isinstance(check, dict) and check.get("path") and not os.path.isabs(str(check["path"])):
            check["path"] = os.path.join(base, str(check["path"]))
    config.glexec_policy = config.glexec_policy.upper()
    if config.glexec_policy not in ("NEVER", "OPTIONAL", "REQUIRED"):
        raise PilotConfigError(
            f"glexec_policy must be NEVER, OPTIONAL or REQUIRED, not {config.glexec_policy!r}"
        )
    if not config.pool:
        raise PilotConfigError("no pool: give --pool URL (or UPDRAFT_PILOT_POOL)")
    unknown_checks = sorted(set(config.checks) - set(DEFAULT_CHECKS))
    if unknown_checks:
        raise PilotConfigError(
            f"unknown check(s) {', '.join(unknown_checks)}; known: {', '.join(DEFAULT_CHECKS)}"
        )
    return config
