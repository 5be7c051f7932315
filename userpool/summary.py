"""Job counts grouped by attribute texts: what a frontend needs from a million-job queue.

The grouping key is the text of each attribute, read once per cluster when no proc
overrides it; only the status (and, for idle jobs, the time they became idle) is read
per job.  A million idle jobs in a few thousand clusters cost one pass over the jobs.
"""

from __future__ import annotations

import time
from typing import Any

from updraft.core import classads
from updraft.core.errors import BadRequest
from updraft.core.payloads import SummaryRequest, SummaryResult, SummaryRow
from updraft.core.protocol import JobStatus
from userpool.queue import PER_JOB, JobQueue
from userpool.selection import Selector

IDLE, RUNNING, HELD = int(JobStatus.IDLE), int(JobStatus.RUNNING), int(JobStatus.HELD)


def summarize(queue: JobQueue, request: SummaryRequest, now: float | None = None) -> SummaryResult:
    now = time.time() if now is None else now
    selector = Selector(request.constraint)
    for name in request.group_by:
        if not classads.is_valid_attribute_name(name):
            raise BadRequest(f"group_by: {name!r} is not an attribute name")
    names = [classads.canonical(n) for n in request.group_by]
    old_before = now - request.old_idle_s
    counts: dict[tuple[Any, ...], list[int]] = {}
    total = 0
    for cluster in queue.clusters.values():
        varying = [i for i, n in enumerate(names) if n in PER_JOB or n in cluster.varying]
        shared = tuple(
            cluster.ad.get(n) if n not in ("ClusterId",) else str(cluster.cluster_id) for n in names
        )
        entered_varies = "EnteredCurrentStatus" in cluster.varying
        cluster_entered = _number(cluster.ad.get("EnteredCurrentStatus"))
        for job in selector.filter(cluster):
            total += 1
            if varying:
                parts = list(shared)
                for index in varying:
                    parts[index] = job.get(names[index])
                key = tuple(parts)
            else:
                key = shared
            row = counts.get(key)
            if row is None:
                row = counts[key] = [0, 0, 0, 0, 0]
            status = job.status
            if status == IDLE:
                row[0] += 1
                entered = _number(job.get("EnteredCurrentStatus")) if entered_varies else cluster_entered
                if entered is not None and entered < old_before:
                    row[1] += 1
            elif status == RUNNING:
                row[2] += 1
            elif status == HELD:
                row[3] += 1
            else:
                row[4] += 1
    rows = [SummaryRow(list(key), *values) for key, values in counts.items()]
    return SummaryResult(rows, total, now)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None
