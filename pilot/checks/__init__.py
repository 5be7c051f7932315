"""The built-in validation checks, by the names pilot configs use, in their default order."""

from __future__ import annotations

from pilot.checks.base import Check, CheckContext, CheckResult, run_checks
from pilot.checks.credentials import check_credential
from pilot.checks.isolation import check_glexec
from pilot.checks.network import check_pool, check_squid
from pilot.checks.node import (
    check_blacklist,
    check_disk,
    check_drain,
    check_python,
    check_resources,
    check_tmp,
)
from pilot.checks.vo import check_custom, check_software

REGISTRY: dict[str, Check] = {
    "python": check_python,
    "blacklist": check_blacklist,
    "drain": check_drain,
    "disk": check_disk,
    "tmp": check_tmp,
    "resources": check_resources,
    "software": check_software,
    "pool": check_pool,
    "squid": check_squid,
    "credential": check_credential,
    "glexec": check_glexec,
    "custom": check_custom,
}

__all__ = ["REGISTRY", "CheckContext", "CheckResult", "run_checks"]
