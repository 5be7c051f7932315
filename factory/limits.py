"""What to do for one (entry, client) this cycle: pure numbers in, a plan with reasons out.

glideinWMS's ``keepIdleGlideins`` and ``clean_glidein_queue`` (factory/glideFactoryLib.py):

- submit ``requested idle - idle here`` (idle = unsubmitted + queued at the site), so that
  glideins still queued are subtracted once, here, and never by the frontend too;
- capped so that idle + running stays within the request's maximum (held ones do not
  count), and by the entry's and the frontend's limits (the frontend's over all its groups,
  as glideinWMS keys them by frontend); any entry limit reached, or the frontend's held
  limit, stops submission for it; at most ``pacing.max_per_cycle`` per request;
- remove excess only as the request says: WAIT the unsubmitted, IDLE also the queued, ALL
  also running and held ones beyond the maximum; one kind per cycle, unsubmitted first, at
  most ``pacing.remove_max_per_cycle``.  Which running glideins go is decided with the pool
  (``submission.remove_excess``): idle pilots first, never one running a job unless the
  request says so.

No request means no data, and no data never means "remove": the plan is then to do nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from factory.config import Limits, Pacing


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
    remove_busy: bool = False  # ALL may take glideins that run jobs: the operator asked for it
    user_pool: str = ""  # the pool these pilots join (empty: the factory's own)
    user_pool_ca: str = ""  # the CA (PEM) that pool's certificate is signed with (empty: the system's)


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
    def active(self) -> int:
        """What ``max_glideins`` counts: idle and running (and leaving), not held."""
        return self.unsubmitted + self.queued + self.running + self.removing

    @property
    def total(self) -> int:
        return self.active + self.held

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
    remove_held: int = 0
    remove_busy: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def removals(self) -> int:
        return self.remove_unsubmitted + self.remove_idle + self.remove_running + self.remove_held


def _limit_caps(prefix: str, counts: Counts, limits: Limits) -> list[tuple[int, str]]:
    """Room left under each limit; a limit already reached stops everything (glideinsWithinLimits)."""
    caps = []
    if limits.max_glideins > 0:
        room = limits.max_glideins - counts.active
        caps.append(
            (room, f"{prefix} max_glideins ({limits.max_glideins}{', reached' if room <= 0 else ''})")
        )
    if limits.max_idle > 0:
        room = limits.max_idle - counts.idle
        caps.append((room, f"{prefix} max_idle ({limits.max_idle}{', reached' if room <= 0 else ''})"))
    if limits.max_held > 0 and counts.held >= limits.max_held:
        caps.append((0, f"{prefix} max_held ({limits.max_held}, {counts.held} held)"))
    return caps


def plan(
    request: Request | None,
    client: Counts,
    frontend: Counts,
    entry: Counts,
    entry_limits: Limits,
    frontend_limits: Limits,
    pacing: Pacing,
    downtime: str | None = None,
) -> Plan:
    """``client``: this request's glideins; ``frontend``: all of its frontend's at the entry; ``entry``: everyone's."""
    result = Plan()
    if request is None:
        result.reasons.append("no request from this client (no data: nothing submitted, nothing removed)")
        return result
    wanted = max(0, request.idle - client.idle)
    caps = [
        (request.max_glideins - client.idle - client.running - client.removing, f"request max ({request.max_glideins})"),
        *_limit_caps("entry", entry, entry_limits),
        *_limit_caps("frontend", frontend, frontend_limits),
        (pacing.max_per_cycle, f"submission pace ({pacing.max_per_cycle} per request per cycle)"),
    ]  # fmt: skip
    if downtime:
        caps.append((0, f"downtime: {downtime}"))
    submit = wanted
    for cap, why in caps:
        if cap < submit:
            result.reasons.append(why)
            submit = max(0, cap)
    result.submit = submit
    _plan_removal(request, client, pacing, result)
    return result


def _plan_removal(request: Request, client: Counts, pacing: Pacing, result: Plan) -> None:
    policy = request.remove.upper()
    wait, idle, running = policy in ("WAIT", "IDLE", "ALL"), policy in ("IDLE", "ALL"), policy == "ALL"
    margin = request.margin
    excess_idle = client.idle - request.idle - margin
    over_max = client.running + client.idle > request.max_glideins + margin
    if (wait and excess_idle > 0) or (running and over_max):
        count = excess_idle
        if running and over_max and client.running + request.idle > request.max_glideins:
            count = client.running + client.idle - request.max_glideins - margin  # past max: min idle is moot
        count = min(max(0, count), pacing.remove_max_per_cycle)
        if wait and client.unsubmitted > 0:
            result.remove_unsubmitted = min(count, client.unsubmitted)  # and no more this cycle
        elif idle and client.queued > 0:
            result.remove_idle = min(count, client.queued)
        elif running:
            result.remove_running = min(count, client.running)
            result.remove_held = min(client.held, pacing.remove_max_per_cycle - result.remove_running)
            result.remove_busy = request.remove_busy
    elif running and request.max_glideins == 0 and client.held > 0:
        result.remove_held = min(client.held, pacing.remove_max_per_cycle)
    if result.removals:
        result.reasons.append(
            f"removing {result.removals} ({policy}, at most {pacing.remove_max_per_cycle} per cycle)"
        )
