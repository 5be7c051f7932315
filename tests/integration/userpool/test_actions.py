"""condor_rm/hold/release/suspend/continue: HTCondor's sentences and exit statuses."""

from __future__ import annotations

from pathlib import Path

from tests.support.pilots import ProtocolPilot, slot_ad
from tests.support.pools import RunningPool
from updraft.core.protocol import PilotCommand, Scope


def submit(pool: RunningPool, workdir: Path, user: str, text: str = "executable = job.sh\nqueue 3\n") -> str:
    (workdir / "job.sub").write_text(text)
    result = pool.run("condor_submit", "job.sub", user=user, cwd=workdir)
    assert result.returncode == 0, result.stderr
    return result.lines[-1].split()[-1].rstrip(".")


def statuses(pool: RunningPool, cluster: str, user: str) -> list[str]:
    return pool.run("condor_q", cluster, "-af", "JobStatus", user=user).lines


def test_hold_release_remove(pool: RunningPool, workdir: Path) -> None:
    cluster = submit(pool, workdir, "henry")
    held = pool.run("condor_hold", f"{cluster}.1", user="henry")
    assert (held.returncode, held.stdout.strip()) == (0, f"Job {cluster}.1 held")
    assert statuses(pool, cluster, "henry") == ["1", "5", "1"]
    reason = pool.run(
        "condor_q", f"{cluster}.1", "-af", "HoldReason", "HoldReasonCode", user="henry"
    ).stdout.strip()
    assert reason == "via condor_hold (by user henry) 1"
    again = pool.run("condor_hold", f"{cluster}.1", user="henry")
    assert again.returncode == 1 and "already held" in again.stderr
    released = pool.run("condor_release", cluster, user="henry")
    assert released.returncode == 1  # two of the three were not held: said so, and exit 1 like HTCondor
    assert f"Job {cluster}.0 not released: job is not held" in released.stderr
    assert statuses(pool, cluster, "henry") == ["1", "1", "1"]
    hold_all = pool.run("condor_hold", "-reason", "maintenance", cluster, user="henry")
    assert hold_all.stdout.strip() == f"All jobs in cluster {cluster} have been held"
    assert (
        pool.run("condor_q", f"{cluster}.2", "-af", "HoldReason", user="henry").stdout.strip()
        == "maintenance"
    )
    removed = pool.run("condor_rm", cluster, user="henry")
    assert removed.stdout.strip() == f"All jobs in cluster {cluster} have been marked for removal"
    assert statuses(pool, cluster, "henry") == []
    history = pool.run("condor_history", cluster, "-af", "ProcId", "JobStatus", "RemoveReason", user="henry")
    assert sorted(history.lines) == [f"{p} 3 via condor_rm (by user henry)" for p in range(3)]


def test_unknown_jobs_and_other_users(pool: RunningPool, workdir: Path) -> None:
    cluster = submit(pool, workdir, "ivy")
    missing = pool.run("condor_rm", "999999.0", user="ivy")
    assert missing.returncode == 1 and "Job 999999.0 not found" in missing.stderr
    stolen = pool.run("condor_rm", f"{cluster}.0", user="jack")
    assert stolen.returncode == 1 and "not owner" in stolen.stderr
    assert statuses(pool, cluster, "ivy") == ["1", "1", "1"]
    by_user = pool.run("condor_hold", "ivy", user="jack")
    assert by_user.returncode == 1
    mine = pool.run("condor_hold", "-all", user="ivy")
    assert (
        mine.returncode == 0 and mine.stdout.strip() == "All jobs have been held"
    )  # HTCondor's -all wording
    named = pool.run("condor_release", "ivy", user="ivy")  # ... and for a user named
    assert named.returncode == 0 and named.stdout.strip() == 'All jobs of user "ivy" have been released'
    admin = pool.run("condor_rm", "-constraint", 'Owner == "ivy"')  # the pool's local token is an admin
    assert admin.returncode == 0, admin.stderr
    assert statuses(pool, cluster, "ivy") == []


def test_suspend_and_continue_reach_the_pilot(pool: RunningPool, workdir: Path) -> None:
    cluster = submit(pool, workdir, "kate", "executable = job.sh\n+SuspendTest = true\nqueue 1\n")
    pilot = ProtocolPilot(
        pool.client("pilot-sc", Scope.PILOT), slot_ad("slot@suspend", START="TARGET.SuspendTest =?= true")
    )
    match = pilot.take()
    assert match is not None and match.job_id == f"{cluster}.0"
    idle = pool.run("condor_suspend", f"{cluster}.0", user="kate")
    assert idle.returncode == 0 and idle.stdout.strip() == f"Job {cluster}.0 suspended"
    assert statuses(pool, cluster, "kate") == ["7"]
    commands = pilot.poll().commands
    assert [(c.claim_id, c.command) for c in commands] == [(match.claim_id, PilotCommand.SUSPEND.value)]
    assert pool.run("condor_continue", f"{cluster}.0", user="kate").returncode == 0
    assert statuses(pool, cluster, "kate") == ["2"]
    assert [c.command for c in pilot.poll().commands] == [PilotCommand.CONTINUE.value]
    not_suspended = pool.run("condor_continue", f"{cluster}.0", user="kate")
    assert not_suspended.returncode == 1 and "not suspended" in not_suspended.stderr
    pool.run("condor_rm", cluster, user="kate")
    assert [c.command for c in pilot.poll().commands] == [PilotCommand.KILL.value]


def test_usage_errors(pool: RunningPool) -> None:
    result = pool.run("condor_rm", user="kate")
    assert result.returncode == 2 and "say which jobs" in result.stderr
