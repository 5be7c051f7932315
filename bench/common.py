"""What the benchmarks share: results, timing, a pool to measure, the htcondor 24 anchor venv."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ANCHOR_VERSION = "24.12.24"


@dataclass
class Result:
    name: str
    value: float
    unit: str
    target: str = ""  # e.g. "<= 5 s"
    ok: bool | None = None
    anchor: float | None = None  # the same work done by the reference, in the same run
    anchor_label: str = ""
    notes: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def check(value: float, target: str) -> bool | None:
    if not target:
        return None
    op, number = target.split()[0], float(target.split()[1])
    return value <= number if op == "<=" else value >= number


def result(name: str, value: float, unit: str, target: str = "", **kwargs: object) -> Result:
    return Result(name, round(value, 4), unit, target, check(value, target), **kwargs)


@contextmanager
def timer() -> Iterator[list[float]]:
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def anchor_python() -> Path:
    """htcondor 24 in a throwaway venv (shared with the conformance test)."""
    venv = ROOT / ".cache" / f"htcondor-{ANCHOR_VERSION}"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"htcondor=={ANCHOR_VERSION}"], check=True)
    return python


def run_cli(
    argv: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], env=env, cwd=cwd, capture_output=True, text=True, check=True
    )


def machine() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def say(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)
