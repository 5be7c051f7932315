"""Pool benchmarks (issue 2): ingest of a 100,000-job cluster, queries over a million jobs, matchmaking."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from bench.common import Result, anchor_python, result, rss_mb, run_cli, say, timer
from updraft.core.payloads import QueryRequest, SubmitRequest
from userpool.process import PoolProcess

INGEST_SUBMIT = """\
executable     = job.sh
arguments      = $(Process) --input data_$(Process).root
output         = out/job.$(Cluster).$(Process).out
error          = out/job.$(Cluster).$(Process).err
log            = jobs.log
request_memory = 1 GB
+DESIRED_Sites = "UCSD,Nebraska"
queue {count}
"""

ANCHOR_SCRIPT = """
import sys, time, warnings
warnings.filterwarnings("ignore")
import htcondor
text = open(sys.argv[1]).read()
start = time.perf_counter()
count = sum(1 for _ in htcondor.Submit(text).jobs(clusterid=1))
print(count, time.perf_counter() - start)
"""


def ingest(work: Path, count: int) -> list[Result]:
    (work / "job.sh").write_text("#!/bin/sh\necho $1\n")
    (work / "job.sh").chmod(0o755)
    (work / "ingest.sub").write_text(INGEST_SUBMIT.format(count=count))
    say(f"ingest: anchor (htcondor {anchor_python().parent.parent.name}) Submit.jobs() on {count} procs")
    anchor_out = subprocess.run(
        [str(anchor_python()), "-c", ANCHOR_SCRIPT, str(work / "ingest.sub")],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    anchor_seconds = float(anchor_out[1])
    with PoolProcess(work / "ingest-home", ["--synchronous", "FULL"]) as pool:
        env = pool.environment()
        say(f"ingest: condor_submit of {count} procs to a running pool")
        with timer() as took:
            out = run_cli(["condor_submit", "ingest.sub"], env, work)
        seconds = took[0]
        assert f"{count} job(s) submitted" in out.stdout, out.stdout
        pool.kill()  # durable means it survives a kill -9 right after the acknowledgement
        pool.start()
        queued = pool.client().query(QueryRequest("", [], [], [], 0, True, True)).totals or {}
    assert queued.get("idle") == count, f"only {queued} after kill -9"
    return [
        result(
            f"ingest: condor_submit {count:,} jobs, durable",
            seconds,
            "s",
            "<= 5",
            anchor=round(anchor_seconds, 3),
            anchor_label="htcondor 24 Submit.jobs() in-process, same file",
            notes={"jobs_per_s": round(count / seconds), "vs_anchor": round(seconds / anchor_seconds, 3)},
        )
    ]


def queries(work: Path, total: int) -> list[Result]:
    with PoolProcess(work / "query-home", ["--synchronous", "NORMAL"]) as pool:
        client = pool.client()
        say(f"queries: filling the queue with {total:,} jobs")
        bulk_clusters = 10
        per_cluster = (total - 1000) // bulk_clusters
        for index in range(bulk_clusters):
            cluster = client.reserve_cluster()
            ad = {
                "Cmd": '"/bin/sleep"',
                "Args": '"60"',
                "RequestMemory": str(1000 + index),
                "JobBatchName": f'"bulk{index}"',
            }
            client.submit(SubmitRequest(cluster, ad, [{}] * per_cluster))
        cluster = client.reserve_cluster()
        client.submit(
            SubmitRequest(
                cluster,
                {"Cmd": '"/bin/true"', "Analysis": '"higgs"'},
                [{"Args": f'"{p}"'} for p in range(1000)],
            )
        )
        env = pool.environment()
        for _ in range(2):  # warm up the CLI's imports
            run_cli(["condor_q", "-totals"], env)
        with timer() as totals_took:
            totals = run_cli(["condor_q", "-totals"], env).stdout
        assert f"{bulk_clusters * per_cluster + 1000} jobs" in totals, totals
        with timer() as af_took:
            lines = run_cli(
                [
                    "condor_q",
                    "-constraint",
                    'Analysis == "higgs" && JobStatus == 1',
                    "-af",
                    "ClusterId",
                    "ProcId",
                    "Args",
                ],
                env,
            ).stdout
        assert len(lines.splitlines()) == 1000
        with timer() as proc_took:
            lines = run_cli(
                [
                    "condor_q",
                    "-constraint",
                    "RequestMemory == 1005 && ProcId < 100",
                    "-af",
                    "ClusterId",
                    "ProcId",
                ],
                env,
            ).stdout
        assert len(lines.splitlines()) == 100
        assert pool.process is not None
        memory = rss_mb(pool.process.pid)
        with timer() as restart_took:
            pool.stop()
            pool.start()
    jobs = bulk_clusters * per_cluster + 1000
    return [
        result(f"condor_q -totals, {jobs:,} jobs queued", totals_took[0], "s", "<= 1"),
        result(f"condor_q -constraint (1,000 of {jobs:,}) -af", af_took[0], "s", "<= 1"),
        result(f"condor_q -constraint with ProcId (100 of {jobs:,}) -af", proc_took[0], "s", "<= 1"),
        result(f"pool RSS with {jobs:,} jobs", memory, "MB", "<= 2048"),
        result(f"pool restart (load {jobs:,} jobs from disk)", restart_took[0], "s"),
    ]


def run(quick: bool = False) -> list[Result]:
    work = Path(tempfile.mkdtemp(prefix="updraft-bench-"))
    (work / "out").mkdir()
    results = ingest(work, 10_000 if quick else 100_000)
    results += queries(work, 100_000 if quick else 1_000_000)
    from bench import matchmaking

    results += matchmaking.run(quick)
    return results
