"""The VO's checks: its software area, and custom check executables shipped by factory or frontend.

A custom check is any executable.  Exit status 0 means the node is fine.  On standard
output it may print lines of the form::

    message: <one line saying what was found>
    type: <WN_Resource | Network | VO_Config | VO_Proxy | Config | Corruption>
    metric: <key>=<value>

and every such line is kept in the check's structured result.  A sha256 given with the
check is verified first; a mismatch is a Corruption failure and the script is not run.  It
runs in the pilot's work directory with GLIDEIN_Site, GLIDEIN_Entry_Name, GLIDEIN_Factory and
UPDRAFT_PILOT_WORK_DIR in its environment.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from typing import Any, Optional

from pilot.checks.base import CheckContext, metrics
from pilot.errors import CORRUPTION, FAILURE_TYPES, VO_CONFIG, CheckFailed
from updraft.core import protocol


def check_software(context: CheckContext) -> Optional[str]:
    config = context.config
    for path in config.software_paths:
        try:
            os.listdir(path)  # a CVMFS repository mounts on first access: listing it is the test
        except OSError as exc:
            raise CheckFailed(
                "software",
                2201,
                VO_CONFIG,
                f"software area {path} is not available: {exc.strerror}",
                {"path": path},
            ) from None
    if config.software_probe:
        try:
            probe = subprocess.run(
                ["/bin/sh", "-c", config.software_probe],
                capture_output=True,
                text=True,
                timeout=config.check_timeout_s,
                cwd=context.work_dir,
            )
        except subprocess.TimeoutExpired:
            raise CheckFailed(
                "software", 2202, VO_CONFIG, f"software probe timed out after {config.check_timeout_s} s"
            ) from None
        if probe.returncode != 0:
            tail = (probe.stderr or probe.stdout).strip().splitlines()[-1:] or [""]
            raise CheckFailed(
                "software",
                2202,
                VO_CONFIG,
                f"software probe {config.software_probe!r} failed (exit {probe.returncode}): {tail[0]}",
            )
    if not config.software_paths and not config.software_probe:
        return "no software area configured"
    return f"software area ok ({', '.join(config.software_paths) or 'probe only'})"


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_check_output(text: str) -> dict[str, Any]:
    found: dict[str, Any] = {"metrics": {}}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "message":
            found["message"] = value
        elif key == "type" and value in FAILURE_TYPES:
            found["type"] = value
        elif key == "metric" and "=" in value:
            name, number = value.split("=", 1)
            found["metrics"][name.strip()] = number.strip()
    return found


def check_environment(context: CheckContext) -> dict[str, str]:
    """What a custom check may want to know about where it runs (glideinWMS passes glidein_config)."""
    config = context.config
    env = dict(context.environ)
    env.update({
        protocol.ATTR_GLIDEIN_SITE: config.site, protocol.ATTR_GLIDEIN_ENTRY: config.entry, protocol.ATTR_GLIDEIN_FACTORY: config.factory,
        "UPDRAFT_PILOT_WORK_DIR": str(context.work_dir),
    })  # fmt: skip
    return env


def check_custom(context: CheckContext) -> Optional[str]:
    ran = []
    for index, spec in enumerate(context.config.custom_checks):
        path = str(spec.get("path", ""))
        name = str(spec.get("name") or os.path.basename(path) or f"custom{index}")
        if not path or not os.path.isfile(path):
            raise CheckFailed("custom", 2802, VO_CONFIG, f"custom check {name}: {path!r} is not a file")
        expected = spec.get("sha256")
        if expected and sha256_of(path) != expected:
            raise CheckFailed(
                "custom", 2901, CORRUPTION, f"custom check {name}: {path} does not match its sha256"
            )
        try:
            run = subprocess.run(
                [path],
                capture_output=True,
                text=True,
                timeout=context.config.check_timeout_s,
                cwd=context.work_dir,
                env=check_environment(context),
            )
        except subprocess.TimeoutExpired:
            raise CheckFailed(
                "custom",
                2803,
                VO_CONFIG,
                f"custom check {name} timed out after {context.config.check_timeout_s} s",
            ) from None
        except OSError as exc:
            raise CheckFailed(
                "custom", 2802, VO_CONFIG, f"custom check {name} cannot run: {exc.strerror}"
            ) from None
        said = parse_check_output(run.stdout)
        metrics(context, **{f"{name}.{k}": v for k, v in said["metrics"].items()})
        if run.returncode != 0:
            message = (
                said.get("message") or (run.stderr.strip().splitlines() or [f"exit {run.returncode}"])[-1]
            )
            raise CheckFailed(
                "custom",
                2801,
                said.get("type", str(spec.get("type") or VO_CONFIG)),
                f"{name}: {message}",
                dict(said["metrics"], exit=run.returncode),
            )
        ran.append(f"{name}: {said.get('message', 'ok')}")
    return "; ".join(ran) if ran else "no custom checks"
