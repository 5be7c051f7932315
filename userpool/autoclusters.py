"""Autoclusters: idle jobs grouped by the attributes matchmaking actually reads.

Two idle jobs that agree on every *significant* attribute (those the job's own
Requirements and Rank read, those any slot's START/Requirements/Rank read through
TARGET, the resource requests, the submitter and JobPrio, each closed over what its
text reads in turn) match exactly the same slots in the same order.  Matching then
costs one evaluation per autocluster and slot shape, never one per job.

Each autocluster keeps its idle jobs in a heap by (QDate, ClusterId, ProcId), with
lazy deletion: a job that stops being idle is skipped when it reaches the top.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from updraft.core import classads
from updraft.core.payloads import AutoclusterRow
from userpool.jobs import IDLE
from userpool.queue import PER_JOB, Cluster, Job, JobQueue, is_dag_job
from userpool.selection import _ClusterView

BASE_SIGNIFICANT = (
    "Requirements",
    "Rank",
    "RequestCpus",
    "RequestMemory",
    "RequestDisk",
    "RequestGPUs",
    "JobPrio",
    "Owner",
    "AccountingGroup",
)
#: slot attributes the built-in resource fit reads
FIT_SLOT_ATTRS = ("Cpus", "Memory", "Disk", "GPUs")


class Autocluster:
    __slots__ = ("_ad", "heap", "id", "idle", "key", "prio", "requests", "submitter", "texts")

    def __init__(self, autocluster_id: int, key: tuple[tuple[str, str | None], ...]) -> None:
        self.id = autocluster_id
        self.key = key
        self.texts = {name: text for name, text in key if text is not None}
        self.heap: list[tuple[int, int, int, Job]] = []
        self.idle = 0
        owner = classads.value_of_text(self.texts["Owner"]) if "Owner" in self.texts else ""
        group = self.texts.get("AccountingGroup")
        self.submitter = (
            str(classads.value_of_text(group)) if group and classads.is_literal(group) else str(owner or "")
        )
        prio_text = self.texts.get("JobPrio", "0")
        try:
            prio = classads.value_of_text(prio_text) if classads.is_literal(prio_text) else 0
        except Exception:
            prio = 0
        self.prio = classads.number(prio) or 0
        self._ad: classads.ClassAd | None = None
        #: (cpus, memory MB, disk KB) when they do not depend on the slot; set by the schedd
        self.requests: tuple[int, int, int] | None = None

    @property
    def ad(self) -> classads.ClassAd:
        if self._ad is None:
            self._ad = classads.build(self.texts)
        return self._ad

    def head(self) -> tuple[int, int, int] | None:
        """The (QDate, ClusterId, ProcId) of the next job, dropping stale entries."""
        heap = self.heap
        while heap:
            qdate, cluster_id, proc_id, job = heap[0]
            if job.status == IDLE and job.autocluster is self:
                return qdate, cluster_id, proc_id
            heapq.heappop(heap)
        return None


class AutoclusterIndex:
    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self.significant: list[str] = [classads.canonical(n) for n in BASE_SIGNIFICANT]
        self._significant_set = set(self.significant)
        self.by_key: dict[tuple[tuple[str, str | None], ...], Autocluster] = {}
        self.ordered: list[
            Autocluster
        ] = []  # creation order; negotiator shapes evaluate new ones by position
        self.generation = 0  # bumped whenever every autocluster is rebuilt
        self.revivals = 0  # bumped whenever an autocluster goes from no idle job to some
        self.slot_refs: set[str] = {classads.canonical(n) for n in FIT_SLOT_ATTRS}
        self.slot_refs_generation = 0
        self._cluster_keys: dict[
            int, tuple[int, list[str], tuple[tuple[str, str | None], ...] | None, int]
        ] = {}
        self._next_id = 1

    # -- keys ------------------------------------------------------------------------------
    def _cluster_info(
        self, cluster: Cluster
    ) -> tuple[list[str], tuple[tuple[str, str | None], ...] | None, int]:
        """(closure names, key when no proc can differ else None, QDate) for a cluster; cached."""
        cached = self._cluster_keys.get(cluster.cluster_id)
        if cached is not None and cached[0] == self.generation:
            return cached[1], cached[2], cached[3]
        view = _ClusterView(cluster)
        names = classads.closure(self.significant, view)
        key = None if any(n in PER_JOB for n in names) else tuple((n, view.get(n)) for n in names)
        qdate_text = cluster.ad.get("QDate", "0")
        try:
            qdate = int(qdate_text)
        except ValueError:
            qdate = 0
        self._cluster_keys[cluster.cluster_id] = (self.generation, names, key, qdate)
        return names, key, qdate

    def forget_cluster(self, cluster: Cluster) -> None:
        """The cluster ad changed (condor_qedit of every proc): recompute its key next time."""
        self._cluster_keys.pop(cluster.cluster_id, None)

    def key_of(self, job: Job) -> tuple[tuple[str, str | None], ...]:
        names, key, _qdate = self._cluster_info(job.cluster)
        if key is not None and (job.overrides is None or job.overrides.keys().isdisjoint(names)):
            return key
        names = classads.closure(self.significant, job)
        return tuple((n, job.get(n)) for n in names)

    def idle_by_submitter(self) -> dict[str, int]:
        """Idle jobs per fair-share submitter (the monitor's groups)."""
        out: dict[str, int] = {}
        for autocluster in self.ordered:
            if autocluster.idle:
                out[autocluster.submitter] = out.get(autocluster.submitter, 0) + autocluster.idle
        return out

    # -- membership ------------------------------------------------------------------------
    def add(self, job: Job) -> Autocluster | None:
        """``job`` became idle (or was submitted idle)."""
        if is_dag_job(job.cluster):
            return None  # the pool runs it itself
        key = self.key_of(job)
        autocluster = self.by_key.get(key)
        if autocluster is None:
            autocluster = self._create(key)
        qdate = self._cluster_info(job.cluster)[2]
        heapq.heappush(autocluster.heap, (qdate, job.cluster.cluster_id, job.proc_id, job))
        job.autocluster = autocluster
        if autocluster.idle == 0:
            self.revivals += 1
        autocluster.idle += 1
        return autocluster

    def add_many(self, jobs: Iterable[Job]) -> None:
        """Add the idle ones of many jobs (a new cluster, a load): keys and heaps in bulk."""
        groups: dict[tuple[tuple[str, str | None], ...], list[tuple[int, int, int, Job]]] = {}
        cluster: Cluster | None = None  # the jobs come a cluster at a time: look each one up once
        skip, names, cluster_key, qdate = False, [], None, 0
        for job in jobs:
            if job.cluster is not cluster:
                cluster = job.cluster
                skip = is_dag_job(cluster)  # the pool runs a DAG job itself
                if not skip:
                    names, cluster_key, qdate = self._cluster_info(cluster)
            if skip or job.status != IDLE:
                continue
            key = cluster_key
            overrides = job.overrides
            if key is None or (overrides is not None and not overrides.keys().isdisjoint(names)):
                key = self.key_of(job)
            entries = groups.get(key)
            if entries is None:
                entries = groups[key] = []
            entries.append((qdate, job.cluster.cluster_id, job.proc_id, job))
        for key, entries in groups.items():
            autocluster = self.by_key.get(key)
            if autocluster is None:
                autocluster = self._create(key)
            if autocluster.idle == 0:
                self.revivals += 1
            for entry in entries:
                entry[3].autocluster = autocluster
            autocluster.idle += len(entries)
            if len(entries) > len(autocluster.heap):
                autocluster.heap.extend(entries)
                heapq.heapify(autocluster.heap)
            else:
                for entry in entries:
                    heapq.heappush(autocluster.heap, entry)

    def remove(self, job: Job) -> None:
        """``job`` is no longer idle; its heap entry is dropped lazily."""
        autocluster = job.autocluster
        job.autocluster = None
        if isinstance(autocluster, Autocluster):
            autocluster.idle -= 1
            heap = autocluster.heap
            if len(heap) > 4 * autocluster.idle + 1024:  # mostly stale: drop them so they free their jobs
                autocluster.heap = [
                    e for e in heap if e[3].autocluster is autocluster and e[3].status == IDLE
                ]
                heapq.heapify(autocluster.heap)

    def rekey(self, job: Job) -> None:
        """An attribute of an idle job changed: it may belong to another autocluster now."""
        if job.status != IDLE:
            return
        current = job.autocluster
        if isinstance(current, Autocluster) and current.key == self.key_of(job):
            return
        self.remove(job)
        self.add(job)

    def pop(self, autocluster: Autocluster) -> Job | None:
        """Take the next idle job of ``autocluster`` out of it (the caller makes it run)."""
        heap = autocluster.heap
        while heap:
            _qdate, _cluster_id, _proc_id, job = heapq.heappop(heap)
            if job.status == IDLE and job.autocluster is autocluster:
                self.remove(job)
                return job
        autocluster.idle = 0
        return None

    def _create(self, key: tuple[tuple[str, str | None], ...]) -> Autocluster:
        autocluster = Autocluster(self._next_id, key)
        self._next_id += 1
        self.by_key[key] = autocluster
        self.ordered.append(autocluster)
        new_refs: set[str] = set()
        for attribute in ("Requirements", "Rank"):
            text = autocluster.texts.get(attribute)
            if text:
                try:
                    new_refs |= classads.references(text)[1]
                except classads.ExpressionError:
                    pass
        # an unscoped name the job does not define is looked up in the slot (OpSys == "LINUX")
        new_refs |= {name for name, text in key if text is None}
        if not new_refs <= self.slot_refs:
            self.slot_refs |= new_refs
            self.slot_refs_generation += 1
        return autocluster

    # -- significant attributes -----------------------------------------------------------
    def require(self, names: Iterable[str]) -> bool:
        """Make ``names`` significant (a slot's START reads them); rebuild if any is new."""
        new = [classads.canonical(n) for n in names if classads.canonical(n) not in self._significant_set]
        if not new:
            return False
        for name in new:
            self._significant_set.add(name)
            self.significant.append(name)
        self.rebuild()
        return True

    def rebuild(self) -> None:
        """Regroup every idle job (significant attributes changed, or to drop empty autoclusters)."""
        self.generation += 1
        self._cluster_keys.clear()
        self.by_key.clear()
        self.ordered = []
        for job in self.queue.jobs():
            job.autocluster = None
        for job in self.queue.jobs():
            if job.status == IDLE:
                self.add(job)

    def maybe_compact(self) -> None:
        """Housekeeping: drop empty autoclusters when they are most of them, and the cached
        keys of clusters that have left the queue (one per cluster ever submitted, otherwise)."""
        empty = sum(1 for ac in self.ordered if ac.idle <= 0)
        if empty > 1000 and empty > len(self.ordered) // 2:
            self.rebuild()
            return
        gone = [cluster_id for cluster_id in self._cluster_keys if cluster_id not in self.queue.clusters]
        for cluster_id in gone:
            del self._cluster_keys[cluster_id]

    def summary(self) -> list[AutoclusterRow]:
        return [
            AutoclusterRow(ac.id, ac.idle, ac.submitter, ac.prio, dict(ac.texts))
            for ac in self.ordered
            if ac.idle > 0
        ]
