"""The factory's /metrics for Prometheus: glideins by entry, client and state; what happened; the entries' health."""

from __future__ import annotations

from typing import Any

from factory.tracking import PILOT_SECONDS, VALIDATION_FAILED
from updraft.core.metrics import Exposition


def factory_metrics(factory: Any) -> str:
    """The exposition text of one factory (``factory``: a factory.loop.Factory)."""
    out = Exposition()
    samples = []
    for (entry, client), states in factory.journal.counts().items():
        for state, n in states.items():
            samples.append(({"entry": entry, "client": client, "state": state}, n))
    out.gauge("updraft_factory_glideins", "Live glideins by entry, client and state.", samples)
    with factory.lock:
        totals = sorted(factory.totals.items())
        health = dict(factory.health)
    out.counter(
        "updraft_factory_events_total",
        "Things that happened to glideins since start (submitted, ended, removed, released, lost...).",
        [({"entry": entry, "what": what}, n) for (entry, what), n in totals if ":" not in what],
    )
    out.counter(
        "updraft_factory_pilot_core_seconds_total",
        "Ended pilots' core-seconds since start, from their final records: all, used by jobs, and wasted"
        " (idle, or failing validation), as glideinWMS's factory monitoring counts them.",
        [({"entry": entry, "kind": what[len(PILOT_SECONDS):]}, round(n, 1)) for (entry, what), n in totals
         if what.startswith(PILOT_SECONDS)],
    )  # fmt: skip
    out.counter(
        "updraft_factory_validation_failures_total",
        "Ended pilots that failed validation since start, by entry and failure type.",
        [({"entry": entry, "type": what[len(VALIDATION_FAILED):]}, n) for (entry, what), n in totals
         if what.startswith(VALIDATION_FAILED)],
    )  # fmt: skip
    out.gauge(
        "updraft_factory_entry_up",
        "1 if the entry's site answered in the last step.",
        [({"entry": name}, 0 if h.last_error else 1) for name, h in health.items()],
    )
    out.gauge(
        "updraft_factory_validation_failing",
        "Pilots failing validation now (their slots still held at the site), by entry and failure type.",
        [
            ({"entry": name, "type": kind}, n)
            for name, h in health.items()
            for kind, n in sorted((h.failing.get("by_type") or {}).items())
        ],
    )
    out.gauge("updraft_factory_requests", "Requests accepted in the last cycle.", len(factory.requests or {}))
    out.gauge(
        "updraft_factory_requests_rejected", "Requests refused in the last cycle.", len(factory.rejected)
    )
    out.gauge("updraft_factory_cycle_seconds", "Duration of the last cycle.", round(factory.last_cycle_s, 3))
    out.counter("updraft_factory_cycles_total", "Cycles since start.", factory.cycles)
    return out.render()
