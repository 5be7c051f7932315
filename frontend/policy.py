"""The request math: how many idle glideins one group asks one entry for, and how many may run.

Pure numbers in, a decision with its reasons out; the frontend's cycle, ``explain`` and the
simulator all call ``decide`` (there is no second copy).  The steps are glideinWMS's:

1. effective idle = matching idle jobs - idle pilots at the entry (queued at the site, or
   registered and idle in the pool);
2. zero if any limit is reached (running glideins per entry and in total, idle pilots per
   entry and in total, and the same totals over every group);
3. otherwise capped by the headroom left under every limit, divided by the ramp-up
   attenuation, plus a reserve of at most a third of the long-idle jobs, capped by the
   per-entry maximum, halved for every curb exceeded, and at least one while there is demand;
4. max running = (matching idle - idle pilots + jobs running there) x relative_to_queue + 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from frontend.config import GlobalLimits, GroupConfig


@dataclass
class EntryCounts:
    """One (entry, group) this cycle.  Jobs are in pilot units: a 4-core job on 8-core pilots is 0.5."""

    idle_jobs: float = 0.0
    old_idle_jobs: float = 0.0
    running_jobs: float = 0.0
    glideins_queued: int = 0  # at the site (the factory's count, unsubmitted included)
    glideins_running: int = 0
    glideins_held: int = 0
    idle_slots: int = 0  # pilots registered in the pool with nothing to run
    busy_slots: int = 0
    failed_pilots: int = 0  # failed validation recently

    @property
    def idle_pilots(self) -> int:
        return self.glideins_queued + self.idle_slots

    @property
    def glideins(self) -> int:
        return self.glideins_queued + self.glideins_running + self.glideins_held

    def add(self, other: EntryCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Totals:
    glideins: int = 0
    idle_pilots: int = 0


@dataclass
class Decision:
    idle: int = 0
    max_run: int = 0
    remove: str = "NO"
    margin: int = 0
    effective_idle: float = 0.0
    limits: dict[str, str] = field(default_factory=dict)  # limit reached -> "count=N, limit=M"
    curbs: dict[str, str] = field(default_factory=dict)  # curb exceeded -> "count=N, curb=M"
    headroom: dict[str, int] = field(default_factory=dict)  # what is left under each limit
    steps: list[str] = field(default_factory=list)  # how the number came about, for explain


def decide(
    counts: EntryCounts,
    group_totals: Totals,
    global_totals: Totals,
    group: GroupConfig,
    global_limits: GlobalLimits,
    remove: bool = False,
) -> Decision:
    """The request for one (entry, group); ``remove`` says the hysteresis has run out of patience."""
    limits = group.limits
    result = Decision()
    effective = max(0.0, counts.idle_jobs - counts.idle_pilots)
    result.effective_idle = round(effective, 3)
    result.steps.append(
        f"effective idle = {counts.idle_jobs:g} idle jobs - {counts.idle_pilots} idle pilots = {effective:g}"
    )
    checks = [
        ("TotalGlideinsPerEntry", counts.glideins, limits.running_glideins_per_entry.max),
        ("IdleGlideinsPerEntry", counts.idle_pilots, limits.idle_slots_per_entry.max),
        ("TotalGlideinsPerGroup", group_totals.glideins, limits.running_glideins_total.max),
        ("IdleGlideinsPerGroup", group_totals.idle_pilots, limits.idle_slots_total.max),
        ("TotalGlideinsGlobal", global_totals.glideins, global_limits.running_glideins_total.max),
        ("IdleGlideinsGlobal", global_totals.idle_pilots, global_limits.idle_slots_total.max),
    ]
    for name, count, limit in checks:
        result.headroom[name] = limit - count
        if count >= limit:
            result.limits[name] = f"count={count}, limit={limit}"
    if remove and group.removal.policy != "NO":
        result.remove, result.margin = group.removal.policy, group.removal.margin
        result.steps.append(
            f"no demand for {group.removal.wait_cycles} cycle(s): asking to remove ({group.removal.policy})"
        )
    if remove and group.removal.policy != "NO":
        wanted = 0
    elif result.limits:
        wanted = 0
        result.steps.append("limits reached: " + ", ".join(result.limits))
    elif effective > 0:
        headroom = min(effective, *(max(0, room) for room in result.headroom.values()))
        attenuated = headroom / group.ramp_up_attenuation
        reserve = min(counts.old_idle_jobs // 3, limits.idle_glideins_per_entry.reserve)
        value = min(attenuated + reserve, limits.idle_glideins_per_entry.max)
        result.steps.append(
            f"min(effective idle, headroom) = {headroom:g}; / ramp_up_attenuation {group.ramp_up_attenuation:g} = {attenuated:g}; "
            f"+ reserve {reserve:g}; capped at {limits.idle_glideins_per_entry.max} = {value:g}"
        )  # fmt: skip
        curbs = [
            ("CurbIdleGlideinsPerEntry", counts.idle_pilots, limits.idle_slots_per_entry.curb),
            ("CurbQueuedGlideinsPerEntry", counts.glideins_queued, limits.idle_glideins_per_entry.curb),
            ("CurbTotalGlideinsPerGroup", group_totals.glideins, limits.running_glideins_total.curb),
            ("CurbIdleGlideinsPerGroup", group_totals.idle_pilots, limits.idle_slots_total.curb),
            ("CurbTotalGlideinsGlobal", global_totals.glideins, global_limits.running_glideins_total.curb),
            ("CurbIdleGlideinsGlobal", global_totals.idle_pilots, global_limits.idle_slots_total.curb),
        ]
        for name, count, curb in curbs:
            if curb > 0 and count >= curb:
                value /= 2
                result.curbs[name] = f"count={count}, curb={curb}"
        if result.curbs:
            result.steps.append(
                f"halved for {len(result.curbs)} curb(s): {', '.join(result.curbs)} = {value:g}"
            )
        wanted = max(1, int(value))
    else:
        wanted = 0
    result.idle = int(wanted)
    running = limits.running_glideins_per_entry
    if remove and group.removal.policy == "ALL":
        max_run = 0
    elif counts.idle_jobs + counts.running_jobs > 0:
        if counts.idle_jobs > 0:
            max_run = int((effective + counts.running_jobs) * running.relative_to_queue + 1)
        else:
            max_run = round(counts.running_jobs)
    else:
        max_run = 0
    result.max_run = min(running.max, max(running.min, max_run))
    result.steps.append(
        f"max running = ({effective:g} + {counts.running_jobs:g} running) x {running.relative_to_queue:g} + 1, "
        f"within [{running.min}, {running.max}] = {result.max_run}"
    )
    return result


class Hysteresis:
    """Cycles without demand per (entry, group); a cycle with missing data changes nothing."""

    def __init__(self) -> None:
        self.quiet: dict[tuple[str, str], int] = {}

    def observe(self, key: tuple[str, str], demand: bool, complete: bool) -> int:
        if not complete:
            return self.quiet.get(key, 0)
        self.quiet[key] = 0 if demand else self.quiet.get(key, 0) + 1
        return self.quiet[key]

    def ready(self, key: tuple[str, str], wait_cycles: int) -> bool:
        return self.quiet.get(key, 0) >= max(1, wait_cycles)
