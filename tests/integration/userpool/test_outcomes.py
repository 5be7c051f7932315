"""What became of the jobs (issue 17): /metrics' counters and histograms and the monitor's users and groups."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from tests.support.accounts import give_to_job_account
from tests.support.factories import wait_for
from tests.support.pilots import ProtocolPilot, slot_ad
from tests.support.pools import start_pool
from updraft.core.protocol import Scope


def scrape(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_completed_failed_removed_and_held_jobs_queue_waits_and_first_jobs_are_counted(
    tmp_path: Path,
) -> None:
    pool = start_pool(tmp_path / "pool")
    work = tmp_path / "work"
    work.mkdir()
    give_to_job_account(work)
    try:
        pool.submit("executable = /bin/true\nqueue 2\n", "alice", work, "ok.sub")
        pool.submit("executable = /bin/true\naccounting_group = group_cms\nqueue 1\n", "bob", work, "bad.sub")
        gone = pool.submit("executable = /bin/true\nqueue 1\n", "alice", work, "gone.sub")
        held = pool.submit("executable = /bin/true\nqueue 1\n", "alice", work, "held.sub")
        assert pool.run("condor_rm", gone, user="alice").returncode == 0
        assert pool.run("condor_hold", held, user="alice").returncode == 0
        started = int(time.time()) - 30
        pilot = ProtocolPilot(
            pool.client("pilot", Scope.PILOT), slot_ad("slot1@w1", DaemonStartTime=str(started))
        )
        for _ in range(3):
            match = wait_for(lambda: pilot.take(0.5), 30)
            pilot.finish(match, 3 if match.job_ad.get("AcctGroup") else 0)
        wait_for(lambda: scrape(pool.url).get("updraft_pool_jobs_completed_total") == 3, 10)
        metrics = scrape(pool.url)
        snapshot = json.loads(urllib.request.urlopen(f"{pool.url}/v1/monitor", timeout=10).read())
    finally:
        pool.stop()
    assert metrics["updraft_pool_jobs_failed_total"] == 1 and metrics["updraft_pool_jobs_removed_total"] == 1
    assert metrics["updraft_pool_jobs_held_total"] == 1
    assert metrics["updraft_pool_job_queue_wait_seconds_count"] == 3
    assert metrics['updraft_pool_job_queue_wait_seconds_bucket{le="+Inf"}'] == 3
    assert metrics["updraft_pool_pilot_first_job_seconds_count"] == 1  # one pilot, its first job only
    assert metrics['updraft_pool_pilot_first_job_seconds_bucket{le="10"}'] == 0
    assert metrics['updraft_pool_pilot_first_job_seconds_bucket{le="60"}'] == 1
    users = {row["user"]: row for row in snapshot["users"]}
    assert users["alice"]["completed"] == 2 and users["alice"]["removed"] == 1 and users["alice"]["held"] == 1
    assert users["bob"]["failed"] == 1 and users["bob"]["priority"] is not None
    assert snapshot["groups"] == [
        {
            "group": "group_cms",
            "idle": 0,
            "running": 0,
            "completed": 1,
            "failed": 1,
            "priority": snapshot["groups"][0]["priority"],
        }
    ]
    assert snapshot["outcomes"] == {"completed": 3, "failed": 1, "removed": 1, "held": 1}
