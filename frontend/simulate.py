"""The policy simulator: this frontend's request code against simulated sites, on a virtual clock.

Each frontend cycle builds an ``Observation`` from the simulated queue, factories and pilots
and hands it to ``Planner.plan`` — the live frontend's matching, request math and removal
hysteresis, not a copy — and overflow is decided by ``plan_overflow``, as live.  Everything
else is a model: a factory that keeps the requested glideins queued within the max running,
sites with a number of cores, a queue wait and a validation failure rate, pilots that pull
the oldest job they can run, retire before their wall-clock limit and leave when idle.

Jobs are never objects: a kind of job (one batch, one DESIRED_Sites, one core count) holds
a queue of (arrival time, count) buckets, so a million jobs cost a million runtime draws
and a few heap operations each.  Events live in one heap on the virtual clock.
"""

from __future__ import annotations

import heapq
import math
import random
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable
from typing import Any

from frontend.config import FrontendConfig, GroupConfig
from frontend.matching import Kind, Matcher, entries_from_ads
from frontend.overflow import OverflowReport, plan_overflow
from frontend.planner import GroupData, Observation, Planner
from frontend.simulate_inputs import Batch, SiteModel, WorkloadFile
from frontend.simulate_model import JobKind, Pilot, SiteState
from frontend.simulate_report import Report, Sample
from updraft.core import classads, protocol
from updraft.core.errors import UpdraftError

# event kinds, in the order they are handled at one instant
ARRIVE, JOB_END, QUEUE_DONE, PILOT_UP, IDLE_CHECK, PILOT_END, CYCLE = range(7)


