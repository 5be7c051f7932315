"""The pool's /metrics for Prometheus: the queue, the collector, matching and the pilots waiting."""

from __future__ import annotations

import time
from typing import Any

from updraft.core.metrics import Exposition


def pool_metrics(pool: Any) -> str:
    """The exposition text of one pool (``pool``: a userpool.pool.Pool)."""
    totals = pool.schedd.queue.totals()
    out = Exposition()
    out.gauge(
        "updraft_pool_jobs",
        "Jobs in the queue by JobStatus.",
        [({"status": name}, count) for name, count in totals.items() if name != "total"],
    )
    out.gauge(
        "updraft_pool_ads",
        "Ads in the collector by type.",
        [({"type": kind}, count) for kind, count in pool.collector.counts().items()],
    )
    out.counter("updraft_pool_matches_total", "Jobs matched to pilots.", pool.stats.matches)
    out.counter("updraft_pool_polls_total", "Pilot polls answered.", pool.stats.polls)
    out.counter("updraft_pool_submits_total", "Submissions committed.", pool.stats.submits)
    out.counter("updraft_pool_commits_total", "Queue commits.", pool.stats.commits)
    out.gauge("updraft_pool_claims", "Active claims.", len(pool.schedd.claims.active))
    out.gauge(
        "updraft_pool_autoclusters",
        "Autoclusters with idle jobs.",
        sum(1 for ac in pool.schedd.index.ordered if ac.idle > 0),
    )
    out.gauge("updraft_pool_waiting_pilots", "Pilots long-polling now.", len(pool.waiting))
    out.gauge(
        "updraft_pool_uptime_seconds", "Seconds since start.", round(time.time() - pool.stats.started, 1)
    )
    outcomes = pool.monitor.outcomes
    out.counter(
        "updraft_pool_jobs_completed_total",
        "Jobs that ended (failed ones too).",
        outcomes.totals["completed"],
    )
    out.counter(
        "updraft_pool_jobs_failed_total", "Jobs that ended with an exit code other than 0, or by a signal.",
        outcomes.totals["failed"],
    )  # fmt: skip
    out.counter(
        "updraft_pool_jobs_removed_total", "Jobs removed (condor_rm, policy).", outcomes.totals["removed"]
    )
    out.counter("updraft_pool_jobs_held_total", "Jobs put on hold.", outcomes.totals["held"])
    out.histogram(
        "updraft_pool_job_queue_wait_seconds",
        "How long each started job waited in the queue.",
        outcomes.queue_wait,
    )
    out.histogram(
        "updraft_pool_pilot_first_job_seconds", "From a pilot's start to its first job.", outcomes.first_job
    )
    out.counter(
        "updraft_pool_validation_failures_total", "Pilots that failed validation, by failure type.",
        [({"type": kind}, n) for kind, n in sorted(outcomes.validation.items())],
    )  # fmt: skip
    return out.render()
