"""The frontend's own downtimes (glideinWMS's frontend downtime file): while one is on, every
group asks every entry for 0 idle and 0 running, as glideinWMS's frontend does.

A JSON list in the state directory, written atomically by ``updraft frontend downtime``
and read by the cycle, so an operator can stop provisioning without editing the config or
stopping the frontend (its ads would then expire and the factories would see "no data").
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from updraft.service import write_json_atomically

DOWNTIMES_FILE = "downtimes.json"


@dataclass
class Downtime:
    id: int
    start: float
    end: float  # 0: until ended
    comment: str = ""

    def active(self, now: float) -> bool:
        return self.start <= now and (not self.end or now < self.end)


def read_downtimes(path: Path) -> list[Downtime]:
    """The downtimes on file; an unreadable file is an error, never "no downtime"."""
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
        return [Downtime(**row) for row in rows]
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a downtime list ({exc})") from None


def active_downtime(path: Path, now: float) -> Downtime | None:
    try:
        downtimes = read_downtimes(path)
    except ValueError:
        # a damaged file stops provisioning rather than ignoring what the operator meant
        return Downtime(0, 0.0, 0.0, f"{path} cannot be read")
    return next((d for d in downtimes if d.active(now)), None)


def add_downtime(path: Path, start: float, end: float, comment: str) -> Downtime:
    downtimes = read_downtimes(path)
    made = Downtime(max((d.id for d in downtimes), default=0) + 1, start, end, comment)
    write_json_atomically(path, [asdict(d) for d in [*downtimes, made]])
    return made


def end_downtime(path: Path, downtime_id: int, now: float | None = None) -> Downtime:
    downtimes = read_downtimes(path)
    for downtime in downtimes:
        if downtime.id == downtime_id:
            downtime.end = now if now is not None else time.time()
            write_json_atomically(path, [asdict(d) for d in downtimes])
            return downtime
    raise KeyError(downtime_id)
