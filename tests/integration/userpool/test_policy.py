"""Job policy expressions, evaluated by the pool as HTCondor's schedd does (pool runs them every second)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.pilots import ProtocolPilot, slot_ad
from tests.support.pools import RunningPool
from updraft.core.protocol import Scope


def submit(pool: RunningPool, workdir: Path, user: str, text: str) -> str:
    (workdir / "p.sub").write_text(text)
    result = pool.run("condor_submit", "p.sub", user=user, cwd=workdir)
    assert result.returncode == 0, result.stderr
    return result.lines[-1].split()[-1].rstrip(".")


def wait_for(
    pool: RunningPool,
    job: str,
    user: str,
    attrs: list[str],
    expected: str,
    timeout: float = 15,
    history: bool = False,
) -> str:
    deadline = time.monotonic() + timeout
    tool = "condor_history" if history else "condor_q"
    while True:
        seen = pool.run(tool, job, "-af", *attrs, user=user).stdout.strip()
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.3)


def pilot_for(pool: RunningPool, tag: str) -> ProtocolPilot:
    return ProtocolPilot(
        pool.client(f"pilot-{tag}", Scope.PILOT),
        slot_ad(f"slot@{tag}", START=f'TARGET.PolicyTag =?= "{tag}"'),
    )


def test_periodic_hold_then_release(pool: RunningPool, workdir: Path) -> None:
    cluster = submit(
        pool, workdir, "ann",
        "executable = job.sh\n+PolicyTag = \"phr\"\nperiodic_hold = NumJobStarts == 0 && (time() - QDate) >= 1\n"
        "periodic_hold_reason = \"waited\"\nperiodic_hold_subcode = 9\nperiodic_release = (time() - EnteredCurrentStatus) >= 2\nqueue\n",
    )  # fmt: skip
    assert (
        wait_for(
            pool,
            f"{cluster}.0",
            "ann",
            ["JobStatus", "HoldReasonCode", "HoldReasonSubCode", "HoldReason"],
            "5 3 9 waited",
        )
        == "5 3 9 waited"
    )
    assert wait_for(pool, f"{cluster}.0", "ann", ["JobStatus", "LastHoldReason"], "1 waited") == "1 waited"


def test_user_hold_is_not_periodically_released(pool: RunningPool, workdir: Path) -> None:
    cluster = submit(pool, workdir, "ann", "executable = job.sh\nperiodic_release = true\nqueue\n")
    pool.run("condor_hold", cluster, user="ann")
    time.sleep(2.5)
    assert pool.run("condor_q", f"{cluster}.0", "-af", "JobStatus", user="ann").stdout.strip() == "5"


def test_periodic_remove(pool: RunningPool, workdir: Path) -> None:
    cluster = submit(
        pool, workdir, "ann", "executable = job.sh\nperiodic_remove = (time() - QDate) >= 1\nqueue 2\n"
    )
    assert wait_for(pool, cluster, "ann", ["JobStatus"], "3\n3", history=True) == "3\n3"
    reason = pool.run("condor_history", f"{cluster}.0", "-af", "RemoveReason", user="ann").stdout.strip()
    assert reason.startswith("The job attribute PeriodicRemove expression")


def test_undefined_policy_holds(pool: RunningPool, workdir: Path) -> None:
    cluster = submit(
        pool, workdir, "ann", "executable = job.sh\nperiodic_hold = NoSuchAttribute > 3\nqueue\n"
    )
    assert wait_for(pool, f"{cluster}.0", "ann", ["JobStatus", "HoldReasonCode"], "5 5") == "5 5"


def test_on_exit_hold(pool: RunningPool, workdir: Path) -> None:
    cluster = submit(
        pool,
        workdir,
        "ann",
        'executable = job.sh\n+PolicyTag = "oeh"\non_exit_hold = ExitCode == 3\non_exit_hold_reason = "bad input"\nqueue\n',
    )
    pilot = pilot_for(pool, "oeh")
    match = pilot.take()
    assert pilot.finish(match, exit_code=3).status == 5
    assert (
        pool.run(
            "condor_q", f"{cluster}.0", "-af", "HoldReason", "HoldReasonCode", "ExitCode", user="ann"
        ).stdout.strip()
        == "bad input 3 3"
    )


def test_on_exit_remove_false_requeues_then_max_retries(pool: RunningPool, workdir: Path) -> None:
    cluster = submit(pool, workdir, "ann", 'executable = job.sh\n+PolicyTag = "mr"\nmax_retries = 2\nqueue\n')
    pilot = pilot_for(pool, "mr")
    outcomes = []
    for _ in range(3):
        match = pilot.take()
        assert match is not None
        outcomes.append(pilot.finish(match, exit_code=1).status)
    assert outcomes == [1, 1, 4]  # retried twice, then removed from the queue as completed
    assert (
        pool.run(
            "condor_history", f"{cluster}.0", "-af", "NumJobCompletions", "ExitCode", user="ann"
        ).stdout.strip()
        == "3 1"
    )


def test_signal_exit(pool: RunningPool, workdir: Path) -> None:
    cluster = submit(pool, workdir, "ann", 'executable = job.sh\n+PolicyTag = "sig"\nqueue\n')
    pilot = pilot_for(pool, "sig")
    match = pilot.take()
    assert pilot.finish(match, signal=9).status == 4
    out = pool.run(
        "condor_history", f"{cluster}.0", "-af", "ExitBySignal", "ExitSignal", "ExitCode", user="ann"
    ).stdout.strip()
    assert out == "true 9 undefined"


def test_submitted_on_hold(pool: RunningPool, workdir: Path) -> None:
    cluster = submit(pool, workdir, "ann", "executable = job.sh\nhold = true\nqueue 2\n")
    out = pool.run("condor_q", cluster, "-af", "JobStatus", "HoldReasonCode", user="ann").lines
    assert out == ["5 15", "5 15"]
    assert pool.run("condor_release", cluster, user="ann").returncode == 0
    assert pool.run("condor_q", cluster, "-af", "JobStatus", user="ann").lines == ["1", "1"]
