"""The user log (``log = x.log``): HTCondor's event log format, read back by htcondor2.JobEventLog,
written as the job's owner, followed by condor_wait; and condor_qedit's and condor_rm's words."""

from __future__ import annotations

import os
import time
from pathlib import Path

import htcondor2

from tests.support.accounts import IS_ROOT, JOB_ACCOUNT
from tests.support.pilots import ProtocolPilot, slot_ad
from tests.support.pools import RunningPool
from updraft.core.protocol import Scope


def pilot_for(pool: RunningPool, tag: str) -> ProtocolPilot:
    return ProtocolPilot(
        pool.client(f"pilot-{tag}", Scope.PILOT), slot_ad(f"slot1@{tag}", START=f'TARGET.LogTag =?= "{tag}"')
    )


def events_of(path: Path, timeout: float = 10.0, count: int = 1) -> list[htcondor2.JobEvent]:
    """The log's events once at least ``count`` are there (the pool writes them just after committing)."""
    deadline = time.monotonic() + timeout
    while True:
        found = list(htcondor2.JobEventLog(str(path)).events(stop_after=0)) if path.exists() else []
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_job_s_log_reads_back_event_by_event(pool: RunningPool, workdir: Path) -> None:
    cluster = pool.submit(
        'executable = job.sh\nlog = analysis.log\n+LogTag = "ok"\njob_ad_information_attrs = Owner\nqueue\n',
        "ulla", workdir,
    )  # fmt: skip
    log = workdir / "analysis.log"
    assert [e.type for e in events_of(log, count=2)] == [
        htcondor2.JobEventType.SUBMIT,
        htcondor2.JobEventType.JOB_AD_INFORMATION,
    ]
    pilot = pilot_for(pool, "ok")
    match = pilot.take()
    assert match is not None
    pilot.finish(match, exit_code=3)
    events = events_of(log, count=8)
    kinds = [e.type for e in events if e.type != htcondor2.JobEventType.JOB_AD_INFORMATION]
    assert kinds.pop(2) == htcondor2.JobEventType.IMAGE_SIZE  # the job's size, just before its end
    assert kinds == [
        htcondor2.JobEventType.SUBMIT,
        htcondor2.JobEventType.EXECUTE,
        htcondor2.JobEventType.JOB_TERMINATED,
    ]
    terminated = next(e for e in events if e.type == htcondor2.JobEventType.JOB_TERMINATED)
    assert (terminated.cluster, terminated.proc) == (int(cluster), 0)
    assert terminated["TerminatedNormally"] is True and terminated["ReturnValue"] == 3
    assert terminated["RunRemoteUsage"].startswith("Usr 0 00:00:01")
    information = [e for e in events if e.type == htcondor2.JobEventType.JOB_AD_INFORMATION]
    assert information[-1]["Owner"] == "ulla" and information[-1]["TriggerEventTypeNumber"] == 5
    if IS_ROOT:  # written as the job's owner, never as the pool
        import pwd

        assert log.stat().st_uid == pwd.getpwnam(JOB_ACCOUNT).pw_uid
    done = pool.run("condor_wait", "-wait", "20", str(log), user="ulla")
    assert (done.returncode, done.stdout.strip()) == (0, "All jobs done.")


def test_hold_release_remove_and_many_clusters_in_one_log(pool: RunningPool, workdir: Path) -> None:
    text = 'executable = job.sh\nlog = shared.log\n+LogTag = "never"\nqueue\n'
    first = pool.submit(text, "ulla", workdir)
    second = pool.submit(text, "ulla", workdir, name="second.sub")
    assert pool.run("condor_hold", first, user="ulla").returncode == 0
    assert pool.run("condor_release", first, user="ulla").returncode == 0
    assert pool.run("condor_rm", first, user="ulla").returncode == 0
    log = workdir / "shared.log"
    events = events_of(log, count=5)
    mine = [(e.cluster, e.type) for e in events]
    assert (int(second), htcondor2.JobEventType.SUBMIT) in mine
    of_first = [t for c, t in mine if c == int(first)]
    assert of_first == [
        htcondor2.JobEventType.SUBMIT, htcondor2.JobEventType.JOB_HELD,
        htcondor2.JobEventType.JOB_RELEASED, htcondor2.JobEventType.JOB_ABORTED,
    ]  # fmt: skip
    held = next(e for e in events if e.type == htcondor2.JobEventType.JOB_HELD)
    assert held["HoldReasonCode"] == 1 and "condor_hold" in held["HoldReason"]
    assert "condor_rm" in next(e for e in events if e.type == htcondor2.JobEventType.JOB_ABORTED)["Reason"]
    # condor_wait: the removed cluster is done; the other one is not, and the wait runs out
    done = pool.run("condor_wait", "-wait", "5", str(log), first, user="ulla")
    assert (done.returncode, done.stdout.strip()) == (0, "All jobs done.")
    waited = pool.run("condor_wait", "-wait", "2", str(log), user="ulla")
    assert (waited.returncode, waited.stdout.strip()) == (1, "Time expired.")
    assert (
        pool.run("condor_wait", "-num", "1", str(log), user="ulla").stdout.strip()
        == "Specifed number of jobs (1) done."
    )
    missing = pool.run("condor_wait", str(workdir / "nope.log"), user="ulla")
    assert missing.returncode == 1 and "Couldn't open" in missing.stderr


