"""Load: 2,000 long-polling pilots and 100 submissions a second against one pool; and requests
answered while jobs with the costliest expressions the pool accepts are being matched.

The pool is its own process with its defaults (FULL durability); the pilots and the
submitter are bench.load's asyncio driver in this process, sharing the machine's cores
with the pool, as a test of the whole server rather than of the client.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import Result, result, say
from bench.heavy import run_heavy
from bench.load import run_load
from updraft.core.payloads import QueryRequest
from userpool.process import PoolProcess


def run(quick: bool = False) -> list[Result]:
    pilots, rate, seconds = (300, 20.0, 10.0) if quick else (2000, 100.0, 60.0)
    work = Path(tempfile.mkdtemp(prefix="updraft-load-bench-"))
    say(f"load: {pilots} long-polling pilots, {rate:.0f} submissions/s for {seconds:.0f} s")
    with PoolProcess(work / "home") as pool:
        report = run_load(pool.url, (pool.home / "keys" / "signing.key").read_bytes(), pilots, rate, seconds)
        finished = len(pool.client().query(QueryRequest("", ["ProcId"]), history=True).ads)
    figures = {**report.summary(), "in_history": finished}
    say(f"load: {figures}")
    if report.errors:
        say(f"load: first errors: {report.errors[:3]}")
    label = f"{pilots} pilots + {rate:.0f} submits/s"
    heavy_jobs = 300 if quick else 1000
    say(f"load: {heavy_jobs} jobs at the expression budget, matched against 4 new slot shapes")
    with PoolProcess(work / "heavy-home") as pool:
        heavy = run_heavy(
            pool.url, (pool.home / "keys" / "signing.key").read_bytes(), heavy_jobs, 4
        ).summary()
    say(f"load: {heavy}")
    heavy_label = f"{heavy_jobs} heavy-expression jobs being matched"
    return [
        result(f"{heavy_label}: /v1/ping p99", float(heavy["ping_p99_s"]), "s", "<= 0.1", notes=heavy),
        result(f"{heavy_label}: condor_q p99", float(heavy["condor_q_p99_s"]), "s", "<= 0.1"),
        result(f"{label}: API latency p99", figures["latency_p99_s"], "s", "<= 1", notes=figures),
        result(f"{label}: API latency p50", figures["latency_p50_s"], "s"),
        result(f"{label}: errors", len(report.errors), "count", "<= 0"),
        result(f"{label}: jobs not completed", report.submitted - finished, "count", "<= 0"),
        result(f"{label}: submit-to-start p99", figures["submit_to_start_p99_s"], "s"),
    ]
