"""What to do for one (entry, client) this cycle: pure numbers in, a plan with reasons out.

Submit ``requested idle - idle at the site``, capped by the request's maximum, the entry's
and the frontend's limits, and the per-cycle pace; remove excess only as the request's
removal policy says, unsubmitted first, then idle, then (ALL) running.  No request means no
data, and no data never means "remove": the plan is then to do nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from factory.config import Limits


@dataclass(frozen=True)
class Request:
    entry: str
    client: str  # "<frontend>.<group>"
    frontend: str  # the authenticated frontend identity
    idle: int
    max_glideins: int
    remove: str = "NO"  # NO | WAIT | IDLE | ALL
    margin: int = 0
    idle_lifetime_s: int = 0
    params: dict[str, str] = field(default_factory=dict)
    token: str = ""


@dataclass
class Counts:
    unsubmitted: int = 0
    queued: int = 0
    running: int = 0
    held: int = 0
    removing: int = 0  # asked to go, not gone yet: still counted against the limits

    @property
    def idle(self) -> int:
        return self.unsubmitted + self.queued

    @property
    def total(self) -> int:
        return self.unsubmitted + self.queued + self.running + self.held + self.removing

    @classmethod
    def from_states(cls, states: dict[str, int]) -> Counts:
        return cls(**{f.name: states.get(f.name, 0) for f in fields(cls)})

    def add(self, other: Counts) -> Counts:
        return Counts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


@dataclass
class Plan:
    submit: int = 0
    remove_unsubmitted: int = 0
    remove_idle: int = 0
    remove_running: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def removals(self) -> int:
        return self.remove_unsubmitted + self.remove_idle + self.remove_running


def _caps(prefix: str, counts: Counts, limits: Limits) -> list[tuple[int, str]]:
    caps = []
    if limits.max_glideins > 0:
        caps.append((limits.max_glideins - counts.total, f"{prefix} max_glideins ({limits.max_glideins})"))
    if limits.max_idle > 0:
        caps.append((limits.max_idle - counts.idle, f"{prefix} max_idle ({limits.max_idle})"))
    if limits.max_held > 0 and counts.held >= limits.max_held:
        caps.append((0, f"{prefix} max_held ({limits.max_held}, {counts.held} held)"))
    return caps


def plan(
    request: Request | None,
    client: Counts,
    entry: Counts,
    entry_limits: Limits,
    client_limits: Limits,
    budget: int,
    downtime: str | None = None,
) -> Plan:
    result = Plan()
    if request is None:
        result.reasons.append("no request from this client (no data: nothing submitted, nothing removed)")
        return result
    wanted = max(0, request.idle - client.idle)
    caps: list[tuple[int, str]] = []
    if request.max_glideins > 0 or request.idle == 0:
        caps.append((request.max_glideins - client.total, f"request max ({request.max_glideins})"))
    caps += _caps("entry", entry, entry_limits)
    caps += _caps("frontend", client, client_limits)
    caps.append((budget, "submission pace of the cycle"))
    if downtime:
        caps.append((0, f"downtime: {downtime}"))
    submit = wanted
    for cap, why in caps:
        if cap < submit:
            result.reasons.append(why)
            submit = max(0, cap)
    result.submit = submit
    policy = request.remove.upper()
    excess_idle = client.idle - request.idle - request.margin
    if policy in ("WAIT", "IDLE", "ALL") and excess_idle > 0:
        result.remove_unsubmitted = min(excess_idle, client.unsubmitted)
        if policy in ("IDLE", "ALL"):
            result.remove_idle = min(excess_idle - result.remove_unsubmitted, client.queued)
    if policy == "ALL":
        kept = client.total - result.remove_unsubmitted - result.remove_idle
        excess_total = kept - max(request.max_glideins, 0) - request.margin
        if excess_total > 0:
            result.remove_running = min(excess_total, client.running + client.held)
    if result.removals:
        result.reasons.append(f"removing {result.removals} ({policy})")
    return result
