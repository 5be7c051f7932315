"""What the pilot tells people: a readable log with stage timings.

The final record the factory reads is updraft.core.pilotrecord's.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional, TextIO


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
