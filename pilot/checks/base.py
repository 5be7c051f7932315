"""Validation checks: an ordered list of functions, each timed, each with a structured result."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from pilot.config import PilotConfig
from pilot.errors import CONFIG, CheckFailed


@dataclass
class CheckResult:
    name: str
    ok: bool
    seconds: float
    message: str = ""
    failure_type: str = ""
    code: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckContext:
    """What checks read, and ``facts`` they leave for the pilot (resources, squid, launcher...)."""

    config: PilotConfig
    work_dir: Path
    environ: dict[str, str]
    lifetime_end: float  # GLIDEIN_ToDie
    token: str = ""
    facts: dict[str, Any] = field(default_factory=dict)


Check = Callable[[CheckContext], Optional[str]]  # returns an informative message; raises CheckFailed to fail


def run_checks(
    context: CheckContext, registry: dict[str, Check], log: Callable[[str], None]
) -> list[CheckResult]:
    """Run the configured checks in order; stop at the first failure."""
    results: list[CheckResult] = []
    for name in context.config.checks:
        check = registry[name]
        started = time.monotonic()
        try:
            message = check(context) or "ok"
            result = CheckResult(
                name,
                True,
                round(time.monotonic() - started, 3),
                message,
                metrics=context.facts.pop("_metrics", {}),
            )
        except CheckFailed as failure:
            result = CheckResult(
                name,
                False,
                round(time.monotonic() - started, 3),
                failure.message,
                failure.failure_type,
                failure.code,
                failure.metrics,
            )
        except Exception as exc:  # a bug in a check must not look like a healthy node
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            result = CheckResult(
                name, False, round(time.monotonic() - started, 3), f"check crashed: {detail}", CONFIG, 2999
            )
        results.append(result)
        log(f"check {name}: {'ok' if result.ok else 'FAILED'} in {result.seconds:.2f} s: {result.message}")
        if not result.ok:
            break
    return results


def metrics(context: CheckContext, **values: Any) -> None:
    """Attach metrics to the result of the check that is running."""
    context.facts.setdefault("_metrics", {}).update(values)
