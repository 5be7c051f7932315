"""kill -9 of the pool at any moment loses no acknowledged job and leaves no half cluster."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

from tests.support.accounts import IDENTITY_MAP
from tests.support.pilots import ProtocolPilot, slot_ad
from tests.support.pools import FAST, RunningPool
from updraft.core.client import Client, ClientError, PoolUnreachable
from updraft.core.payloads import QueryRequest, SubmitRequest
from updraft.core.protocol import Scope
from userpool.process import PoolProcess

PROCS = 5


def test_kill9_during_submissions(fresh_pool: RunningPool) -> None:
    pool = fresh_pool
    token = pool.token("stress")
    acknowledged: list[int] = []
    stop = threading.Event()
    errors: list[str] = []

    def submitter() -> None:
        while not stop.is_set():
            try:
                client = Client.from_environment(token=token, home=pool.home, timeout=5)
                cluster = client.reserve_cluster()
                ad = {"Cmd": '"/bin/true"', "Args": f'"{cluster}"'}
                result = client.submit(SubmitRequest(cluster, ad, [{}] * PROCS))
                acknowledged.append(result.cluster_id)
            except (PoolUnreachable, ClientError, OSError, ValueError, KeyError) as exc:
                errors.append(type(exc).__name__)
                time.sleep(0.05)

    thread = threading.Thread(target=submitter, daemon=True)
    thread.start()
    rng = random.Random(7)
    for _ in range(4):
        time.sleep(rng.uniform(0.3, 1.2))
        pool.kill()
        pool.process.start()
    time.sleep(0.5)
    stop.set()
    thread.join(timeout=30)
    assert len(acknowledged) > 10, "the load never got going"
    ads = pool.client().query(QueryRequest("", ["ClusterId", "ProcId"])).ads
    per_cluster: dict[int, int] = {}
    for ad in ads:
        per_cluster[int(ad["ClusterId"])] = per_cluster.get(int(ad["ClusterId"]), 0) + 1
    lost = [c for c in acknowledged if per_cluster.get(c) != PROCS]
    assert not lost, f"acknowledged clusters lost or incomplete: {lost}"
    partial = {c: n for c, n in per_cluster.items() if n != PROCS}
    assert not partial, f"half-committed clusters: {partial}"


def test_state_survives_restart(fresh_pool: RunningPool, workdir: Path) -> None:
    pool = fresh_pool
    (workdir / "j.sub").write_text("executable = job.sh\njob_lease_duration = 600\nqueue 3\n")
    cluster = pool.run("condor_submit", "j.sub", user="rita", cwd=workdir).lines[-1].split()[-1].rstrip(".")
    pool.run("condor_hold", f"{cluster}.1", user="rita")
    pilot = ProtocolPilot(pool.client("survivor", Scope.PILOT), slot_ad("slot@survivor"))
    match = pilot.take()
    assert match is not None and match.job_id == f"{cluster}.0"
    pool.kill()
    pool.process.start()
    pilot.client = pool.client("survivor", Scope.PILOT)
    assert pool.run("condor_q", cluster, "-af", "ProcId", "JobStatus", user="rita").lines == [
        "0 2",
        "1 5",
        "2 1",
    ]
    pilot.poll(max_matches=0)  # the claim is still known: a heartbeat keeps it
    assert pilot.finish(match, exit_code=0).status == 4
    events = pool.run("updraft", "logging-info", f"{cluster}.0", user="rita").stdout
    assert "submit" in events and "match" in events and "complete" in events
    next_cluster = pool.client("rita").reserve_cluster()
    assert next_cluster > int(cluster)


def test_output_delivery_cut_short_by_a_crash_is_resumed(tmp_path: Path, workdir: Path) -> None:
    """The completion is durable, the copy to the submit directory is not yet made: kill, restart."""
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "identity.map").write_text(IDENTITY_MAP)
    process = PoolProcess(
        tmp_path / "pool", FAST, env={**os.environ, "UPDRAFT_FAILPOINTS": "pool.before_delivery=exit@1"}
    )
    pool = RunningPool(process.start())
    try:
        cluster = pool.submit("executable = job.sh\noutput = job.out\nqueue\n", "ola", workdir)
        pilot = ProtocolPilot(pool.client("pilot-o", Scope.PILOT), slot_ad("slot@o"))
        match = pilot.take()
        assert match is not None
        try:
            pilot.finish(match, exit_code=0, stdout="made it\n")
        except (PoolUnreachable, ClientError):
            pass  # the pool may die before it answers the report: the completion is already durable
        assert process.process.wait(timeout=30) == 137
        assert not (workdir / "job.out").exists()
        process.env = None
        process.start()
        deadline = time.monotonic() + 20
        while not (workdir / "job.out").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (workdir / "job.out").read_text() == "made it\n"
        assert pool.job(cluster, "ExitCode", user="ola", history=True) == "0"
        events = [e.type for e in pool.client().events(0, 1000) if e.cluster_id == int(cluster)]
        assert events.count("complete") == 1 and events.count("output_delivered") == 1
    finally:
        pool.stop()


def test_user_log_after_a_crash_neither_loses_nor_repeats_events(tmp_path: Path, workdir: Path) -> None:
    """Killed just after appending to a user log and before recording it: the restart writes nothing twice."""
    import htcondor2

    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "identity.map").write_text(IDENTITY_MAP)
    process = PoolProcess(
        tmp_path / "pool", FAST, env={**os.environ, "UPDRAFT_FAILPOINTS": "pool.after_userlog_append=exit@2"}
    )
    pool = RunningPool(process.start())
    log = workdir / "crash.log"

    def kinds() -> list[int]:
        return [e.type for e in htcondor2.JobEventLog(str(log)).events(stop_after=0)] if log.exists() else []

    try:
        cluster = pool.submit("executable = job.sh\nlog = crash.log\nqueue\n", "ola", workdir)
        try:
            pool.run("condor_hold", cluster, user="ola", timeout=30)  # its 012 is the second append: exit
        except Exception:
            pass
        assert process.process.wait(timeout=30) == 137
        assert kinds() == [htcondor2.JobEventType.SUBMIT, htcondor2.JobEventType.JOB_HELD]
        process.env = None
        process.start()
        assert pool.run("condor_release", cluster, user="ola").returncode == 0
        deadline = time.monotonic() + 20
        while len(kinds()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        assert kinds() == [
            htcondor2.JobEventType.SUBMIT,
            htcondor2.JobEventType.JOB_HELD,
            htcondor2.JobEventType.JOB_RELEASED,
        ]
    finally:
        pool.stop()
