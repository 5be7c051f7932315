"""What the pilot tells people and the factory: a readable log with stage timings, a final record.

The final record is one JSON object, printed as the last line of standard output after
the marker ``UPDRAFT_PILOT_RESULT`` and written to ``pilot-result.json`` in the work
directory, so a factory can parse it from the glidein's output file whatever the site.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional, TextIO

RESULT_MARKER = "UPDRAFT_PILOT_RESULT"


class PilotLog:
    def __init__(self, name: str, stream: TextIO = sys.stderr) -> None:
        self.name = name
        self.stream = stream
        self.file: Optional[TextIO] = None
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.stages: list[dict[str, Any]] = []

    def attach(self, path: Path) -> None:
        self.file = open(path, "a")  # noqa: SIM115 - open for the pilot's life

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} pilot {self.name}: {message}\n"
        with self.lock:
            self.stream.write(line)
            self.stream.flush()
            if self.file is not None:
                self.file.write(line)
                self.file.flush()

    def stage(self, name: str, seconds: float, **details: Any) -> None:
        with self.lock:
            self.stages.append({"stage": name, "seconds": round(seconds, 3), **details})

    def summary(self) -> str:
        lines = ["timing summary:"]
        for stage in self.stages:
            extra = " ".join(f"{k}={v}" for k, v in stage.items() if k not in ("stage", "seconds"))
            lines.append(f"  {stage['stage']:<28} {stage['seconds']:>9.3f} s  {extra}")
        lines.append(f"  {'total':<28} {time.monotonic() - self.started:>9.3f} s")
        return "\n".join(lines)


def write_result(record: dict[str, Any], path: Path, stream: TextIO = sys.stdout) -> None:
    text = json.dumps(record, sort_keys=True, default=str)
    try:
        path.write_text(text + "\n")
    except OSError:
        pass
    stream.write(f"{RESULT_MARKER} {text}\n")
    stream.flush()


def parse_result(output: str) -> Optional[dict[str, Any]]:
    """The final record from a glidein's standard output (the factory's side)."""
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_MARKER + " "):
            try:
                return json.loads(line[len(RESULT_MARKER) + 1 :])
            except ValueError:
                return None
    return None
