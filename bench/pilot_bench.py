"""Pilot benchmarks (issue 3): start to first job, throughput of short jobs, submit-to-start latency.

A real pool, the real pilot zipapp on the system interpreter, no batch system in between.
Times come from the pool's own event log (commit times), so the clocks are one clock.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result, result, say
from pilot.build import build
from updraft.core.payloads import QueryRequest, SubmitRequest
from updraft.core.protocol import Scope
from userpool.process import PoolProcess
from userpool.tokens import TokenSigner


def _pilot(pool: PoolProcess, work: Path, bundle: Path, **settings: object) -> subprocess.Popen[bytes]:
    token = work / "pilot.token"
    if not token.exists():
        signer = TokenSigner((pool.home / "keys" / "signing.key").read_bytes())
        token.write_text(signer.issue("bench-pilot", frozenset({Scope.PILOT}), 86400)[0])
    config = {
        "pool": pool.url,
        "token_file": str(token),
        "site": "Bench",
        "entry": "Bench_local",
        "work_dir": str(work / "wn"),
        "poll_wait_s": 20,
        "monitor_interval_s": 1.0,
        **settings,
    }
    (work / "pilot.json").write_text(json.dumps(config))
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    return subprocess.Popen(
        [python, str(bundle), "--config", str(work / "pilot.json")],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "pilot.log", "wb"),
    )


def _submit(pool: PoolProcess, script: Path, count: int, args: str = "") -> int:
    client = pool.client()
    cluster = client.reserve_cluster()
    digest_path = script
    import hashlib

    digest = hashlib.sha256(digest_path.read_bytes()).hexdigest()
    if client.missing_blobs([digest]):
        client.put_blob(digest, digest_path)
    from updraft.core.payloads import SandboxFile

    ad = {
        "Cmd": f'"{script}"',
        "Args": f'"{args}"',
        "RequestCpus": "1",
        "RequestMemory": "64",
        "Requirements": "true",
    }
    client.submit(
        SubmitRequest(
            cluster, ad, [{}] * count, [SandboxFile(script.name, digest, script.stat().st_size, 0o755)]
        )
    )
    return cluster


def _events(pool: PoolProcess, kind: str) -> list:
    client = pool.client()
    out, after = [], 0
    while True:
        batch = client.events(after, 10000)
        if not batch:
            return out
        out += [e for e in batch if e.type == kind]
        after = batch[-1].id


def run(quick: bool = False) -> list[Result]:
    work = Path(tempfile.mkdtemp(prefix="updraft-pilot-bench-"))
    bundle = work / "updraft-pilot.pyz"
    build(bundle)
    script = work / "sleep.sh"
    script.write_text("#!/bin/sh\nsleep ${1:-0}\n")
    script.chmod(0o755)
    results: list[Result] = []
    with PoolProcess(work / "home", ["--synchronous", "NORMAL"]) as pool:
        # -- start to first job ---------------------------------------------------------------
        say("pilot: start to first job running")
        _submit(pool, script, 1, "0")
        launched = time.time()
        first = _pilot(pool, work, bundle, tail_timeout_s=1, idle_timeout_s=30)
        first.wait(timeout=120)
        executes = _events(pool, "execute")
        start_s = executes[0].time - launched
        results.append(result("pilot start to first job running", start_s, "s", "<= 3"))

        # -- throughput ---------------------------------------------------------------------------
        count = 100 if quick else 1000
        say(f"pilot: {count} one-second jobs through one 2-core pilot")
        cluster = _submit(pool, script, count, "1")
        pilot = _pilot(pool, work, bundle, cpus="2", tail_timeout_s=2, idle_timeout_s=60)
        pilot.wait(timeout=count * 2 + 120)
        history = pool.client().query(QueryRequest(f"ClusterId == {cluster}", ["ExitCode"]), history=True).ads
        done = sum(1 for ad in history if ad.get("ExitCode") == "0")
        starts = [e.time for e in _events(pool, "match") if e.cluster_id == cluster]
        ends = [e.time for e in _events(pool, "complete") if e.cluster_id == cluster]
        makespan = max(ends) - min(starts)
        efficiency = count * 1.0 / (2 * makespan)
        results.append(
            result(
                f"{count} one-second jobs, one 2-core pilot: efficiency",
                efficiency * 100,
                "%",
                ">= 95",
                notes={"makespan_s": round(makespan, 2), "completed": done},
            )
        )

        # -- submit to start on an idle pilot -------------------------------------------------
        samples = 30 if quick else 100
        say(f"pilot: submit-to-start latency, {samples} jobs one at a time on an idle pilot")
        idle = _pilot(pool, work, bundle, cpus="1", tail_timeout_s=600, idle_timeout_s=600)
        time.sleep(2.0)  # validated and long-polling
        latencies = []
        for _ in range(samples):
            cluster = _submit(pool, script, 1, "0")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                done_events = [
                    e
                    for e in pool.client().events(0, 10000)
                    if e.cluster_id == cluster and e.type in ("submit", "execute")
                ]
                if len(done_events) == 2:
                    break
                time.sleep(0.05)
            submit_time = next(e.time for e in done_events if e.type == "submit")
            execute_time = next(e.time for e in done_events if e.type == "execute")
            latencies.append(execute_time - submit_time)
        idle.terminate()
        idle.wait(timeout=60)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    results.append(result("submit-to-start on an idle pilot, p50", p50, "s", "<= 0.2"))
    results.append(result("submit-to-start on an idle pilot, p99", p99, "s", "<= 1"))
    return results
