"""The whole system under kill -9: pool, factory, frontend and pilots, in turn, during 1,000 jobs.

Every component runs as its own process, as an operator runs it; faults are SIGKILL (no
cleanup) and one factory restart dies mid-submission through a failpoint (the site has the
glidein, the journal does not yet know it).  At the end, as the user sees it: every job
completed exactly once; at the sites: no glidein and no process left; in the factory's
journal: no glidein twice and none in doubt.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from factory.adapters.local import signal_glidein
from factory.glideins import GlideinState
from tests.support.accounts import give_to_job_account
from tests.support.factories import FactorySetup, local_entry, wait_for
from tests.support.frontends import FrontendSetup, group
from tests.support.pools import RunningPool, start_pool
from updraft.core.payloads import QueryRequest

JOBS = 1000
DEADLINE_S = 420  # the whole run, faults included; a bound, not a target
pytestmark = pytest.mark.timeout(DEADLINE_S + 180)

JOB = """\
executable = short.sh
arguments = $(Cluster).$(Process)
output = out/$(Process).out
error = out/$(Process).err
+JobLeaseDuration = 10
request_cpus = 1
request_memory = 64
queue {count}
"""


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class System:
    """A pool, a factory and a frontend, each its own process, and the faults to inflict on them."""

    def __init__(self, tmp_path: Path) -> None:
        self.pool: RunningPool = start_pool(tmp_path / "pool")
        self.factory = FactorySetup(self.pool, tmp_path / "factory", name="fac-r")
        self.frontend = FrontendSetup(
            self.pool,
            tmp_path / "frontend",
            name="fe-r",
            groups=[group("any", job_constraint="true", match_expr="true")],
        )
        self.factory.entries = [
            local_entry(
                f"{site}_local",
                site,
                allowed_frontends=["fe-r"],
                attributes={"GLIDEIN_Site": site, "GLIDEIN_CPUS": 2, "GLIDEIN_Max_Walltime": 900},
                limits={"max_glideins": 4, "max_idle": 2},
                options={"max_running": 3},
            )
            for site in ("Alpha", "Beta")
        ]
        self.factory.write()
        self.frontend.write()
        self.factory_process = self.factory.spawn()
        self.frontend_process = self.frontend.spawn()
        self.rng = random.Random(1234)
        self.faults: Counter[str] = Counter()

    @property
    def sites(self) -> Path:
        return self.factory.state_dir / "entries"

    def nodes(self) -> list[Path]:
        return sorted(self.sites.glob("*/updraft_*"))

    def alive_pilots(self) -> list[Path]:
        """Worker nodes with a process of their glidein still running."""
        return [n for n in self.nodes() if any(str(n) in p for p in processes_under(n))]

    # -- faults ---------------------------------------------------------------------------------
    def kill_pool(self) -> None:
        self.pool.kill()
        time.sleep(self.rng.uniform(0.2, 1.5))
        self.pool.process.start()
        self.faults["pool"] += 1

    def kill_factory(self, **env: str) -> None:
        self.factory_process.send_signal(signal.SIGKILL)
        self.factory_process.wait()
        self.factory_process = self.factory.spawn(**env)
        self.faults["factory"] += 1

    def kill_frontend(self) -> None:
        self.frontend_process.send_signal(signal.SIGKILL)
        self.frontend_process.wait()
        self.frontend_process = self.frontend.spawn()
        self.faults["frontend"] += 1

    def kill_pilots(self, count: int = 1) -> None:
        alive = self.alive_pilots()
        for node in self.rng.sample(alive, min(count, len(alive))):
            signal_glidein(node, signal.SIGKILL)  # the node is gone, and everything on it
            self.faults["pilot"] += 1

    def factory_dies_mid_submit(self) -> None:
        """Restart the factory armed to die just after the site took a glidein, then again plainly."""
        self.kill_factory(UPDRAFT_FAILPOINTS="factory.after_site_submit=exit@1")
        self.kill_pilots(2)  # their places are resubmitted: the armed factory submits and dies
        try:
            code = self.factory_process.wait(timeout=60)
        except Exception:
            code = None
        assert code == 137, (
            f"the armed factory did not die mid-submit (exit {code}); log:\n{self.factory.log()[-3000:]}"
        )
        self.factory_process = self.factory.spawn()
        self.faults["factory mid-submit"] += 1

    # -- what the user sees -----------------------------------------------------------------------
    def history(self) -> list[dict[str, str]]:
        return (
            self.pool.client("rita")
            .query(QueryRequest("", ["ClusterId", "ProcId", "ExitCode"]), history=True)
            .ads
        )

    def queue(self) -> list[dict[str, str]]:
        return self.pool.client("rita").query(QueryRequest("", ["ClusterId", "ProcId", "JobStatus"])).ads

    def events(self) -> list:
        client = self.pool.client()
        out, after = [], 0
        while True:
            batch = client.events(after, 10000)
            if not batch:
                return out
            out += batch
            after = batch[-1].id

    def stop(self) -> None:
        for process in (self.frontend_process, self.factory_process):
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
        for node in self.nodes():
            signal_glidein(node, signal.SIGKILL)
        self.pool.stop()


def processes_under(root: Path) -> list[str]:
    """Processes whose working directory is inside ``root`` (a glidein or a job left behind)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(root)) and not cwd.endswith("(deleted)"):
            found.append(f"{proc.name} {command.strip()} (in {cwd})")
    return found


