"""condor_history: jobs that left the queue, newest first, from the store.

History rows keep only a job's own differences; the cluster ad stays in the clusters
table, as in the queue, so a finished 100,000-job cluster costs one ad plus small rows.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import orjson

from userpool import classads
from userpool.protocol import parse_job_id
from userpool.selection import Selector
from userpool.store import Batch, Store


class History:
    def __init__(self, store: Store, max_jobs: int) -> None:
        self.store = store
        self.max_jobs = max_jobs
        self._clusters: OrderedDict[int, dict[str, str]] = OrderedDict()

    def _cluster_ad(self, cluster_id: int) -> dict[str, str]:
        ad = self._clusters.get(cluster_id)
        if ad is None:
            rows = self.store.read("SELECT ad FROM clusters WHERE cluster_id = ?", (cluster_id,))
            ad = {classads.canonical(k): v for k, v in orjson.loads(rows[0][0]).items()} if rows else {}
            self._clusters[cluster_id] = ad
            if len(self._clusters) > 512:
                self._clusters.popitem(last=False)
        else:
            self._clusters.move_to_end(cluster_id)
        return ad

    def _rows(
        self, ids: list[str], owners: list[str]
    ) -> Iterator[tuple[int, int, float, str, int, str | None]]:
        sql = "SELECT cluster_id, proc_id, completed, owner, status, overrides FROM history"
        where: list[str] = []
        params: list[object] = []
        if ids:
            parts = []
            for job_id in ids:
                cluster_id, proc_id = parse_job_id(job_id)
                if proc_id is None:
                    parts.append("cluster_id = ?")
                    params.append(cluster_id)
                else:
                    parts.append("(cluster_id = ? AND proc_id = ?)")
                    params.extend((cluster_id, proc_id))
            where.append("(" + " OR ".join(parts) + ")")
        if owners:
            where.append("owner IN (" + ",".join("?" * len(owners)) + ")")
            params.extend(owners)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY completed DESC, cluster_id DESC, proc_id DESC"
        yield from self.store.read_iter(sql, params, chunk=2000)

    def query(
        self, ids: list[str], owners: list[str], constraint: str, projection: list[str], limit: int
    ) -> list[dict[str, str]]:
        selector = Selector(constraint)
        out: list[dict[str, str]] = []
        for cluster_id, proc_id, completed, _owner, status, overrides in self._rows(ids, owners):
            texts = dict(self._cluster_ad(cluster_id))
            if overrides:
                texts.update({classads.canonical(k): v for k, v in orjson.loads(overrides).items()})
            texts["ClusterId"] = str(cluster_id)
            texts["ProcId"] = str(proc_id)
            texts["JobStatus"] = str(status)
            texts.setdefault("CompletionDate", str(int(completed)))
            if selector and not selector.matches_ad(texts):
                continue
            if projection:
                texts = {
                    n: texts[classads.canonical(n)] for n in projection if classads.canonical(n) in texts
                }
            out.append(texts)
            if limit and len(out) >= limit:
                break
        return out

    def prune(self) -> Batch:
        """Drop the oldest rows beyond ``max_jobs`` and cluster ads nothing refers to any more."""
        batch = Batch()
        rows = self.store.read("SELECT COUNT(*) FROM history")
        excess = rows[0][0] - self.max_jobs
        if excess > 0:
            batch.add(
                "DELETE FROM history WHERE (cluster_id, proc_id) IN"
                " (SELECT cluster_id, proc_id FROM history ORDER BY completed LIMIT ?)",
                (excess,),
            )
            batch.add(
                "DELETE FROM clusters WHERE cluster_id NOT IN (SELECT cluster_id FROM jobs)"
                " AND cluster_id NOT IN (SELECT cluster_id FROM history)"
            )
        return batch
