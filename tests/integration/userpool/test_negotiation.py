"""Matchmaking through the pilot protocol: both ways, fair share, priorities, long polls, leases."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.support.pilots import ProtocolPilot, slot_ad
from tests.support.pools import RunningPool, start_pool
from updraft.core.client import ClientError
from updraft.core.payloads import ClaimReport
from updraft.core.protocol import Scope


def submit(pool: RunningPool, workdir: Path, user: str, text: str) -> str:
    (workdir / f"{user}.sub").write_text(text)
    result = pool.run("condor_submit", f"{user}.sub", user=user, cwd=workdir)
    assert result.returncode == 0, result.stderr
    return result.lines[-1].split()[-1].rstrip(".")


def pilot(pool: RunningPool, name: str, **slot: object) -> ProtocolPilot:
    return ProtocolPilot(pool.client(f"pilot-{name}", Scope.PILOT), slot_ad(f"slot@{name}", **slot))


def test_match_both_ways(fresh_pool: RunningPool, workdir: Path) -> None:
    pool = fresh_pool
    cluster = submit(
        pool,
        workdir,
        "amy",
        'executable = job.sh\nrequirements = TARGET.GLIDEIN_Site == "UCSD"\nrequest_memory = 3000\nqueue\n',
    )
    assert pilot(pool, "wrongsite", site="Nebraska", memory_mb=8000).take(0.2) is None
    assert pilot(pool, "small", site="UCSD", memory_mb=1000).take(0.2) is None
    assert (
        pilot(pool, "picky", site="UCSD", memory_mb=8000, START='TARGET.Owner == "nobody"').take(0.2) is None
    )
    match = pilot(pool, "good", site="UCSD", memory_mb=8000).take()
    assert match is not None and match.job_id == f"{cluster}.0"
    assert match.request_memory_mb == 3000 and match.lease_s == 2400
    info = pool.run(
        "condor_q",
        f"{cluster}.0",
        "-af",
        "JobStatus",
        "RemoteHost",
        "NumJobStarts",
        "MATCH_EXP_JOB_GLIDEIN_Site",
        user="amy",
    )
    assert info.stdout.strip() == "2 slot@good 1 UCSD"


def test_partitionable_slot_takes_several(fresh_pool: RunningPool, workdir: Path) -> None:
    pool = fresh_pool
    submit(pool, workdir, "bea", "executable = job.sh\nrequest_cpus = 2\nrequest_memory = 1000\nqueue 5\n")
    big = pilot(pool, "big", cpus=4, memory_mb=4000)
    result = big.poll(max_matches=10)
    assert len(result.matches) == 2  # 4 cores / 2 per job
    assert all(m.request_cpus == 2 for m in result.matches)


def test_priority_and_age_order(fresh_pool: RunningPool, workdir: Path) -> None:
    pool = fresh_pool
    low = submit(pool, workdir, "cal", "executable = job.sh\npriority = 0\nqueue 2\n")
    high = submit(pool, workdir, "cal", "executable = job.sh\npriority = 10\nqueue 2\n")
    taken = [pilot(pool, f"p{i}").take().job_id for i in range(4)]
    assert taken == [f"{high}.0", f"{high}.1", f"{low}.0", f"{low}.1"]


def test_fair_share_between_users(fresh_pool: RunningPool, workdir: Path) -> None:
    pool = fresh_pool
    submit(pool, workdir, "dan", "executable = job.sh\nqueue 20\n")
    submit(pool, workdir, "eve", "executable = job.sh\nqueue 20\n")
    owners = []
    for i in range(10):
        match = pilot(pool, f"fs{i}").take()
        owners.append(pool.run("condor_q", match.job_id, "-af", "Owner", user="dan").stdout.strip())
    assert owners.count("dan") == 5 and owners.count("eve") == 5
    prio = pool.run("condor_userprio", "-json")
    rows = {row["submitter"]: row for row in __import__("json").loads(prio.stdout)}
    assert rows["dan"]["in_use_cpus"] == 5 and rows["eve"]["in_use_cpus"] == 5


def test_long_poll_wakes_on_submit(fresh_pool: RunningPool, workdir: Path) -> None:
    pool = fresh_pool
    waiting = pilot(pool, "waiter")
    found: list[object] = []

    def wait() -> None:
        found.append(waiting.take(wait_s=20))

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    submit(pool, workdir, "fay", "executable = job.sh\nqueue\n")
    thread.join(timeout=20)
    assert found and found[0] is not None
    assert time.monotonic() - started < 5


def test_lease_expiry_returns_the_job(fresh_pool: RunningPool, workdir: Path) -> None:
    pool = fresh_pool
    cluster = submit(pool, workdir, "gus", "executable = job.sh\n+JobLeaseDuration = 10\nqueue\n")
    dying = pilot(pool, "dying")
    match = dying.take()
    assert match is not None and match.lease_s == 10
    dying.drop(match)  # the pilot dies: no more heartbeats
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = pool.run(
            "condor_q", f"{cluster}.0", "-af", "JobStatus", "NumJobStarts", user="gus"
        ).stdout.strip()
        if status.startswith("1 "):
            break
        time.sleep(0.5)
    assert status == "1 1"
    events = pool.run("updraft", "logging-info", f"{cluster}.0", user="gus").stdout
    assert "lease_expired" in events
    with pytest.raises(ClientError) as refused:
        dying.client.report(
            match.claim_id,
            __import__("updraft.core.payloads", fromlist=["ClaimReport"]).ClaimReport("started"),
        )
    assert refused.value.status == 409
    second = pilot(pool, "second").take()
    assert second is not None and second.job_id == f"{cluster}.0"
    assert pool.run("condor_q", f"{cluster}.0", "-af", "NumJobStarts", user="gus").stdout.strip() == "2"


def test_heartbeat_keeps_the_lease(fresh_pool: RunningPool, workdir: Path) -> None:
    pool = fresh_pool
    cluster = submit(pool, workdir, "hal", "executable = job.sh\n+JobLeaseDuration = 10\nqueue\n")
    alive = pilot(pool, "alive")
    match = alive.take()
    for _ in range(13):  # 13 s: past the 10-s lease, which the pool looks at every second
        time.sleep(1)
        alive.poll(max_matches=0)
    assert pool.run("condor_q", f"{cluster}.0", "-af", "JobStatus", user="hal").stdout.strip() == "2"
    assert alive.finish(match, exit_code=0).status == 4


def test_exit_report_hands_over_the_next_job(fresh_pool: RunningPool, workdir: Path) -> None:
    """Claim reuse: an exit report with the slot as it is afterwards is answered with the next job."""
    pool = fresh_pool
    cluster = submit(pool, workdir, "ria", "executable = job.sh\nqueue 3\n")
    worker = pilot(pool, "reuse")
    first = worker.take()
    assert first is not None
    worker.client.report(first.claim_id, ClaimReport("started"))
    answer = worker.client.report(first.claim_id, ClaimReport("exited", exit_code=0, slot_ad=worker.slot))
    assert answer.status == 4
    (second,) = answer.matches
    assert second.job_id != first.job_id and second.job_id.startswith(f"{cluster}.")
    assert pool.job(second.job_id, "JobStatus", user="ria") == "2"  # claimed, without a poll
    worker.client.report(second.claim_id, ClaimReport("started"))
    closed = dict(worker.slot, START="false")  # a pilot that takes no more says so: no next job
    answer = worker.client.report(second.claim_id, ClaimReport("exited", exit_code=0, slot_ad=closed))
    assert answer.matches == []
    # the third job is still idle, for the next poll
    assert pool.run("condor_q", cluster, "-af", "JobStatus", user="ria").stdout.split() == ["1"]


def test_a_claim_whose_answer_was_lost_runs_again(tmp_path: Path, workdir: Path) -> None:
    """A pilot that never heard of a claim (the poll's answer was lost) does not list it: the
    pool gives the job back at once instead of waiting for the lease (40 min by default)."""
    home = tmp_path / "pool"
    home.mkdir()
    (home / "pool.yaml").write_text("forgotten_claim_s: 1\n")
    pool = start_pool(home)
    try:
        cluster = submit(pool, workdir, "liv", "executable = job.sh\nqueue\n")
        worker = pilot(pool, "lossy")
        lost = worker.take()
        assert lost is not None
        worker.drop(lost)  # the answer never arrived
        time.sleep(1.5)
        worker.poll(max_matches=0)
        assert pool.job(f"{cluster}.0", "JobStatus", user="liv") == "1"
        kinds = [e.type for e in pool.client().events(0, 1000) if e.cluster_id == int(cluster)]
        assert kinds[-1] == "claim_forgotten"
        again = worker.take()
        assert again is not None and again.job_id == lost.job_id and again.claim_id != lost.claim_id
        worker.poll(max_matches=0)  # it lists the new claim: nothing is taken from it
        assert pool.job(f"{cluster}.0", "JobStatus", user="liv") == "2"
    finally:
        pool.stop()
