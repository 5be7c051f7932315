"""A stand-in for an HTCondor schedd, for the contract tests of the HTCondor-CE adapter.

No HTCondor daemons can run on these machines.  This class answers the htcondor2.Schedd
calls the adapter makes (submit, query, act, refreshGSIProxy) the way a schedd documents
them: submit turns a real htcondor2.Submit into a job ad (JobStatus 1), query evaluates the
constraint with the real ClassAd library, act moves JobStatus as HTCondor does.  Tests
move jobs along with ``set``, as the CE would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import classad2
import htcondor2  # noqa: F401 - the ClassAd functions

SUBMIT_TO_AD = {
    "executable": "Cmd", "grid_resource": "GridResource", "output": "Out", "error": "Err",
    "transfer_input_files": "TransferInput", "x509userproxy": "x509userproxy", "scitokens_file": "ScitokensFile",
    "environment": "Environment", "universe": "JobUniverse",
}  # fmt: skip


@dataclass
class Result:
    cluster_id: int

    def cluster(self) -> int:
        return self.cluster_id

    def first_proc(self) -> int:
        return 0

    def num_procs(self) -> int:
        return 1


@dataclass
class ScheddStandin:
    jobs: dict[str, classad2.ClassAd] = field(default_factory=dict)
    submitted: list[dict[str, str]] = field(default_factory=list)
    actions: list[tuple[str, list[str]]] = field(default_factory=list)
    refreshed: list[tuple[int, int, str]] = field(default_factory=list)
    next_cluster: int = 1
    down: bool = False

    def _check(self) -> None:
        if self.down:
            raise OSError("Failed to connect to schedd")

    def submit(self, description: Any, count: int = 1) -> Result:
        self._check()
        items = {str(k): str(v) for k, v in description.items()}
        self.submitted.append(items)
        ad = classad2.ClassAd()
        for key, value in items.items():
            if key.startswith(("+", "MY.")):  # htcondor2.Submit spells +Attr as MY.Attr
                ad[key.split(".", 1)[1] if key.startswith("MY.") else key[1:]] = classad2.ExprTree(value)
            elif key in SUBMIT_TO_AD:
                ad[SUBMIT_TO_AD[key]] = 9 if value == "grid" else value
        cluster = self.next_cluster
        self.next_cluster += 1
        ad["ClusterId"], ad["ProcId"], ad["JobStatus"] = cluster, 0, 1
        self.jobs[f"{cluster}.0"] = ad
        return Result(cluster)

    def query(self, constraint: str = "true", projection: list[str] | None = None) -> list[classad2.ClassAd]:
        self._check()
        expression = classad2.ExprTree(constraint)
        found = []
        for ad in self.jobs.values():
            if expression.eval(ad) is True:
                if projection:
                    found.append(classad2.ClassAd({k: ad.eval(k) for k in projection if k in ad}))
                else:
                    found.append(ad)
        return found

    def act(self, action: Any, job_spec: list[str], reason: str | None = None) -> classad2.ClassAd:
        self._check()
        name = getattr(action, "name", str(action))
        self.actions.append((name, list(job_spec)))
        for job_id in job_spec:
            ad = self.jobs.get(job_id)
            if ad is None:
                continue
            if name == "Remove" and ad["JobStatus"] not in (3, 4):
                ad["JobStatus"] = 3
            elif name == "Release" and ad["JobStatus"] == 5:
                ad["JobStatus"] = 1
        return classad2.ClassAd({"TotalSuccess": len(job_spec)})

    def refreshGSIProxy(self, cluster: int, proc: int, proxy_filename: str, lifetime: int = -1) -> int:
        self._check()
        self.refreshed.append((cluster, proc, proxy_filename))
        return 3600

    # -- for tests: what the CE does -----------------------------------------------------------------
    def set(self, job_id: str, **attributes: Any) -> None:
        for key, value in attributes.items():
            self.jobs[job_id][key] = value
