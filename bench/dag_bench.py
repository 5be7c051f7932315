"""DAG benchmarks (issue 16).

- A 10,000-node DAG (fan-out to 9,998 nodes, then fan-in) parsed and accepted, with every
  check condor_submit_dag makes (the submit file's existence included): target under 2 s.
- The engine's own overhead between a node's end and its child's submission, on warm
  pilots: a chain of short nodes through the whole system (pool, factory, frontend, local
  pilots); for each edge, the pool's time of the child's submission minus the parent's
  completion.  Target: p99 under 50 ms.  Beside it, as a floor measured in the same run:
  condor_submit's own time for one job (what any client pays to queue a job).
- A diamond of 1-second jobs through the same pilots, from the DAG job's submission to its
  completion (the pool's event times), against its critical path (3 jobs): target under 1.2x.

No anchor runs HTCondor's DAGMan itself: condor_dagman cannot run on these machines.
"""

from __future__ import annotations

import os
import pwd
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench.common import BIN, Result, result, say, timer
from bench.system_bench import LocalSystem
from updraft.core import payloads, protocol
from userpool.dag.check import check_dag
from userpool.dag.engine import Engine
from userpool.dag.model import Dag
from userpool.dag.noderun import NodeRun, Settings
from userpool.dag.parse import parse_dag

JOB_ACCOUNT = "nobody"
CHAIN_NODE = "executable = /bin/true\ntransfer_executable = false\nrequest_memory = 64\nqueue\n"
DIAMOND_NODE = (
    "executable = /bin/sleep\ntransfer_executable = false\narguments = 1\nrequest_memory = 64\nqueue\n"
)
DIAMOND = (
    "JOB A node.sub\nJOB B node.sub\nJOB C node.sub\nJOB D node.sub\nPARENT A CHILD B C\nPARENT B C CHILD D\n"
)


def write_fan(directory: Path, width: int) -> Path:
    (directory / "node.sub").write_text("executable = /bin/true\nqueue\n")
    lines = ["JOB top node.sub", *(f"JOB n{index} node.sub" for index in range(width)), "JOB bottom node.sub"]
    lines += ["PARENT top CHILD " + " ".join(f"n{index}" for index in range(width))]
    lines += [f"PARENT n{index} CHILD bottom" for index in range(width)]
    lines += ['VARS ALL_NODES name="$(JOB)"', "RETRY ALL_NODES 2"]
    path = directory / "fan.dag"
    path.write_text("\n".join(lines) + "\n")
    return path


def parse_bench(quick: bool) -> list[Result]:
    width = 998 if quick else 9998
    with tempfile.TemporaryDirectory(prefix="updraft-dag-bench-") as work:
        path = write_fan(Path(work), width)
        say(f"dag: parsing and checking a {width + 2:,}-node fan-out/fan-in DAG")
        best = float("inf")
        for _ in range(3):
            with timer() as took:
                dag = parse_dag(str(path))
                check_dag(dag, work)
            best = min(best, took[0])
        assert len(dag.nodes) == width + 2 and dag.edges() == 2 * width
        say("dag: the engine's decisions alone over the same DAG (every node job ends at once)")
        with timer() as took:
            submitted = _engine_alone(dag)
    return [
        result(
            f"dag parse+check {width + 2:,} nodes", best, "s", "<= 2" if not quick else "", notes={"edges": 2 * width}
        ),
        result(
            f"dag engine decisions alone, {width + 2:,} nodes (maxidle 1000)", took[0], "s",
            notes={"submitted": submitted},
        ),
    ]  # fmt: skip


class _Instant:
    """Actions that submit at once and record nothing: the engine's own cost, no pool."""

    def __init__(self) -> None:
        self.next_cluster = 0

    def submit(self, run: NodeRun, macros: dict[str, str]) -> tuple[int, int]:
        self.next_cluster += 1
        return self.next_cluster, 1

    def run_script(self, *args: object) -> None: ...

    def remove(self, *args: object) -> None: ...

    def note(self, text: str) -> None: ...

    def record(self, *args: object) -> None: ...


def _engine_alone(dag: Dag) -> int:
    actions = _Instant()
    engine = Engine(dag, Settings(), actions)
    engine.start()
    while not engine.finished:
        engine.pump(0.0)
        for cluster in list(engine.by_cluster):
            engine.proc_ended(cluster, 0, 0)
    return actions.next_cluster


