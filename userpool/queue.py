"""The job queue in memory: clusters, their procs, and counts.

A job's attributes are its cluster's ad plus the few the job overrides, as the
HTCondor schedd keeps them; JobStatus, ProcId and ClusterId are synthesized from
fields so that the hot paths (counting, matching, state changes) touch no text.
Every value is the text of a ClassAd expression.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from updraft.core import classads, protocol
from updraft.core.classads import canonical
from updraft.core.errors import BadRequest
from updraft.core.payloads import SandboxFile
from updraft.core.protocol import JobStatus, format_job_id, parse_job_id, parse_literal

#: attributes computed from fields, never stored as overrides
SYNTHESIZED = frozenset({"ClusterId", "ProcId", "JobStatus"})
#: attributes nobody sets by submit or edit: the schedd owns them
PROTECTED = frozenset(
    classads.canonical(n)
    for n in (
        "ClusterId", "ProcId", "JobStatus", "Owner", "User", "QDate", "MyType", "EnteredCurrentStatus",
        "NumJobStarts", "NumJobMatches", "RemoteHost", "GlobalJobId", protocol.ATTR_AUTHENTICATED_IDENTITY, "NumJobCompletions",
        # a job's DAG is fixed at submission: an edit would not make a job a DAG, or a node of another's
        "JobUniverse", protocol.ATTR_DAGMAN_JOB_ID, protocol.ATTR_DAG_ENGINE_LIVE,
    )
)  # fmt: skip

#: attributes that differ between the jobs of a cluster even when no override says so
PER_JOB = frozenset({"ProcId", "JobStatus"})


def is_dag_job(cluster: Cluster) -> bool:
    """A DAG job (the scheduler universe): run by the pool's DAG supervisor, never matched to a pilot."""
    return cluster.ad.get("JobUniverse") == _SCHEDULER_UNIVERSE


def check_dag_job(ad: dict[str, str], procs: int) -> None:
    """The scheduler universe runs one thing, the pool's own DAGMan: say so to anything else."""
    command = classads.value_of_text(ad.get("Cmd", '""'))
    if not isinstance(command, str) or command.rsplit("/", 1)[-1] != protocol.DAGMAN_COMMAND:
        raise BadRequest(
            f"JobUniverse {protocol.SCHEDULER_UNIVERSE} runs only {protocol.DAGMAN_COMMAND} (condor_submit_dag),"
            f" not {command!r}"
        )
    if procs != 1:
        raise BadRequest(f"a DAG job is one job, not {procs}")
    arguments = classads.value_of_text(ad.get("Arguments", '""'))
    if not isinstance(arguments, str) or "-Dag " not in f"{arguments} ".replace("-dag ", "-Dag "):
        raise BadRequest("a DAG job's Arguments name its DAG file (-Dag file.dag)")


_SCHEDULER_UNIVERSE = str(protocol.SCHEDULER_UNIVERSE)


class Cluster:
    """The attributes every proc of one submit shares, and the procs still in the queue."""

    __slots__ = ("ad", "cluster_id", "inputs", "jobs", "owner", "proc_inputs", "varying")

    def __init__(
        self,
        cluster_id: int,
        owner: str,
        ad: dict[str, str],
        inputs: list[SandboxFile] | None = None,
        proc_inputs: dict[int, list[SandboxFile]] | None = None,
    ) -> None:
        self.cluster_id = cluster_id
        self.owner = owner
        self.ad = ad
        self.jobs: dict[int, Job] = {}
        #: names some proc overrides; a constraint that reads none of them is evaluated once
        self.varying: set[str] = set()
        self.inputs = inputs or []
        self.proc_inputs = proc_inputs or {}

    def inputs_of(self, proc_id: int) -> list[SandboxFile]:
        return self.proc_inputs.get(proc_id, self.inputs)

    def initial_directories(self) -> set[str]:
        """Every Iwd its procs have (``initialdir`` may differ per proc)."""
        texts = [self.ad.get("Iwd")]
        if "Iwd" in self.varying:
            texts += [job.overrides.get("Iwd") for job in self.jobs.values() if job.overrides]
        out = set()
        for text in texts:
            if text is not None:
                try:
                    value = parse_literal(text)
                except ValueError:
                    continue
                if isinstance(value, str):
                    out.add(value)
        return out


