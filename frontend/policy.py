"""The request math: how many idle glideins one group asks one entry for, and how many may run.

Pure numbers in, a decision with its reasons out; the frontend's cycle, ``explain`` and the
simulator all call ``decide`` (there is no second copy).  The steps are glideinWMS's
(``glideinFrontendElement.compute_glidein_min_idle`` and ``compute_glidein_max_run``), and
every count here is of *registered slots* in the pool, as there: glideins still queued at the
site are the factory's business (it subtracts them from the request), so they are never
subtracted twice.

1. idle = the matching idle jobs (raised to ``running_glideins_per_entry.min``);
   effective idle = idle - idle slots registered at the entry;
2. zero if any limit is reached: slots at the entry, idle slots at the entry, and the
   group's, the frontend's and the whole pool's slots and idle slots;
3. otherwise min(effective, the room under every *total* limit) / ramp_up_attenuation,
   plus a reserve of min((old idle - idle slots) / 3, reserve), capped by
   ``idle_glideins_per_entry.max``, halved for every curb reached, and at least one;
4. max running = (max(idle - idle slots, 0) + jobs running there) x relative_to_queue + 1,
   or the jobs running there when none is idle;
5. an entry or the frontend in downtime asks for 0 idle and 0 running.

Removal (``RemovalTracker``) is glideinWMS's ``choose_remove_excess_type`` plus the
configured type: automatic WAIT, IDLE and ALL after cycles without idle jobs, without slots
in use and without slots at all; the larger of the automatic and the configured type is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from frontend.config import FrontendLimits, GroupConfig, Removal

#: removal types in glideinWMS's order; DISABLE (-1) turns every removal off
REMOVAL_LEVELS = {"DISABLE": -1, "NO": 0, "WAIT": 1, "IDLE": 2, "ALL": 3}


@dataclass
class EntryCounts:
    """One (entry, group) this cycle.  Jobs are in pilot units: a 4-core job on 8-core pilots is 0.5."""

    idle_jobs: float = 0.0
    old_idle_jobs: float = 0.0
    running_jobs: float = 0.0
    glideins_queued: int = 0  # at the site (the factory's count, unsubmitted included): shown, not subtracted
    glideins_running: int = 0
    glideins_held: int = 0
    idle_slots: int = 0  # pilots registered in the pool with nothing to run
    busy_slots: int = 0
    other_slots: int = 0  # registered, neither idle nor busy (validating, retiring)
    failed_pilots: int = 0  # failed validation recently

    @property
    def slots(self) -> int:
        """Every slot of the group registered at the entry (glideinWMS's count_status Total)."""
        return self.idle_slots + self.busy_slots + self.other_slots

    def add(self, other: EntryCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Totals:
    """Registered slots over some set of entries: a group's, the frontend's, or the whole pool's."""

    slots: int = 0
    idle_slots: int = 0


@dataclass
class Decision:
    idle: int = 0
    max_run: int = 0
    remove: str = "NO"
    margin: int = 0
    remove_busy: bool = False  # the operator asked for busy glideins to go too
    effective_idle: float = 0.0
    down: str = ""  # why nothing is asked (entry or frontend downtime)
    limits: dict[str, str] = field(default_factory=dict)  # limit reached -> "count=N, limit=M"
    curbs: dict[str, str] = field(default_factory=dict)  # curb reached -> "count=N, curb=M"
    headroom: dict[str, int] = field(default_factory=dict)  # what is left under each limit
    removal: dict[str, int] = field(default_factory=dict)  # the removal counters behind ``remove``
    steps: list[str] = field(default_factory=list)  # how the number came about, for explain


@dataclass
class Levels:
    """The three sets of totals a request is checked against."""

    group: Totals = field(default_factory=Totals)
    frontend: Totals = field(default_factory=Totals)
    pool: Totals = field(default_factory=Totals)


def _limit_table(
    counts: EntryCounts, levels: Levels, group: GroupConfig, frontend: FrontendLimits
) -> list[tuple[str, int, int, int, bool]]:
    """(name, count, max, curb, in head-room) for every limit glideinWMS checks, in its order."""
    limits = group.limits
    return [
        ("GlideinsPerEntry", counts.slots, limits.running_glideins_per_entry.max, 0, True),
        ("IdleGlideinsPerEntry", counts.idle_slots, limits.idle_slots_per_entry.max, limits.idle_slots_per_entry.curb, False),
        ("GlideinsPerGroup", levels.group.slots, limits.running_glideins_total.max, limits.running_glideins_total.curb, True),
        ("IdleGlideinsPerGroup", levels.group.idle_slots, limits.idle_slots_total.max, limits.idle_slots_total.curb, True),
        ("GlideinsPerFrontend", levels.frontend.slots, frontend.running_glideins_total.max, frontend.running_glideins_total.curb, True),
        ("IdleGlideinsPerFrontend", levels.frontend.idle_slots, frontend.idle_slots_total.max, frontend.idle_slots_total.curb, True),
        ("GlideinsGlobal", levels.pool.slots, frontend.running_glideins_total_global.max, frontend.running_glideins_total_global.curb, True),
        ("IdleGlideinsGlobal", levels.pool.idle_slots, frontend.idle_slots_total_global.max, frontend.idle_slots_total_global.curb, True),
    ]  # fmt: skip


def _name(kind: str, base: str) -> str:
    """glideinWMS's names: TotalGlideinsPerEntry / CurbTotalGlideinsPerGroup, IdleGlideinsPerEntry..."""
    total = base if base.startswith("Idle") else "Total" + base
    return total if kind == "limit" else "Curb" + total


def decide(
    counts: EntryCounts,
    levels: Levels,
    group: GroupConfig,
    frontend: FrontendLimits,
    removal: tuple[str, int, bool] = ("NO", 0, False),
    down: str = "",
) -> Decision:
    """The request for one (entry, group); ``removal`` is what the RemovalTracker chose to send."""
    limits = group.limits
    running = limits.running_glideins_per_entry
    result = Decision(down=down)
    result.remove, result.margin, result.remove_busy = removal
    idle = counts.idle_jobs
    if idle < running.min:
        result.steps.append(f"idle jobs {idle:g} raised to running_glideins_per_entry.min {running.min}")
        idle = float(running.min)
    effective = max(0.0, idle - counts.idle_slots)
    effective_old = max(0.0, counts.old_idle_jobs - counts.idle_slots)
    result.effective_idle = round(effective, 3)
    result.steps.append(
        f"effective idle = {idle:g} idle jobs - {counts.idle_slots} idle slots = {effective:g}"
    )
    table = _limit_table(counts, levels, group, frontend)
    for base, count, limit, _curb, _in_room in table:
        result.headroom[_name("limit", base)] = limit - count
        if count >= limit:
            result.limits[_name("limit", base)] = f"count={count}, limit={limit}"
    if down:
        result.steps.append(f"{down}: nothing asked, nothing may run")
        return result
    if result.remove_busy:
        result.steps.append(f"removal {result.remove} of every glidein, busy ones too: nothing asked")
    elif result.limits:
        result.steps.append("limits reached: " + ", ".join(result.limits))
    elif effective > 0:
        room = min([effective] + [limit - count for _b, count, limit, _c, in_room in table if in_room])
        value: float = int(room / group.ramp_up_attenuation)
        reserve = min(effective_old // 3, limits.idle_glideins_per_entry.reserve)
        capped = min(value + reserve, limits.idle_glideins_per_entry.max)
        result.steps.append(
            f"min(effective idle, room under the totals) = {room:g}; / ramp_up_attenuation {group.ramp_up_attenuation:g} = {value:g}; "
            f"+ reserve {reserve:g}; capped at {limits.idle_glideins_per_entry.max} = {capped:g}"
        )  # fmt: skip
        value = capped
        curbs = [
            (_name("curb", base), count, curb)
            for base, count, _limit, curb, _r in table
            if base != "GlideinsPerEntry"
        ]
        curbs.append(
            ("CurbQueuedGlideinsPerEntry", counts.glideins_queued, limits.idle_glideins_per_entry.curb)
        )
        for name, count, curb in curbs:
            if curb > 0 and count >= curb:
                value /= 2
                result.curbs[name] = f"count={count}, curb={curb}"
        if result.curbs:
            result.steps.append(
                f"halved for {len(result.curbs)} curb(s): {', '.join(result.curbs)} = {value:g}"
            )
        result.idle = int(max(1.0, value))
    if result.remove_busy:
        result.max_run = 0
    elif idle + counts.running_jobs > 0:
        if idle > 0:
            result.max_run = int((effective + counts.running_jobs) * running.relative_to_queue + 1)
        else:
            result.max_run = int(counts.running_jobs)
    result.steps.append(
        f"max running = ({effective:g} + {counts.running_jobs:g} running) x {running.relative_to_queue:g} + 1 = {result.max_run}"
    )
    return result


@dataclass
class _History:
    idle0: int = 0  # cycles in a row without idle jobs
    glideempty: int = 0  # ... with no slot in use
    glidetotal0: int = 0  # ... with no slot registered at all


class RemovalTracker:
    """Cycles without demand per (entry, group), and the removal type they call for.

    A cycle with missing data changes nothing: no data is not "no demand".
    """

    def __init__(self) -> None:
        self.history: dict[tuple[str, str], _History] = {}

    def observe(self, key: tuple[str, str], counts: EntryCounts, complete: bool) -> _History:
        history = self.history.setdefault(key, _History())
        if not complete:
            return history
        history.idle0 = history.idle0 + 1 if counts.idle_jobs <= 0 else 0
        history.glideempty = history.glideempty + 1 if counts.idle_slots >= counts.slots else 0
        history.glidetotal0 = history.glidetotal0 + 1 if counts.slots == 0 else 0
        return history

    @staticmethod
    def automatic(history: _History, removal: Removal) -> str:
        wait = history.idle0 > removal.auto_wait_after
        if wait and history.glidetotal0 > removal.auto_all_after:
            return "ALL"
        if wait and history.glideempty > removal.auto_idle_after:
            return "IDLE"
        return "WAIT" if wait else "NO"

    @staticmethod
    def configured(history: _History, removal: Removal) -> str:
        if removal.policy in ("NO", "DISABLE"):
            return removal.policy
        if removal.requests_tracking or history.idle0 >= removal.wait_cycles:
            return removal.policy
        return "NO"

    def choose(self, key: tuple[str, str], removal: Removal) -> tuple[str, int, bool]:
        """(type, margin, busy too) to send: the larger of automatic and configured; DISABLE: none."""
        history = self.history.get(key, _History())
        configured = self.configured(history, removal)
        if configured == "DISABLE":
            return "NO", 0, False
        automatic = self.automatic(history, removal)
        if REMOVAL_LEVELS[automatic] > REMOVAL_LEVELS[configured]:
            return automatic, 0, False
        margin = removal.margin if removal.requests_tracking and removal.margin > 0 else 0
        return configured, margin, configured == "ALL" and removal.include_busy

    def counters(self, key: tuple[str, str]) -> dict[str, int]:
        history = self.history.get(key, _History())
        return {"idle0": history.idle0, "glideempty": history.glideempty, "glidetotal0": history.glidetotal0}
