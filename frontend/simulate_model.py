"""The simulator's models of what the frontend does not run: kinds of jobs, pilots and sites."""

from __future__ import annotations

import math
from collections import Counter, deque

from frontend.config import GroupConfig
from frontend.matching import Entry
from frontend.simulate_inputs import Batch, SiteModel


class JobKind:
    """Jobs that look the same to the frontend; idle ones as (arrival, count) buckets, oldest first."""

    __slots__ = (
        "batch",
        "buckets",
        "cpus",
        "desired",
        "group",
        "homes",
        "idle",
        "index",
        "key",
        "runnable",
        "running",
        "texts",
    )

    def __init__(
        self,
        index: int,
        batch: Batch,
        group: GroupConfig,
        texts: dict[str, str],
        desired: str | None,
        homes: list[str],
    ) -> None:
        self.index = index
        self.batch = batch
        self.group = group
        self.cpus = batch.cores
        self.texts = texts
        refs = {k.lower(): v for k, v in texts.items()}
        self.key = tuple(refs.get(a.lower()) for a in group.job_refs)
        self.desired = desired  # the DESIRED_Sites text (None: any site)
        self.homes = homes  # the home sites of an overflowed kind
        self.buckets: deque[list[float]] = deque()
        self.idle = 0
        self.running = 0
        self.runnable: set[int] = set()  # entry indexes

    def head(self) -> float:
        return self.buckets[0][0] if self.buckets else math.inf

    def push(self, arrival: float, count: int, front: bool = False) -> None:
        if front:
            if self.buckets and self.buckets[0][0] == arrival:
                self.buckets[0][1] += count
            else:
                self.buckets.appendleft([arrival, count])
        elif self.buckets and self.buckets[-1][0] == arrival:
            self.buckets[-1][1] += count
        else:
            self.buckets.append([arrival, count])
        self.idle += count

    def pop(self) -> float:
        bucket = self.buckets[0]
        bucket[1] -= 1
        self.idle -= 1
        if not bucket[1]:
            self.buckets.popleft()
        return bucket[0]

    def take_oldest(self, count: int, before: float) -> list[tuple[float, int]]:
        taken: list[tuple[float, int]] = []
        while count and self.buckets and self.buckets[0][0] < before:
            bucket = self.buckets[0]
            n = min(count, int(bucket[1]))
            taken.append((bucket[0], n))
            bucket[1] -= n
            count -= n
            self.idle -= n
            if not bucket[1]:
                self.buckets.popleft()
        return taken

    def older_than(self, moment: float) -> int:
        total = 0
        for arrival, count in self.buckets:
            if arrival >= moment:
                break
            total += int(count)
        return total


class Pilot:
    __slots__ = (
        "busy_core_s",
        "cores",
        "done",
        "end",
        "failed",
        "free",
        "group",
        "jobs",
        "retiring",
        "site",
        "up",
        "version",
    )

    def __init__(self, site: SiteState, group: str) -> None:
        self.site = site
        self.group = group
        self.cores = site.model.pilot_cores
        self.free = self.cores
        self.end = 0.0
        self.up = 0.0
        self.jobs = 0
        self.retiring = False
        self.version = 0
        self.failed = False
        self.done = False  # cancelled while queued, or ended
        self.busy_core_s = 0.0


class SiteState:
    __slots__ = (
        "active",
        "entry",
        "failed",
        "free_cores",
        "free_pilots",
        "index",
        "model",
        "queued",
        "running_units",
        "starting",
        "waiting",
    )

    def __init__(self, index: int, model: SiteModel) -> None:
        self.index = index
        self.model = model
        self.entry: Entry | None = None
        self.free_cores = model.cores
        self.waiting: deque[Pilot] = deque()  # queue wait over, no free cores yet
        self.queued: dict[str, dict[Pilot, None]] = {}  # group -> glideins not yet started, oldest first
        self.starting: dict[str, int] = Counter()
        self.active: dict[str, set[Pilot]] = {}  # group -> started pilots (validating, failed or running)
        self.failed: dict[str, int] = Counter()
        self.free_pilots: dict[str, set[Pilot]] = {}  # group -> validated pilots with a free core
        self.running_units: Counter[str] = Counter()  # group -> running jobs in pilot units