class Simulation:
    def __init__(
        self, config: FrontendConfig, sites: list[SiteModel], workload: WorkloadFile, hours: float,
        cycle_s: float, seed: int, factory: str = "simfactory",
    ) -> None:  # fmt: skip
        self.config = config
        self.groups = [g for g in config.groups if g.enabled]
        self.horizon = hours * 3600.0
        self.cycle_s = cycle_s
        self.random = random.Random(seed)
        self.now = 0.0
        self.heap: list[tuple[float, int, int, Any]] = []
        self.sequence = 0
        self.planner = Planner()
        self.sites = [SiteState(i, m) for i, m in enumerate(sites)]
        self.site_by_name = {s.model.name: s for s in self.sites}
        ads = [self._factory_ad(s, factory) for s in self.sites]
        self.entries = entries_from_ads(ads, config)
        by_name = {e.name: e for e in self.entries}
        for site in self.sites:
            site.entry = by_name.get(f"{site.model.name}_CE@{factory}")
        self.entry_index = {e.name: i for i, e in enumerate(self.entries)}
        self.site_of_entry = [self.site_by_name[e.site] for e in self.entries]
        self.kinds: list[JobKind] = []
        self.kind_index: dict[tuple[Any, ...], JobKind] = {}
        self.runnable: dict[tuple[str, int], list[JobKind]] = {}  # (group, entry) -> kinds that may run there
        self.matchers: dict[str, Matcher] = {}
        self.waits = array("d")
        self.report = Report(
            hours, cycle_s, len(sites), sum(s.cores for s in sites), sum(b.count for b in workload.batches)
        )
        self.requests: dict[tuple[str, int], Any] = {}
        self.unprovisioned = 0
        self._schedule_workload(workload)

    # -- setup ---------------------------------------------------------------------------------
    @staticmethod
    def _factory_ad(site: SiteState, factory: str) -> dict[str, str]:
        model = site.model
        texts = {
            protocol.ATTR_NAME: protocol.literal(f"{model.name}_CE@{factory}"), protocol.ATTR_ENTRY_NAME: protocol.literal(f"{model.name}_CE"),
            protocol.ATTR_FACTORY_NAME: protocol.literal(factory), protocol.ATTR_GLIDEIN_SITE: protocol.literal(model.name),
            protocol.ATTR_GLIDEIN_CPUS: str(model.pilot_cores), protocol.ATTR_GLIDEIN_MAX_WALLTIME: str(int(model.walltime_s)),
            protocol.ATTR_ALLOWED_FRONTENDS: protocol.literal("*"),
        }  # fmt: skip
        for name, value in model.attributes.items():
            texts[name] = (
                protocol.literal(value) if isinstance(value, (str, bool, int, float)) else str(value)
            )
        return texts

    def _schedule_workload(self, workload: WorkloadFile) -> None:
        names = [s.model.name for s in self.sites]
        for batch in workload.batches:
            spec = batch.desired_sites
            if isinstance(spec, dict):
                k, n = int(spec.get("random", 1)), int(spec.get("choices", 10))
                choices = [",".join(self.random.sample(names, min(k, len(names)))) for _ in range(max(1, n))]
            elif isinstance(spec, list):
                unknown = [s for s in spec if s not in self.site_by_name]
                if unknown:
                    raise UpdraftError(
                        f"batch {batch.name}: unknown sites {unknown} (known: {', '.join(names[:10])}...)"
                    )
                choices = [",".join(spec)]
            else:
                choices = [""]
            kinds = [self._kind(batch, c or None, []) for c in choices]
            step = workload.arrival_step_s
            start, over = float(batch.arrival.start), float(batch.arrival.over)
            steps = max(1, int(over // step)) if over else 1
            per_kind = [
                batch.count // len(kinds) + (1 if i < batch.count % len(kinds) else 0)
                for i in range(len(kinds))
            ]
            for kind, total in zip(kinds, per_kind, strict=True):
                for s in range(steps):
                    count = total // steps + (1 if s < total % steps else 0)
                    if count:
                        self._push(start + s * step, ARRIVE, (kind, count))

    def _kind(self, batch: Batch, desired: str | None, homes: list[str]) -> JobKind:
        key = (batch.name, desired, tuple(homes))
        kind = self.kind_index.get(key)
        if kind is not None:
            return kind
        texts = {"Owner": protocol.literal(batch.owner), "RequestCpus": str(batch.cores), "JobStatus": "1"}
        for name, value in batch.attributes.items():
            texts[name] = (
                protocol.literal(value) if isinstance(value, (str, bool, int, float)) else str(value)
            )
        if desired is not None:
            texts[protocol.ATTR_DESIRED_SITES] = protocol.literal(desired)
        if not batch.allow_overflow:
            texts[protocol.ATTR_ALLOW_OVERFLOW] = "false"
        if homes:
            texts[protocol.ATTR_OVERFLOWED] = "true"
        ad = classads.build(texts)
        group = next(
            (g for g in self.groups if classads.is_true(classads.evaluate(g.job_constraint, ad))), None
        )
        if group is None:
            raise UpdraftError(f"batch {batch.name}: no group of the frontend takes its jobs ({texts})")
        kind = JobKind(len(self.kinds), batch, group, texts, desired, homes)
        self.kinds.append(kind)
        self.kind_index[key] = kind
        matcher = self._matcher(group)
        kind.runnable = set(matcher.matches(kind.key, kind.cpus))
        for index in kind.runnable:
            self.runnable.setdefault((group.name, self._global_entry(matcher, index)), []).append(kind)
        return kind

    def _matcher(self, group: GroupConfig) -> Matcher:
        matcher = self.matchers.get(group.name)
        if matcher is None:
            matcher = self.matchers[group.name] = self.planner.matcher(group, self.entries)
        return matcher

    def _global_entry(self, matcher: Matcher, index: int) -> int:
        return self.entry_index[matcher.entries[index].name]

    # -- events --------------------------------------------------------------------------------
    def _push(self, at: float, kind: int, data: Any) -> None:
        self.sequence += 1
        heapq.heappush(self.heap, (at, kind, self.sequence, data))

    def run(self, progress: Callable[[float], None] | None = None) -> Report:
        began = time.monotonic()
        self._push(0.0, CYCLE, None)
        next_progress = 3600.0
        handlers = {
            ARRIVE: self._arrive, JOB_END: self._job_end, QUEUE_DONE: self._queue_done, PILOT_UP: self._pilot_up,
            IDLE_CHECK: self._idle_check, PILOT_END: self._pilot_end, CYCLE: self._cycle,
        }  # fmt: skip
        heap = self.heap
        events = 0
        while heap:
            at, kind, _seq, data = heapq.heappop(heap)
            if at > self.horizon:
                break
            self.now = at
            events += 1
            handlers[kind](data)
            if progress is not None and at >= next_progress:
                progress(at)
                next_progress += 3600.0
        self.now = self.horizon
        self.report.events = events
        self._finish()
        self.report.wall_s = time.monotonic() - began
        return self.report

    def _arrive(self, data: tuple[JobKind, int]) -> None:
        kind, count = data
        kind.push(self.now, count)
        self._wake(kind)

    def _wake(self, kind: JobKind) -> None:
        """Free pilots where the kind may run pull from it (and from anything older)."""
        group = kind.group.name
        matcher = self._matcher(kind.group)
        for index in kind.runnable:
            site = self.site_of_entry[self._global_entry(matcher, index)]
            free = site.free_pilots.get(group)
            if free:
                for pilot in list(free):
                    self._match(pilot)
                    if not kind.idle:
                        return

    def _match(self, pilot: Pilot) -> None:
        site = pilot.site
        entry = self.entry_index[site.entry.name] if site.entry else -1
        kinds = self.runnable.get((pilot.group, entry), ())
        now = self.now
        while pilot.free and not pilot.retiring:
            best: JobKind | None = None
            best_head = math.inf
            for kind in kinds:
                if kind.idle and kind.cpus <= pilot.free:
                    head = kind.buckets[0][0]
                    if head < best_head:
                        best, best_head = kind, head
            if best is None:
                break
            batch = best.batch
            runtime = self._runtime(batch)
            if now + runtime > pilot.end:
                pilot.retiring = True  # GLIDEIN_ToRetire: no job that would outlive the pilot
                break
            arrival = best.pop()
            self.waits.append(now - arrival)
            best.running += 1
            pilot.free -= best.cpus
            pilot.jobs += 1
            pilot.busy_core_s += best.cpus * runtime
            site.running_units[pilot.group] += best.cpus / pilot.cores
            self._push(now + runtime, JOB_END, (pilot, best))
        free = site.free_pilots.setdefault(pilot.group, set())
        if pilot.free and not pilot.retiring and not pilot.done:
            free.add(pilot)
        else:
            free.discard(pilot)
        if not pilot.jobs:
            if pilot.retiring:
                self._end_pilot(pilot)
            else:
                pilot.version += 1
                self._push(now + site.model.idle_timeout_s, IDLE_CHECK, (pilot, pilot.version))

    def _runtime(self, batch: Batch) -> float:
        mean = float(batch.runtime_s)
        if batch.runtime == "fixed":
            return mean
        if batch.runtime == "uniform":
            return self.random.uniform(mean / 2, 1.5 * mean)
        return self.random.expovariate(1.0 / mean) if mean > 0 else 0.0

    def _job_end(self, data: tuple[Pilot, JobKind]) -> None:
        pilot, kind = data
        if pilot.done:  # killed at the wall-clock limit: already counted back as idle
            return
        kind.running -= 1
        self.report.jobs_done += 1
        pilot.site.running_units[pilot.group] -= kind.cpus / pilot.cores
        pilot.free += kind.cpus
        pilot.jobs -= 1
        self._match(pilot)

    def _queue_done(self, pilot: Pilot) -> None:
        if pilot.done:
            return
        site = pilot.site
        if site.free_cores >= pilot.cores:
            self._start(pilot)
        else:
            site.waiting.append(pilot)

    def _start(self, pilot: Pilot) -> None:
        site = pilot.site
        site.queued.get(pilot.group, {}).pop(pilot, None)
        site.free_cores -= pilot.cores
        site.starting[pilot.group] += 1
        site.active.setdefault(pilot.group, set()).add(pilot)
        pilot.up = self.now
        self.report.pilots_started += 1
        self._push(self.now + float(site.model.startup_s), PILOT_UP, pilot)

    def _pilot_up(self, pilot: Pilot) -> None:
        site = pilot.site
        site.starting[pilot.group] -= 1
        if pilot.done:
            return
        model = site.model
        if model.validation_failure_rate and self.random.random() < model.validation_failure_rate:
            pilot.failed = True
            site.failed[pilot.group] += 1
            self.report.pilots_failed += 1
            self._push(self.now + float(model.failed_hold_s), PILOT_END, pilot)
            return
        pilot.end = pilot.up + float(model.walltime_s)
        self._push(pilot.end, PILOT_END, pilot)
        self._match(pilot)

    def _idle_check(self, data: tuple[Pilot, int]) -> None:
        pilot, version = data
        if not pilot.done and not pilot.jobs and pilot.version == version:
            self._end_pilot(pilot)

    def _pilot_end(self, pilot: Pilot) -> None:
        if not pilot.done:
            self._end_pilot(pilot)

    def _end_pilot(self, pilot: Pilot) -> None:
        site = pilot.site
        pilot.done = True
        site.free_pilots.get(pilot.group, set()).discard(pilot)
        site.active.get(pilot.group, set()).discard(pilot)
        if pilot.failed:
            site.failed[pilot.group] -= 1
        self.report.pilot_hours += pilot.cores * (self.now - pilot.up) / 3600.0
        if pilot.jobs:  # the wall-clock limit killed its jobs: they go back to the queue
            self._requeue_killed(pilot)
        self.report.busy_hours += pilot.busy_core_s / 3600.0
        site.free_cores += pilot.cores
        while site.waiting and site.free_cores >= site.waiting[0].cores:
            waiting = site.waiting.popleft()
            if not waiting.done:
                self._start(waiting)

    def _requeue_killed(self, pilot: Pilot) -> None:
        """Jobs still running at the pilot's end: back to idle (their start counted again)."""
        due = [item for item in self.heap if item[1] == JOB_END and item[3][0] is pilot]
        for at, _kind, _seq, (_pilot, kind) in due:
            kind.running -= 1
            pilot.site.running_units[pilot.group] -= kind.cpus / pilot.cores
            kind.push(self.now, 1, front=True)
            pilot.busy_core_s -= kind.cpus * (at - self.now)
            self.report.jobs_restarted += 1
        pilot.jobs = 0

    # -- the frontend and the factory ------------------------------------------------------------
    def _cycle(self, _data: Any) -> None:
        now = self.now
        for site in self.sites:
            if site.entry is not None:
                site.entry.down = any(a <= now < b for a, b in site.model.downtimes)
        reports = self._overflow()
        observation = self._observe()
        records = self.planner.plan(
            observation, self.groups, self.config.limits, reports, self.config.ignore_down_entries
        )
        requested = 0
        for group in self.groups:
            for name, record in records[group.name].entries.items():
                site = self.site_of_entry[self.entry_index[name]]
                self._factory(site, group, record.decision)
                requested += record.decision.idle
        self._sample(requested)
        self._push(now + self.cycle_s, CYCLE, None)

    def _observe(self) -> Observation:
        now = self.now
        observation = Observation(entries=self.entries, glideins={}, pilots={})
        assert observation.glideins is not None and observation.pilots is not None
        for site in self.sites:
            if site.entry is None:
                continue
            name = site.entry.name
            for group in self.groups:
                g = group.name
                queued = len(site.queued.get(g, ()))
                active = site.active.get(g, set())
                observation.glideins[(name, g)] = {
                    "StatusIdle": queued,
                    "StatusRunning": len(active),
                    "StatusHeld": 0,
                }
                free = site.free_pilots.get(g, set())
                idle = sum(1 for pilot in free if not pilot.jobs)
                failed = site.failed[g]
                busy = len(active) - idle - failed - site.starting[g]
                observation.pilots[(name, g)] = Counter(idle=idle, busy=max(0, busy), failed=failed)
        for group in self.groups:
            kinds = [k for k in self.kinds if k.group is group and k.idle]
            running = {s.entry.name: s.running_units[group.name] for s in self.sites if s.entry is not None}
            observation.groups[group.name] = GroupData(
                kinds=[Kind(k.key, k.cpus, k.idle, k.older_than(now - group.old_idle_s)) for k in kinds],
                running=running,
            )
        return observation

    def _overflow(self) -> dict[str, OverflowReport]:
        reports: dict[str, OverflowReport] = {}
        sites = {s.model.name for s in self.sites}
        for group in self.groups:
            settings = group.overflow
            if settings is None:
                continue
            report = reports[group.name] = OverflowReport()
            current: Counter[str] = Counter()
            rows: dict[str, int] = Counter()
            waiting: dict[str, list[JobKind]] = {}
            threshold = self.now - settings.after_s
            for kind in self.kinds:
                if kind.group is not group:
                    continue
                if kind.homes:
                    for home in kind.homes:
                        current[home] += kind.idle + kind.running
                elif kind.desired is not None and kind.batch.allow_overflow and kind.idle:
                    old = kind.older_than(threshold)
                    if old:
                        text = protocol.literal(kind.desired)
                        rows[text] += old
                        waiting.setdefault(text, []).append(kind)
            for move in plan_overflow(settings, rows.items(), current, sites, 10**9, report):
                widened = ",".join([*move.homes, *move.targets])
                left = move.count
                for kind in sorted(waiting[move.desired], key=JobKind.head):
                    target = self._kind(kind.batch, widened, move.homes)
                    for arrival, count in kind.take_oldest(left, threshold):
                        target.push(arrival, count)
                        left -= count
                    self._wake(target)
                    if not left:
                        break
                moved = move.count - left
                report.widened[widened] = report.widened.get(widened, 0) + moved
                self.report.overflowed_jobs += moved
                for home in move.homes:
                    self.report.overflowed_by_home[home] = self.report.overflowed_by_home.get(home, 0) + moved
        return reports

    def _factory(self, site: SiteState, group: GroupConfig, decision: Any) -> None:
        """The factory's side of one request: keep ``idle`` glideins queued, within max running."""
        g = group.name
        queued = site.queued.setdefault(g, {})
        running = len(site.active.get(g, ()))
        want = decision.idle - len(queued)
        if want > 0:
            room = decision.max_run - len(queued) - running
            if site.model.max_glideins:
                room = min(room, site.model.max_glideins - len(queued) - running)
            for _ in range(max(0, min(want, room))):
                pilot = Pilot(site, g)
                queued[pilot] = None
                self._push(
                    self.now + self.random.expovariate(1.0 / max(1.0, float(site.model.queue_wait_s))),
                    QUEUE_DONE,
                    pilot,
                )
        elif decision.remove != "NO":
            keep = decision.idle + decision.margin
            while len(queued) > keep:
                pilot, _ = queued.popitem()  # the newest first
                pilot.done = True
                self.report.pilots_cancelled += 1
            if decision.remove == "ALL":
                for pilot in [q for q in site.free_pilots.get(g, set()) if not q.jobs]:
                    self._end_pilot(pilot)

    def _sample(self, requested: int) -> None:
        queued = sum(len(q) for s in self.sites for q in s.queued.values())
        running = sum(len(a) for s in self.sites for a in s.active.values())
        idle = sum(1 for s in self.sites for f in s.free_pilots.values() for pilot in f if not pilot.jobs)
        failed = sum(sum(s.failed.values()) for s in self.sites)
        self.report.max_requested_idle = max(self.report.max_requested_idle, requested)
        self.report.samples.append(
            Sample(
                self.now, requested, queued, running, idle, failed,
                sum(k.idle for k in self.kinds), sum(k.running for k in self.kinds), self.report.jobs_done,
                sum(k.idle + k.running for k in self.kinds if k.homes),
            )
        )  # fmt: skip

    def _finish(self) -> None:
        for at, event, _seq, data in self.heap:  # jobs still running at the horizon: only the part done
            if event == JOB_END and not data[0].done:
                data[0].busy_core_s -= data[1].cpus * (at - self.now)
        for site in self.sites:
            for pilots in site.active.values():
                for pilot in pilots:
                    self.report.pilot_hours += pilot.cores * (self.now - pilot.up) / 3600.0
                    self.report.busy_hours += pilot.busy_core_s / 3600.0
        report = self.report
        report.jobs_started = len(self.waits)
        report.jobs_never_started = sum(k.idle for k in self.kinds)
        waits = sorted(self.waits)
        if waits:
            report.wait_s = {
                f"p{q}": round(waits[min(len(waits) - 1, int(len(waits) * q / 100))], 1) for q in (50, 90, 99)
            }
            report.wait_s["max"] = round(waits[-1], 1)
            report.wait_s["mean"] = round(sum(waits) / len(waits), 1)


def simulate(
    config: FrontendConfig, sites: list[SiteModel], workload: WorkloadFile, hours: float = 24.0,
    cycle_s: float = 60.0, seed: int = 1, progress: bool = False,
) -> Report:  # fmt: skip
    """Run one simulation; ``progress`` prints each simulated hour to stderr."""
    simulation = Simulation(config, sites, workload, hours, cycle_s, seed)

    def show(at: float) -> None:
        print(
            f"  simulated {at / 3600:.0f}/{hours:g} h: {simulation.report.jobs_done:,} jobs done",
            file=sys.stderr,
            flush=True,
        )

    return simulation.run(show if progress else None)


# -- output --------------------------------------------------------------------------------------
