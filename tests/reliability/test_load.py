"""Many long-polling pilots and a steady stream of submissions: no errors, no job left behind.

Bounded in time and count (300 pilots, 30 submissions a second for 8 s); the full-size run
with its latency target (2,000 pilots, 100 a second, p99 <= 1 s) is `python -m bench --only load`.
"""

from __future__ import annotations

from bench.load import run_load
from tests.support.pools import RunningPool
from updraft.core.payloads import QueryRequest


def test_pilots_and_submissions_under_load(fresh_pool: RunningPool) -> None:
    report = run_load(fresh_pool.url, (fresh_pool.home / "keys" / "signing.key").read_bytes(), 300, 30.0, 8.0)
    print(report.summary())
    assert report.errors == []
    assert report.submitted >= 200 and report.completed == report.submitted
    history = fresh_pool.client().query(QueryRequest("", ["ProcId"]), history=True).ads
    assert len(history) == report.submitted
    assert fresh_pool.client().query(QueryRequest("", ["ProcId"])).ads == []