def test_xml_user_log(pool: RunningPool, workdir: Path) -> None:
    pool.submit(
        'executable = job.sh\nlog = x.xml\nlog_xml = true\n+LogTag = "never"\nqueue\n', "ulla", workdir
    )
    events = events_of(workdir / "x.xml")
    assert events and events[0].type == htcondor2.JobEventType.SUBMIT
    assert (workdir / "x.xml").read_text().startswith("<c>")


def test_the_submit_event_is_in_the_log_when_condor_submit_returns(pool: RunningPool, workdir: Path) -> None:
    """As in HTCondor, so ``condor_submit job.sub && condor_wait job.log`` never finds no log."""
    for number in range(3):
        pool.submit(
            f'executable = job.sh\nlog = now{number}.log\n+LogTag = "never"\nqueue 2\n', "ulla", workdir
        )
        shown = pool.run("condor_wait", "-wait", "0", "-status", f"now{number}.log", user="ulla")
        assert "submitted" in shown.stdout, shown.stderr


def test_a_log_is_never_written_where_the_owner_could_not(pool: RunningPool, workdir: Path) -> None:
    """Not into the pool's home, not through a link."""
    target = pool.home / "stolen.log"
    (workdir / "link.log").symlink_to(target)
    pool.submit("executable = job.sh\nlog = link.log\nqueue\n", "ulla", workdir)
    pool.submit(f"executable = job.sh\nlog = {pool.home}/evil.log\nqueue\n", "ulla", workdir, name="b.sub")
    time.sleep(1.0)
    assert not target.exists() and not (pool.home / "evil.log").exists()


def test_condor_qedit(pool: RunningPool, workdir: Path) -> None:
    cluster = pool.submit('executable = job.sh\n+LogTag = "never"\nqueue 2\n', "ulla", workdir)
    done = pool.run("condor_qedit", cluster, "Answer", "42", 'Color="red"', user="ulla")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['Set attribute "Answer".', 'Set attribute "Color".']
    assert pool.job(f"{cluster}.1", "Answer", "Color", user="ulla") == "42 red"
    refused = pool.run("condor_qedit", f"{cluster}.0", "JobStatus", "4", user="ulla")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        'Update of attribute "JobStatus" is not allowed.',
        "Transaction failed.  No attributes were set.",
    ]
    bad = pool.run("condor_qedit", f"{cluster}.0", "Answer", "(1 +", user="ulla")
    assert bad.returncode == 1 and 'illegal attribute-value specified for attribute "Answer"' in bad.stderr
    by_owner = pool.run("condor_qedit", "-constraint", "ProcId == 1", "Answer=7", user="ulla")
    assert by_owner.returncode == 0 and pool.job(f"{cluster}.1", "Answer", user="ulla") == "7"
    help_text = pool.run("condor_qedit", "--help")
    assert (
        help_text.returncode == 0
        and "Transaction" not in help_text.stderr
        and "condor_qedit" in help_text.stdout
    )


def test_condor_rm_says_what_htcondor_says(pool: RunningPool, workdir: Path) -> None:
    missing = pool.run("condor_rm", "99999", user="ulla")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Couldn't find/remove all jobs in cluster 99999"
    pool.submit('executable = job.sh\n+LogTag = "never"\nqueue\n', "rmall", workdir)
    everything = pool.run("condor_rm", "-all", user="rmall")
    assert (everything.returncode, everything.stdout.strip()) == (0, "All jobs have been marked for removal")


def test_condor_wait_help() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "condor_wait"), "-help"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "Use: condor_wait [options] <log-file> [job-number]" in done.stderr
