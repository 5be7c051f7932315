"""Evaluate one ClassAd expression over many jobs, once per distinct input.

A constraint reads a handful of attributes.  Jobs that agree on the texts of those
attributes (and of whatever those texts read in turn) get the same answer, and the
jobs of a cluster agree on everything no proc overrides.  So a query over a million
jobs in a thousand clusters costs about a thousand evaluations, not a million.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from updraft.core import classads
from userpool.queue import PER_JOB, Cluster, Job


class _ClusterView:
    """Texts as every job of the cluster sees them; per-job fields read as a literal placeholder."""

    __slots__ = ("cluster",)

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def get(self, name: str) -> str | None:
        if name in PER_JOB:
            return "0"
        if name == "ClusterId":
            return str(self.cluster.cluster_id)
        return self.cluster.ad.get(name)


_ID_CLAUSE = re.compile(
    r"^(?:MY\.)?(ProcId|ClusterId|JobStatus)\s*(==|!=|<=|>=|<|>|=\?=|=!=|is|isnt)\s*(-?\d+)$", re.IGNORECASE
)
_OPERATORS: dict[str, Callable[[int, int], bool]] = {
    "==": operator.eq, "=?=": operator.eq, "is": operator.eq, "!=": operator.ne, "=!=": operator.ne, "isnt": operator.ne,
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
_FIELDS = {"procid": "proc_id", "jobstatus": "status"}


class Selector:
    """A compiled constraint with a result cache that lives as long as this object.

    Top-level clauses comparing ProcId, ClusterId or JobStatus with a number are checked
    in Python on the job's fields; only the rest goes to the ClassAd evaluator, where it
    is usually cluster-level and evaluated once per cluster.
    """

    def __init__(self, constraint: str, what: str = "constraint") -> None:
        self.text = classads.check(constraint.strip(), what) if constraint.strip() else ""
        self.cluster_tests: list[tuple[Callable[[int, int], bool], int]] = []
        self.job_tests: list[tuple[str, Callable[[int, int], bool], int]] = []
        rest = []
        for clause in classads.split_conjunction(self.text) if self.text else []:
            match = _ID_CLAUSE.match(clause)
            if match is None:
                rest.append(clause)
                continue
            name, op, number = match.group(1).lower(), _OPERATORS[match.group(2).lower()], int(match.group(3))
            if name == "clusterid":
                self.cluster_tests.append((op, number))
            else:
                self.job_tests.append((_FIELDS[name], op, number))
        self.rest = " && ".join(f"({c})" for c in rest) if len(rest) > 1 else (rest[0] if rest else "")
        self.refs = sorted(classads.references(self.rest)[0]) if self.rest else []
        self._results: dict[tuple[tuple[str, str | None], ...], bool] = {}
        self.evaluations = 0

    def __bool__(self) -> bool:
        return bool(self.text)

    def _decide(self, key: tuple[tuple[str, str | None], ...]) -> bool:
        found = self._results.get(key)
        if found is None:
            ad = classads.build([(name, text) for name, text in key if text is not None])
            found = classads.is_true(classads.evaluate(self.rest, ad))
            self._results[key] = found
            self.evaluations += 1
        return found

    def filter(self, cluster: Cluster, jobs: Iterable[Job] | None = None) -> Iterator[Job]:
        """The jobs of ``cluster`` (or the given subset of them) that satisfy the constraint."""
        members: Iterable[Job] = cluster.jobs.values() if jobs is None else jobs
        if not self.text:
            yield from members
            return
        if not all(op(cluster.cluster_id, number) for op, number in self.cluster_tests):
            return
        for field, op, number in self.job_tests:
            members = [job for job in members if op(getattr(job, field), number)]
        if not self.rest:
            yield from members
            return
        names = classads.closure(self.refs, _ClusterView(cluster))
        varying = [n for n in names if n in PER_JOB or n in cluster.varying]
        if not varying:
            view = _ClusterView(cluster)
            if self._decide(tuple((n, view.get(n)) for n in names)):
                yield from members
            return
        for job in members:
            overrides = job.overrides
            if overrides is not None and not overrides.keys().isdisjoint(names):
                job_names = classads.closure(self.refs, job)  # an override may read other attributes
            else:
                job_names = names
            if self._decide(tuple((n, job.get(n)) for n in job_names)):
                yield job

    def matches(self, job: Job) -> bool:
        return any(True for _ in self.filter(job.cluster, (job,)))

    def matches_ad(self, texts: dict[str, str]) -> bool:
        """For ads that are not jobs (collector ads, history rows): evaluate on the texts given."""
        if not self.text:
            return True
        names = classads.closure(classads.references(self.text)[0], texts)
        key = tuple((n, texts.get(n)) for n in names)
        found = self._results.get(key)
        if found is None:
            ad = classads.build([(name, text) for name, text in key if text is not None])
            found = self._results[key] = classads.is_true(classads.evaluate(self.text, ad))
            self.evaluations += 1
        return found


def evaluate_projection(texts: dict[str, str], names: Iterable[str]) -> list[Any]:
    """Evaluated values of ``names`` in the ad given by ``texts`` (condor_q -af)."""
    ad = None
    values: list[Any] = []
    for name in names:
        text = texts.get(classads.canonical(name))
        if text is None:
            try:
                text_value: Any = classads.evaluate(name, ad if ad is not None else classads.build(texts))
            except Exception:
                text_value = classads.Undefined
            values.append(text_value)
            continue
        if classads.is_literal(text):
            values.append(classads.value_of_text(text))
            continue
        if ad is None:
            ad = classads.build(texts)
        values.append(classads.evaluate(text, ad))
    return values
