"""Running DAGs against a real pool in tests: a submit directory, a worker that decides each node
job's exit, and waiting for the DAG job to leave the queue.

The worker is the pilot protocol's other side (tests/support/pilots.py): it takes node jobs
from the real pool and reports the exit code the test chose for that node and attempt, so a
test can make node B fail twice and then succeed, or keep node C running while it holds the
DAG, without sleeping through real jobs.  The pool, the engine, the scripts and every file
are the real ones.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.accounts import give_to_job_account
from tests.support.factories import wait_for
from tests.support.pilots import ProtocolPilot, slot_ad
from tests.support.pools import RunningPool
from updraft.core.protocol import Scope, parse_literal

#: a node job's ad -> its exit code (None: keep it running, ask again later)
Decide = Callable[[dict[str, object]], "int | None"]


def literal_ad(ad: dict[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, text in ad.items():
        try:
            out[name] = parse_literal(text)
        except ValueError:
            out[name] = text
    return out


@dataclass
class Worker:
    """Runs node jobs on a protocol pilot: exit codes chosen by ``decide``; records what ran."""

    pool: RunningPool
    decide: Decide
    slots: int = 4
    ran: list[tuple[str, int, int]] = field(default_factory=list)  # (node, retry, cluster)
    running: dict[str, object] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.pilot = ProtocolPilot(
            self.pool.client("worker", Scope.PILOT), slot_ad("slot1@worker", cpus=self.slots)
        )
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        pending: list[object] = []
        while not self._stop.is_set():
            try:
                result = self.pilot.poll(0.2, max_matches=self.slots)
            except Exception:
                time.sleep(0.2)
                continue
            pending.extend(result.matches)
            still = []
            for match in pending:
                ad = literal_ad(match.job_ad)
                node = str(ad.get("DAGNodeName", ""))
                value = self.decide(ad)
                if value is None:
                    self.running[match.job_id] = match
                    still.append(match)
                    continue
                self.running.pop(match.job_id, None)
                try:
                    self.pilot.finish(match, value)
                except Exception:
                    pass  # removed meanwhile
                self.ran.append((node, int(ad.get("DAGManNodeRetry", 0) or 0), int(str(ad["ClusterId"]))))
                self.pilot.claims = [c for c in self.pilot.claims if c.claim_id != match.claim_id]
            pending = still

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)


def dag_directory(tmp_path: Path, files: dict[str, str], name: str = "work") -> Path:
    """A submit directory owned by the test's job account (as a user's own directory is)."""
    work = tmp_path / name
    work.mkdir(parents=True, exist_ok=True)
    for relative, text in files.items():
        path = work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if relative.endswith(".sh"):
            path.chmod(0o755)
    give_to_job_account(work)
    for path in work.rglob("*"):
        give_to_job_account(path) if path.is_dir() else _chown(path)
    return work


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        stat = path.parent.stat()
        os.chown(path, stat.st_uid, stat.st_gid)


def submit_dag(pool: RunningPool, work: Path, dag: str, *options: str, user: str = "alice") -> int:
    done = pool.run("condor_submit_dag", *options, dag, user=user, cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.lines if "submitted to cluster" in line)
    return int(line.rstrip(".").split()[-1])


def history_ad(pool: RunningPool, cluster: int, user: str = "alice") -> dict[str, object] | None:
    done = pool.run("condor_history", f"{cluster}.0", "-json", user=user)
    if done.returncode != 0 or not done.stdout.strip():
        return None
    ads = json.loads(done.stdout)
    return ads[0] if ads else None


def wait_dag(
    pool: RunningPool, cluster: int, timeout: float = 90.0, user: str = "alice"
) -> dict[str, object]:
    """The DAG job's ad once it left the queue (completed or removed)."""
    found = wait_for(lambda: history_ad(pool, cluster, user), timeout, 0.2, f"DAG job {cluster} to end")
    assert isinstance(found, dict)
    return found


def run_dag(
    pool: RunningPool, work: Path, dag: str, decide: Decide, *options: str, timeout: float = 90.0
) -> tuple[int, dict[str, object], Worker]:
    """Submit ``dag`` from ``work``, run its nodes with ``decide`` until the DAG job ends: (id, its ad, worker)."""
    worker = Worker(pool, decide)
    try:
        dag_id = submit_dag(pool, work, dag, *options)
        ad = wait_dag(pool, dag_id, timeout)
    finally:
        worker.stop()
    return dag_id, ad, worker


def queue_ads(pool: RunningPool, constraint: str, user: str = "alice") -> list[dict[str, object]]:
    done = pool.run("condor_q", "-constraint", constraint, "-json", user=user)
    return json.loads(done.stdout) if done.stdout.strip() else []