@pytest.fixture
def system(tmp_path: Path) -> System:
    made = System(tmp_path)
    yield made
    made.stop()


def test_every_job_completes_exactly_once_through_kill_9_of_every_component(
    system: System, tmp_path: Path
) -> None:
    began = time.monotonic()
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    give_to_job_account(work)  # the submitter's own directory, as a user's is
    give_to_job_account(work / "out")
    (work / "short.sh").write_text('#!/bin/sh\nsleep 0.2\necho "job $1 ran"\n')
    (work / "short.sh").chmod(0o755)
    cluster = system.pool.submit(JOB.format(count=JOBS), "rita", work)
    say(f"submitted {JOBS} jobs as cluster {cluster}")

    def completed() -> int:
        return len(system.history())

    # pilots first, so that faults hit a system with jobs running
    wait_for(lambda: completed() >= 20, timeout=120, what="the first jobs to complete")
    faults = [
        lambda: system.kill_pilots(1),
        system.kill_pool,
        system.factory_dies_mid_submit,
        system.kill_frontend,
        lambda: system.kill_pilots(2),
        system.kill_pool,
        system.kill_factory,
        lambda: system.kill_pilots(1),
    ]
    for fault in faults:
        if completed() >= JOBS * 0.9:
            break
        fault()
        say(f"faults so far {dict(system.faults)}; {completed()} of {JOBS} jobs done")
        time.sleep(system.rng.uniform(3, 6))
    assert {"pool", "factory", "frontend", "pilot", "factory mid-submit"} <= set(system.faults), (
        f"the jobs finished before every kind of fault was made: {dict(system.faults)}"
    )

    remaining = DEADLINE_S - (time.monotonic() - began)
    wait_for(lambda: completed() >= JOBS, timeout=max(30, remaining), pause=2, what=f"all {JOBS} jobs")
    say(f"all jobs done after {time.monotonic() - began:.0f} s with faults {dict(system.faults)}")

    # -- every job completed exactly once, as the user sees it -------------------------------------
    history = system.history()
    seen = Counter((ad["ClusterId"], ad["ProcId"]) for ad in history)
    assert len(seen) == JOBS and set(seen.values()) == {1}, "a job is missing from or twice in the history"
    assert {ad["ExitCode"] for ad in history} == {"0"}
    assert system.queue() == []
    events = system.events()
    completions = Counter((e.cluster_id, e.proc_id) for e in events if e.type == "complete")
    assert len(completions) == JOBS and set(completions.values()) == {1}, "a job completed twice or never"
    outputs = list((work / "out").glob("*.out"))
    assert len(outputs) == JOBS and all("ran" in f.read_text() for f in outputs)
    starts = Counter((e.cluster_id, e.proc_id) for e in events if e.type == "execute")
    say(
        f"jobs started more than once (their pilot or its lease was lost): {sum(1 for n in starts.values() if n > 1)}"
    )

    # -- no glidein left at any site, none twice in the journal -------------------------------------
    wait_for(
        lambda: not system.alive_pilots() and not _live_in_journal(system),
        timeout=90,
        pause=1,
        what=f"the pilots to leave and the journal to settle; live: {_live_in_journal(system)}",
    )
    assert processes_under(system.sites) == []
    journal = system.factory.journal()
    try:
        rows = journal.recent(0)
    finally:
        journal.close()
    tags = Counter(g.tag for g in rows)
    assert set(tags.values()) == {1}, "a glidein is twice in the journal"
    assert not [g for g in rows if g.state == GlideinState.UNSUBMITTED], "a glidein is still in doubt"
    at_sites = {n.name for n in system.nodes()}
    assert at_sites <= set(tags), f"glideins at a site the journal does not know: {at_sites - set(tags)}"
    say(f"glideins: {len(rows)} in the journal, {Counter(g.state.value for g in rows)}")


def _live_in_journal(system: System) -> list[str]:
    journal = system.factory.journal()
    try:
        return [f"{g.tag} {g.state.value}" for g in journal.live()]
    finally:
        journal.close()
