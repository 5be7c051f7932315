"""Real pilots running real jobs from a real pool: parallel slots, limits, commands, deaths and ends."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.support.pilots_real import PilotLauncher, wait_until
from tests.support.pools import RunningPool
from tests.support.proxies import make_user_proxy
from updraft.core.protocol import Scope


def tagged(tag: str, body: str) -> str:
    return f'+TestTag = "{tag}"\n{body}'


def only(tag: str) -> str:
    return f'TARGET.TestTag =?= "{tag}"'


def script(workdir: Path, name: str, text: str) -> None:
    path = workdir / name
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)


def test_job_sees_its_arguments_environment_and_input(
    pool: RunningPool, pilots: PilotLauncher, workdir: Path
) -> None:
    script(
        workdir,
        "show.sh",
        'echo "args:$1|$2"\necho "env:$GREETING"\ncat\necho "scratch:$_CONDOR_SCRATCH_DIR"\necho made > made.txt\n',
    )
    (workdir / "in.txt").write_text("from stdin\n")
    cluster = pool.submit(
        tagged("env", 'executable = show.sh\narguments = "one \'two words\'"\nenvironment = "GREETING=hello"\n'
               "input = in.txt\noutput = show.out\nerror = show.err\nqueue\n"),
        "uma", workdir,
    )  # fmt: skip
    pilot = pilots.start(start_expr=only("env"), tail_timeout_s=1)
    result = pilot.wait()
    assert result["jobs"]["exited"] == 1
    lines = wait_until(
        lambda: (workdir / "show.out").exists() and (workdir / "show.out").read_text().splitlines(),
        what="output",
    )
    assert lines[:3] == ["args:one|two words", "env:hello", "from stdin"]
    assert lines[3].startswith("scratch:") and "execute" in lines[3]
    assert wait_until(lambda: (workdir / "made.txt").exists(), what="new file returned")
    assert pool.job(f"{cluster}.0", "ExitCode", "JobStatus", user="uma", history=True) == "0 4"


def test_several_jobs_at_once_on_a_multicore_pilot(
    pool: RunningPool, pilots: PilotLauncher, workdir: Path
) -> None:
    script(workdir, "nap.sh", "sleep 2\n")
    cluster = pool.submit(tagged("par", "executable = nap.sh\nrequest_cpus = 1\nqueue 4\n"), "vic", workdir)
    started = time.monotonic()
    pilot = pilots.start(start_expr=only("par"), cpus=4, tail_timeout_s=1)
    result = pilot.wait()
    elapsed = time.monotonic() - started
    assert result["jobs"]["exited"] == 4
    assert elapsed < 7.5, f"4 two-second jobs on 4 cores took {elapsed:.1f} s"
    hosts = pool.run("condor_history", cluster, "-af", "LastRemoteHost", user="vic").lines
    assert len(set(hosts)) == 1 and len(hosts) == 4


def test_remove_kills_the_whole_tree(pool: RunningPool, pilots: PilotLauncher, workdir: Path) -> None:
    script(
        workdir,
        "tree.sh",
        "sleep 300 &\necho $! > child.pid\n(setsid sleep 301 & echo $! > escaped.pid)\nsleep 302\n",
    )
    cluster = pool.submit(tagged("tree", "executable = tree.sh\nqueue\n"), "walt", workdir)
    pilot = pilots.start(start_expr=only("tree"), tail_timeout_s=1)
    scratch = wait_until(lambda: list(pilot.work.rglob("escaped.pid")), what="the job to start")[0].parent
    pids = [int((scratch / name).read_text()) for name in ("child.pid", "escaped.pid")]
    assert all(os.path.exists(f"/proc/{pid}") for pid in pids)
    assert pool.run("condor_rm", cluster, user="walt").returncode == 0

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10, what="the job's processes to die")
    result = pilot.wait()
    assert result["jobs"]["killed"] == 1


def test_memory_limit_puts_the_job_on_hold(pool: RunningPool, pilots: PilotLauncher, workdir: Path) -> None:
    script(
        workdir, "hog.sh", 'exec python3 -c "import time; x = bytearray(200 * 1024 * 1024); time.sleep(60)"\n'
    )
    cluster = pool.submit(tagged("mem", "executable = hog.sh\nrequest_memory = 50\nqueue\n"), "xena", workdir)
    pilot = pilots.start(start_expr=only("mem"), memory_floor_mb=10, tail_timeout_s=1)
    pilot.wait()
    held = pool.job(f"{cluster}.0", "JobStatus", "HoldReasonCode", user="xena")
    assert held == "5 34"
    assert "memory limit of 50 megabytes" in pool.job(f"{cluster}.0", "HoldReason", user="xena")


def test_runtime_limit(pool: RunningPool, pilots: PilotLauncher, workdir: Path) -> None:
    script(workdir, "long.sh", "sleep 60\n")
    cluster = pool.submit(
        tagged("rt", "executable = long.sh\nallowed_execute_duration = 2\nqueue\n"), "yann", workdir
    )
    pilot = pilots.start(start_expr=only("rt"), tail_timeout_s=1)
    pilot.wait()
    assert pool.job(f"{cluster}.0", "JobStatus", "HoldReasonCode", user="yann") == "5 47"


def test_suspend_and_continue_stop_the_processes(
    pool: RunningPool, pilots: PilotLauncher, workdir: Path
) -> None:
    script(workdir, "tick.sh", "echo $$ > main.pid\nsleep 300\n")
    cluster = pool.submit(tagged("sus", "executable = tick.sh\nqueue\n"), "zoe", workdir)
    pilot = pilots.start(start_expr=only("sus"), tail_timeout_s=1)
    pid_file = wait_until(lambda: list(pilot.work.rglob("main.pid")), what="the job")[0]
    pid = int(wait_until(lambda: pid_file.read_text().strip(), what="the pid"))

    def state() -> str:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]

    assert pool.run("condor_suspend", f"{cluster}.0", user="zoe").returncode == 0
    wait_until(lambda: state() == "T", timeout=10, what="SIGSTOP")
    assert pool.run("condor_continue", f"{cluster}.0", user="zoe").returncode == 0
    wait_until(lambda: state() in ("S", "R"), timeout=10, what="SIGCONT")
    pool.run("condor_rm", cluster, user="zoe")
    pilot.wait()
    events = pool.run("updraft", "logging-info", f"{cluster}.0", user="zoe").stdout
    assert "suspended" in events and "continued" in events


def test_pilot_killed_mid_job_the_job_runs_elsewhere(
    pool: RunningPool, pilots: PilotLauncher, workdir: Path
) -> None:
    script(workdir, "slow.sh", "sleep ${1:-1}\n")
    cluster = pool.submit(
        tagged("die", "executable = slow.sh\narguments = 60\n+JobLeaseDuration = 10\nqueue\n"),
        "abe",
        workdir,
    )
    first = pilots.start(start_expr=only("die"))
    wait_until(
        lambda: pool.job(f"{cluster}.0", "JobStatus", user="abe") == "2",
        what="the first pilot to start the job",
    )
    first.kill_group()  # the batch system kills the slot: pilot and job, no goodbye
    wait_until(
        lambda: pool.job(f"{cluster}.0", "JobStatus", user="abe") == "1",
        timeout=30,
        what="the lease to expire",
    )
    assert pool.job(f"{cluster}.0", "NumJobStarts", user="abe") == "1"
    pool.run("condor_rm", cluster, user="abe")
    quick = pool.submit(tagged("die", "executable = slow.sh\narguments = 1\nqueue\n"), "abe", workdir)
    second = pilots.start(start_expr=only("die"), tail_timeout_s=1)
    assert second.wait()["jobs"]["exited"] == 1
    assert pool.job(f"{quick}.0", "JobStatus", user="abe", history=True) == "4"


def test_sigterm_vacates_running_jobs(pool: RunningPool, pilots: PilotLauncher, workdir: Path) -> None:
    script(workdir, "term.sh", "trap 'echo got-term; exit 143' TERM\nsleep 300 & wait\n")
    cluster = pool.submit(tagged("term", "executable = term.sh\nqueue\n"), "bob2", workdir)
    pilot = pilots.start(start_expr=only("term"))
    wait_until(lambda: pool.job(f"{cluster}.0", "JobStatus", user="bob2") == "2", what="the job to start")
    time.sleep(0.5)
    started = time.monotonic()
    pilot.signal(signal.SIGTERM)
    result = pilot.wait(timeout=30)
    assert time.monotonic() - started < 15
    assert result["jobs"]["vacated"] == 1 and "SIGTERM" in result["reason"]
    assert pool.job(f"{cluster}.0", "JobStatus", user="bob2") == "1"
    pool.run("condor_rm", cluster, user="bob2")


def test_todie_vacates_and_ends(pool: RunningPool, pilots: PilotLauncher, workdir: Path) -> None:
    script(workdir, "forever.sh", "sleep 300\n")
    cluster = pool.submit(tagged("die2", "executable = forever.sh\nqueue\n"), "cyd", workdir)
    pilot = pilots.start(start_expr=only("die2"), lifetime_s=6, retire_before_die_s=1)
    result = pilot.wait(timeout=40)
    assert result["reason"] == "GLIDEIN_ToDie reached"
    assert result["jobs"]["vacated"] == 1
    assert pool.job(f"{cluster}.0", "JobStatus", "NumJobStarts", user="cyd") == "1 1"
    pool.run("condor_rm", cluster, user="cyd")


def test_idle_and_tail_timeouts(pool: RunningPool, pilots: PilotLauncher, workdir: Path) -> None:
    started = time.monotonic()
    idle = pilots.start(start_expr=only("nothing"), idle_timeout_s=2).wait()
    assert idle["reason"] == "idle timeout (no job)" and 2 <= time.monotonic() - started < 10
    script(workdir, "quick.sh", "true\n")
    pool.submit(tagged("tail", "executable = quick.sh\nqueue\n"), "dee", workdir)
    tail = pilots.start(start_expr=only("tail"), tail_timeout_s=1).wait()
    assert tail["reason"] == "tail timeout (no more jobs)" and tail["jobs"]["exited"] == 1


def test_black_hole_stops_taking_jobs(pool: RunningPool, pilots: PilotLauncher, workdir: Path) -> None:
    script(workdir, "broken.sh", "exit 1\n")
    pool.submit(tagged("bh", "executable = broken.sh\nqueue 10\n"), "eli", workdir)
    pilot = pilots.start(
        start_expr=only("bh"), black_hole_failures=3, black_hole_seconds=30, tail_timeout_s=30
    )
    result = pilot.wait()
    assert result["status"] == "black_hole" and pilot.returncode == 4
    assert 3 <= result["jobs"]["started"] < 10
    events = [e for e in pool.client().events(0, 10000) if e.type == "pilot_black_hole"]
    assert events and "failed within 30 s" in events[-1].details["message"]
    pool.run("condor_rm", "eli", user="eli")


def test_refreshed_proxy_reaches_the_running_job(
    pool: RunningPool, pilots: PilotLauncher, workdir: Path
) -> None:

    make_user_proxy(workdir / "user.proxy", hours=2)
    script(
        workdir,
        "watch.sh",
        'sum0=$(md5sum < "$X509_USER_PROXY")\nfor i in $(seq 200); do\n  [ "$(md5sum < "$X509_USER_PROXY")" != "$sum0" ] && echo refreshed && exit 0\n  sleep 0.1\ndone\necho stale; exit 1\n',
    )
    cluster = pool.submit(
        tagged("cred", "executable = watch.sh\nx509userproxy = user.proxy\noutput = watch.out\nqueue\n"),
        "fay2",
        workdir,
    )
    pilot = pilots.start(start_expr=only("cred"), tail_timeout_s=1)
    wait_until(lambda: pool.job(f"{cluster}.0", "JobStatus", user="fay2") == "2", what="the job to start")
    make_user_proxy(workdir / "user.proxy", hours=24)
    refreshed = pool.run("updraft", "proxy", "refresh", cluster, user="fay2")
    assert refreshed.returncode == 0 and f"Job {cluster}.0: proxy refreshed" in refreshed.stdout, (
        refreshed.stderr
    )
    assert pilot.wait()["jobs"]["exited"] == 1
    assert (workdir / "watch.out").read_text().strip() == "refreshed"
    events = pool.run("updraft", "logging-info", f"{cluster}.0", user="fay2").stdout
    assert "credential_refreshed" in events


def test_pilot_renews_its_short_token(pool: RunningPool, pilots: PilotLauncher) -> None:
    token = pilots.root / "aged.token"
    issued_long_ago = time.time() - 1000  # 100 s of 1,100 left: time to renew
    token.write_text(pool.signer().issue("aged", frozenset({Scope.PILOT}), 1100, now=issued_long_ago)[0])
    before = token.read_text()
    result = pilots.start(token=token, idle_timeout_s=2).wait()
    assert result["status"] == "ok"
    after = token.read_text()
    assert after != before
    renewed = pool.signer().verify(after.strip())
    assert renewed.expires > pool.signer().verify(before.strip()).expires
    assert 1000 <= renewed.lifetime_s <= 1100  # as long as the original, not shrinking with each renewal


def test_match_time_substitution(pool: RunningPool, pilots: PilotLauncher, workdir: Path) -> None:
    script(workdir, "where.sh", 'echo "$1 $2"\n')
    text = 'executable = where.sh\narguments = "$$(GLIDEIN_Site) $$(NoSuchAttr:fallback)"\n+JOB_Site = "$$(GLIDEIN_Site)"\noutput = where.out\nqueue\n'
    cluster = pool.submit(tagged("dollar", text), "gil", workdir)
    pilots.start(start_expr=only("dollar"), site="Nebraska", tail_timeout_s=1).wait()
    assert (workdir / "where.out").read_text().strip() == "Nebraska fallback"
    assert (
        pool.job(f"{cluster}.0", "MATCH_GLIDEIN_Site", "JOB_Site", user="gil", history=True)
        == "Nebraska $$(GLIDEIN_Site)"
    )


def test_a_real_pilot_s_job_leaves_a_user_log_that_condor_wait_follows(
    pool: RunningPool, pilots: PilotLauncher, workdir: Path
) -> None:
    """log = x.log through a real pilot: submit, execute, terminated with the job's return value;
    as in HTCondor the terminate event comes once the output is back, so condor_wait && cat works."""
    import htcondor2

    script(workdir, "seven.sh", "head -c 30000000 /dev/zero > big.dat; echo seven; exit 7\n")
    text = "executable = seven.sh\nlog = x.log\noutput = x.out\nqueue\n"
    cluster = pool.submit(tagged("ulog", text), "uma", workdir)
    pilot = pilots.start(start_expr=only("ulog"), tail_timeout_s=1)
    done = pool.run("condor_wait", "-wait", "60", str(workdir / "x.log"), cluster, user="uma")
    assert (done.returncode, done.stdout.strip()) == (0, "All jobs done."), done.stderr
    assert (workdir / "x.out").read_text() == "seven\n" and (workdir / "big.dat").stat().st_size == 30000000
    pilot.wait()
    events = list(htcondor2.JobEventLog(str(workdir / "x.log")).events(stop_after=0))
    kinds = [e.type for e in events if e.type != htcondor2.JobEventType.IMAGE_SIZE]
    assert kinds == [
        htcondor2.JobEventType.SUBMIT,
        htcondor2.JobEventType.EXECUTE,
        htcondor2.JobEventType.JOB_TERMINATED,
    ]
    assert events[-1]["ReturnValue"] == 7 and events[-1]["TerminatedNormally"] is True