class Job:
    """One proc: a reference to its cluster plus its own differences."""

    __slots__ = ("autocluster", "cluster", "overrides", "proc_id", "status")

    def __init__(self, cluster: Cluster, proc_id: int, status: int, overrides: dict[str, str] | None) -> None:
        self.cluster = cluster
        self.proc_id = proc_id
        self.status = status
        self.overrides = overrides or None
        self.autocluster: object | None = None

    @property
    def job_id(self) -> str:
        return format_job_id(self.cluster.cluster_id, self.proc_id)

    @property
    def owner(self) -> str:
        return self.cluster.owner

    def get(self, name: str) -> str | None:
        """The expression text of an attribute (canonical name), or None."""
        if name in SYNTHESIZED:
            if name == "JobStatus":
                return str(self.status)
            if name == "ProcId":
                return str(self.proc_id)
            return str(self.cluster.cluster_id)
        if self.overrides is not None:
            text = self.overrides.get(name)
            if text is not None:
                return text
        return self.cluster.ad.get(name)

    def set(self, name: str, text: str | None) -> None:
        """Override an attribute for this proc (None deletes the override)."""
        name = canonical(name)
        if text is None:
            if self.overrides is not None:
                self.overrides.pop(name, None)
            return
        if self.overrides is None:
            self.overrides = {}
        self.overrides[name] = text
        self.cluster.varying.add(name)

    def ad(self) -> dict[str, str]:
        merged = dict(self.cluster.ad)
        if self.overrides:
            merged.update(self.overrides)
        merged["ClusterId"] = str(self.cluster.cluster_id)
        merged["ProcId"] = str(self.proc_id)
        merged["JobStatus"] = str(self.status)
        return merged

    def project(self, names: Iterable[str]) -> dict[str, str]:
        out = {}
        for name in names:
            text = self.get(canonical(name))
            if text is not None:
                out[name] = text
        return out


class JobQueue:
    """All clusters in the queue, with per-status and per-owner counts kept as jobs change."""

    def __init__(self) -> None:
        self.clusters: dict[int, Cluster] = {}
        self.status_counts: Counter[int] = Counter()
        self.owner_status_counts: dict[str, Counter[int]] = {}

    # -- membership ----------------------------------------------------------------------
    def add_cluster(self, cluster: Cluster) -> None:
        self.clusters[cluster.cluster_id] = cluster
        counts = self.owner_status_counts.setdefault(cluster.owner, Counter())
        for job in cluster.jobs.values():
            self.status_counts[job.status] += 1
            counts[job.status] += 1

    def remove_job(self, job: Job) -> None:
        cluster = job.cluster
        if cluster.jobs.pop(job.proc_id, None) is None:
            return
        self._count(job.status, -1, cluster.owner)
        if not cluster.jobs:
            del self.clusters[cluster.cluster_id]

    def set_status(self, job: Job, status: int) -> None:
        self._count(job.status, -1, job.cluster.owner)
        job.status = status
        self._count(status, 1, job.cluster.owner)

    def _count(self, status: int, delta: int, owner: str) -> None:
        self.status_counts[status] += delta
        self.owner_status_counts.setdefault(owner, Counter())[status] += delta

    # -- lookup --------------------------------------------------------------------------
    def get(self, cluster_id: int, proc_id: int) -> Job | None:
        cluster = self.clusters.get(cluster_id)
        return cluster.jobs.get(proc_id) if cluster is not None else None

    def find(self, job_id: str) -> Job | None:
        cluster_id, proc_id = parse_job_id(job_id)
        return self.get(cluster_id, proc_id if proc_id is not None else -1)

    def __len__(self) -> int:
        return sum(self.status_counts.values())

    def jobs(self) -> Iterator[Job]:
        for cluster in self.clusters.values():
            yield from cluster.jobs.values()

    def by_ids(self, ids: Iterable[str]) -> tuple[list[Job], list[str]]:
        """Jobs for 'C' and 'C.P' ids, and the ids that named nothing."""
        found: list[Job] = []
        missing: list[str] = []
        for job_id in ids:
            cluster_id, proc_id = parse_job_id(job_id)
            cluster = self.clusters.get(cluster_id)
            if proc_id is None:
                if cluster is None or not cluster.jobs:
                    missing.append(job_id)
                else:
                    found.extend(cluster.jobs.values())
            else:
                job = cluster.jobs.get(proc_id) if cluster is not None else None
                if job is None:
                    missing.append(job_id)
                else:
                    found.append(job)
        return found, missing

    def totals(self, jobs: Iterable[Job] | None = None) -> dict[str, int]:
        counts = Counter(job.status for job in jobs) if jobs is not None else self.status_counts
        out = {JobStatus(s).name.lower(): counts.get(s, 0) for s in JobStatus}
        out["total"] = sum(out.values())
        return out