def _submit_dag(system: LocalSystem, directory: Path, name: str) -> int:
    done = subprocess.run(
        [str(BIN / "condor_submit_dag"), name], env=system.env(), cwd=directory, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    line = next(line for line in done.stdout.splitlines() if "submitted to cluster" in line)
    return int(line.rstrip(".").split()[-1])


def _dag_done(system: LocalSystem, dag_id: int) -> bool:
    client = system.pool.client()
    return bool(client.query(payloads.QueryRequest(f"ClusterId == {dag_id}", ["ProcId"]), history=True).ads)


def _as_job_account(work: Path, *directories: Path) -> None:
    """As root the DAG runs as ``nobody`` (a root pool runs nothing as root), in its own directories."""
    if os.geteuid() != 0:
        return
    account = pwd.getpwnam(JOB_ACCOUNT)
    work.chmod(0o755)
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        os.chown(directory, account.pw_uid, account.pw_gid)


def system_bench(quick: bool) -> list[Result]:
    length = 20 if quick else 60
    work = Path(tempfile.mkdtemp(prefix="updraft-dag-system-bench-"))
    if os.geteuid() == 0:
        (work / "home").mkdir()
        (work / "home" / "identity.map").write_text(f"TOKEN /.*/ {JOB_ACCOUNT}\n")
    chain, diamond = work / "chain", work / "diamond"
    _as_job_account(work, work, chain, diamond)
    results: list[Result] = []
    with LocalSystem(work) as system:
        client = system.pool.client()
        say("dag: bringing up the pilots")
        system.submit(
            "executable = /bin/sleep\ntransfer_executable = false\narguments = 2\nrequest_memory = 64\nqueue 20\n"
        )
        system.wait(
            lambda: len(client.query_ads(protocol.AdType.Slot.value, "", ["Name"])) >= 20, 300, "pilots"
        )
        system.wait(lambda: not client.query(payloads.QueryRequest("", ["ProcId"])).ads, 120, "warm-up jobs")

        say(f"dag: a chain of {length} short nodes on warm pilots")
        (chain / "node.sub").write_text(CHAIN_NODE)
        text = "".join(f"JOB N{i} node.sub\n" for i in range(length))
        text += "".join(f"PARENT N{i} CHILD N{i + 1}\n" for i in range(length - 1))
        (chain / "chain.dag").write_text(text)
        dag_id = _submit_dag(system, chain, "chain.dag")
        system.wait(lambda: _dag_done(system, dag_id), 60 + length * 5, "the chain DAG")
        nodes = client.query(
            payloads.QueryRequest(f"DAGManJobId == {dag_id}", ["ClusterId", "DAGNodeName"]), history=True
        ).ads
        cluster_of = {str(protocol.parse_literal(ad["DAGNodeName"])): int(ad["ClusterId"]) for ad in nodes}
        events = system.events({"submit", "complete"})
        submitted = {e.cluster_id: e.time for e in events if e.type == "submit"}
        completed = {e.cluster_id: e.time for e in events if e.type == "complete"}
        gaps = sorted(
            submitted[cluster_of[f"N{i + 1}"]] - completed[cluster_of[f"N{i}"]] for i in range(length - 1)
        )
        p99 = gaps[min(len(gaps) - 1, round(0.99 * (len(gaps) - 1)))]
        floor = []
        for _ in range(5):
            with timer() as took:
                system.submit("executable = /bin/true\ntransfer_executable = false\nhold = true\nqueue\n")
            floor.append(took[0])
        anchor = round(statistics.median(floor) * 1000, 1)
        results.append(result(
            "dag engine: a node's end to its child's submission, p50", statistics.median(gaps) * 1000, "ms", "",
            anchor=anchor, anchor_label="condor_submit of one job, same run",
        ))  # fmt: skip
        results.append(result(
            "dag engine: a node's end to its child's submission, p99", p99 * 1000, "ms", "<= 50",
            anchor=anchor, anchor_label="condor_submit of one job, same run", notes={"edges": len(gaps)},
        ))  # fmt: skip

        say("dag: a diamond of 1-second jobs through the pilots")
        (diamond / "node.sub").write_text(DIAMOND_NODE)
        (diamond / "diamond.dag").write_text(DIAMOND)
        dag_id = _submit_dag(system, diamond, "diamond.dag")
        system.wait(lambda: _dag_done(system, dag_id), 120, "the diamond DAG")
        began = min(e.time for e in system.events({"submit"}) if e.cluster_id == dag_id)
        ended = max(e.time for e in system.events({"complete"}) if e.cluster_id == dag_id)
        critical = 3.0
        results.append(result(
            "dag: diamond of 1 s jobs, DAG queued to DAG done / critical path", (ended - began) / critical, "x",
            "<= 1.2", notes={"seconds": round(ended - began, 2), "critical_path_s": critical},
        ))  # fmt: skip
    return results


def run(quick: bool) -> list[Result]:
    return parse_bench(quick) + system_bench(quick)
