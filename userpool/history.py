"""condor_history: jobs that left the queue, newest first, from the store.

History rows keep only a job's own differences; the cluster ad stays in the clusters
table, as in the queue, so a finished 100,000-job cluster costs one ad plus small rows.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator

import orjson

from updraft.core import classads
from updraft.core.errors import BadRequest
from updraft.core.protocol import parse_job_id
from userpool.selection import Selector
from userpool.store import Batch, Store

#: the most job ids (or owners) one history query may name; the request body limit bounds it too
MAX_QUERY_IDS = 1_000_000


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
        """History rows of these ids and owners, newest first.

        The ids go into a temporary table joined to the history, not into one OR per id:
        SQLite refuses an expression deeper than 1,000 terms, and condor_history may name
        thousands of jobs.
        """
        if len(ids) > MAX_QUERY_IDS or len(owners) > MAX_QUERY_IDS:
            raise BadRequest(f"a history query names at most {MAX_QUERY_IDS} job ids and as many owners")
        connection = self.store.reader()
        sql = "SELECT h.cluster_id, h.proc_id, h.completed, h.owner, h.status, h.overrides FROM history h"
        where: list[str] = []
        params: list[object] = []
        if ids:
            wanted = [parse_job_id(job_id) for job_id in ids]
            connection.execute(
                "CREATE TEMP TABLE IF NOT EXISTS wanted_ids (cluster_id INTEGER, proc_id INTEGER)"
            )
            connection.execute("DELETE FROM temp.wanted_ids")
            connection.executemany(
                "INSERT INTO temp.wanted_ids VALUES (?, ?)",
                [(cluster_id, -1 if proc_id is None else proc_id) for cluster_id, proc_id in wanted],
            )
            where.append(
                "EXISTS (SELECT 1 FROM temp.wanted_ids w WHERE w.cluster_id = h.cluster_id"
                " AND (w.proc_id = -1 OR w.proc_id = h.proc_id))"
            )
        if owners:
            connection.execute("CREATE TEMP TABLE IF NOT EXISTS wanted_owners (owner TEXT)")
            connection.execute("DELETE FROM temp.wanted_owners")
            connection.executemany("INSERT INTO temp.wanted_owners VALUES (?)", [(o,) for o in owners])
            where.append("h.owner IN (SELECT owner FROM temp.wanted_owners)")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY h.completed DESC, h.cluster_id DESC, h.proc_id DESC"
        yield from self.store.read_iter(sql, params, chunk=2000)

    def query(
        self, ids: list[str], owners: list[str], constraint: str, projection: list[str], limit: int
    ) -> list[dict[str, str]]:
        selector = Selector(constraint)
        rows = self._rows(ids, owners)
        with contextlib.closing(rows):  # a limit stops early: finish the statement before the next query
            return self._collect(rows, selector, projection, limit)

    def _collect(
        self,
        rows: Iterator[tuple[int, int, float, str, int, str | None]],
        selector: Selector,
        projection: list[str],
        limit: int,
    ) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for cluster_id, proc_id, completed, _owner, status, overrides in rows:
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

    def owner_of(self, cluster_id: int, proc_id: int) -> str | None:
        rows = self.store.read(
            "SELECT owner FROM history WHERE cluster_id = ? AND proc_id = ?", (cluster_id, proc_id)
        )
        return str(rows[0][0]) if rows else None

    def prune(self) -> Batch:
        """Drop the oldest rows beyond ``max_jobs`` with their jobs' events, then the cluster ads
        and cluster events nothing refers to any more: what a job leaves behind goes with it."""
        batch = Batch()
        rows = self.store.read("SELECT COUNT(*) FROM history")
        excess = rows[0][0] - self.max_jobs
        if excess > 0:
            gone = self.store.read(
                "SELECT cluster_id, proc_id FROM history ORDER BY completed LIMIT ?", (excess,)
            )
            batch.add_many("DELETE FROM history WHERE cluster_id = ? AND proc_id = ?", gone)
            batch.add_many("DELETE FROM events WHERE cluster_id = ? AND proc_id = ?", gone)
            batch.add_many(
                "DELETE FROM events WHERE cluster_id = ?1 AND proc_id = -1"
                " AND NOT EXISTS (SELECT 1 FROM jobs WHERE cluster_id = ?1)"
                " AND NOT EXISTS (SELECT 1 FROM history WHERE cluster_id = ?1)",
                [(cluster_id,) for cluster_id in sorted({cluster_id for cluster_id, _ in gone})],
            )
            batch.add(
                "DELETE FROM clusters WHERE cluster_id NOT IN (SELECT cluster_id FROM jobs)"
                " AND cluster_id NOT IN (SELECT cluster_id FROM history)"
            )
        return batch
