"""DAGs run by the pool (issue 16): DAGMan's behaviour on the global queue, end to end.

A real pool runs each DAG job's engine as the DAG's owner; a protocol worker (tests/support/
dags.py) plays the pilots and decides each node job's exit, so the tests can make nodes fail,
retry and hang on purpose.  Everything the user sees is checked where HTCondor defines it:
the files beside the DAG (dagman.out, the nodes log read by htcondor2.JobEventLog, the
metrics, the rescue DAG), the node jobs' attributes, condor_q and condor_history.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.accounts import IS_ROOT, JOB_ACCOUNT
from tests.support.dags import Worker, dag_directory, queue_ads, run_dag, submit_dag, wait_dag
from tests.support.factories import wait_for
from tests.support.pools import RunningPool, start_pool

NODE = "executable = /bin/true\narguments = $(JOB) $(RETRY)\nqueue\n"
DIAMOND = (
    "JOB A node.sub\nJOB B node.sub\nJOB C node.sub\nJOB D node.sub\nPARENT A CHILD B C\nPARENT B C CHILD D\n"
)


@pytest.fixture()
def pool(tmp_path: Path) -> Iterator[RunningPool]:
    running = start_pool(tmp_path / "pool")
    yield running
    running.stop()


def by_node(worker: Worker) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for node, retry, _cluster in worker.ran:
        out.setdefault(node, []).append(retry)
    return out


def events_of(path: Path) -> list[tuple[int, int, str]]:
    """(event number, cluster, DAG node) of each event in a nodes log, read by HTCondor's own reader."""
    import htcondor2

    out = []
    for event in htcondor2.JobEventLog(str(path)).events(0):
        notes = event.get("LogNotes") or event.get("DAGNodeName") or event.get("SkipEventLogNotes") or ""
        out.append((int(event.type), event.cluster, str(notes).replace("DAG Node: ", "")))
    return out


def test_a_diamond_runs_in_order_and_leaves_htcondors_files(pool: RunningPool, tmp_path: Path) -> None:
    work = dag_directory(tmp_path, {"node.sub": NODE, "diamond.dag": DIAMOND})
    dag_id, ad, worker = run_dag(pool, work, "diamond.dag", lambda ad: 0)
    assert ad["ExitCode"] == 0 and ad["JobStatus"] == 4 and ad["JobUniverse"] == 7
    order = [node for node, _retry, _cluster in worker.ran]
    assert order[0] == "A" and order[-1] == "D" and sorted(order[1:3]) == ["B", "C"]
    out = (work / "diamond.dag.dagman.out").read_text()
    assert "All jobs Completed!" in out and out.rstrip().endswith("EXITING WITH STATUS 0")
    assert "  Done     Pre   Queued    Post   Ready   Un-Ready   Failed   Futile" in out
    events = events_of(work / "diamond.dag.nodes.log")
    submitted = [node for number, _cluster, node in events if number == 0]
    assert sorted(submitted) == ["A", "B", "C", "D"] and submitted[0] == "A"
    assert sum(1 for number, _c, _n in events if number == 5) == 4
    metrics = json.loads((work / "diamond.dag.metrics").read_text())
    assert metrics["client"] == "condor_dagman" and metrics["exitcode"] == 0 and metrics["DagStatus"] == 0
    assert metrics["nodes"] == 4 and metrics["nodes_succeeded"] == 4 and metrics["dagman_id"] == str(dag_id)
    assert not list(work.glob("diamond.dag.rescue*"))
    nodes = pool.run("condor_history", "-constraint", f"DAGManJobId == {dag_id}", "-json", user="alice")
    node_ads = json.loads(nodes.stdout)
    assert {a["DAGNodeName"] for a in node_ads} == {"A", "B", "C", "D"}
    assert {a["JobBatchName"] for a in node_ads} == {f"diamond.dag+{dag_id}"}
    d = next(a for a in node_ads if a["DAGNodeName"] == "D")
    assert d["DAGParentNodeNames"] == "B,C" and d["SubmitEventNotes"] == "DAG Node: D"
    assert d["DAGManNodesLog"] == str(work / "diamond.dag.nodes.log")


def test_retry_until_success_and_unless_exit_stops_retrying(pool: RunningPool, tmp_path: Path) -> None:
    dag = "JOB A node.sub\nJOB B node.sub\nRETRY A 3\nRETRY B 3 UNLESS-EXIT 5\n"
    work = dag_directory(tmp_path, {"node.sub": NODE, "retry.dag": dag})

    def decide(ad: dict[str, object]) -> int:
        if ad["DAGNodeName"] == "A":
            return 1 if int(str(ad.get("DAGManNodeRetry", 0))) < 2 else 0  # fails twice, then works
        return 5

    _dag_id, ad, worker = run_dag(pool, work, "retry.dag", decide)
    assert by_node(worker) == {"A": [0, 1, 2], "B": [0]}
    assert ad["ExitCode"] == 1
    rescue = (work / "retry.dag.rescue001").read_text()
    assert "DONE A" in rescue and "DONE B" not in rescue and "# Nodes that failed: 1" in rescue


def test_pre_skip_and_the_scripts_macros(pool: RunningPool, tmp_path: Path) -> None:
    dag = (
        "JOB A node.sub\nJOB B node.sub\nPARENT A CHILD B\n"
        "SCRIPT PRE A skip.sh $JOB $RETRY $MAX_RETRIES\nPRE_SKIP A 2\nRETRY A 1\n"
        "SCRIPT POST B post.sh $JOB $RETURN $JOBID $PRE_SCRIPT_RETURN\n"
    )
    files = {
        "node.sub": NODE,
        "skip.dag": dag,
        "skip.sh": '#!/bin/sh\necho "pre $*" > pre.out\nid -un >> pre.out\nexit 2\n',
        "post.sh": '#!/bin/sh\necho "post $*"\nexit 0\n',
    }
    work = dag_directory(tmp_path, files)
    worker = Worker(pool, lambda ad: 3)  # B's job fails; its POST script succeeds: the node succeeds
    try:
        dag_id = submit_dag(pool, work, "skip.dag")
        ad = wait_dag(pool, dag_id)
    finally:
        worker.stop()
    assert ad["ExitCode"] == 0
    assert by_node(worker) == {"B": [0]}  # A's job never ran
    pre = (work / "pre.out").read_text().split("\n")
    assert pre[0] == "pre A 0 1" and pre[1] == JOB_ACCOUNT  # run as the DAG's owner, never root
    out = (work / "skip.dag.dagman.out").read_text()
    cluster = worker.ran[0][2]
    assert f"post B 3 {cluster}.0 -1" in out
    events = events_of(work / "skip.dag.nodes.log")
    assert (16, cluster, "B") in events and any(number == 34 and node == "A" for number, _c, node in events)


def test_abort_dag_on_removes_the_running_and_the_final_node_runs(pool: RunningPool, tmp_path: Path) -> None:
    dag = (
        "JOB A node.sub\nJOB SLOW node.sub\nJOB C node.sub\nPARENT A CHILD C\n"
        "ABORT-DAG-ON A 7 RETURN 3\nFINAL F final.sub\nSCRIPT POST F final.sh $DAG_STATUS $FAILED_COUNT\n"
    )
    files = {
        "node.sub": NODE,
        "final.sub": NODE,
        "abort.dag": dag,
        "final.sh": '#!/bin/sh\necho "final $*" > final.out\nexit 0\n',
    }
    work = dag_directory(tmp_path, files)
    decisions = {"A": 7, "SLOW": None, "F": 0}
    _dag_id, ad, worker = run_dag(pool, work, "abort.dag", lambda ad: decisions.get(str(ad["DAGNodeName"])))
    assert "C" not in by_node(worker) and "F" in by_node(worker)
    # DAG_STATUS_ABORT; A failed, and SLOW, whose job the abort removed
    assert (work / "final.out").read_text().split() == ["final", "3", "2"]
    assert ad["ExitCode"] == 0  # the FINAL node succeeded: so did the DAG
    slow = [a for a in json.loads(pool.run("condor_history", "-constraint", 'DAGNodeName == "SLOW"', "-json",
                                           user="alice").stdout)]  # fmt: skip
    assert slow and slow[0]["JobStatus"] == 3  # removed by the abort
    assert "DONE" not in (work / "abort.dag.rescue001").read_text().split("<ENDLIST>")[1]


def test_maxjobs_by_category_and_maxjobs_overall(pool: RunningPool, tmp_path: Path) -> None:
    nodes = "".join(f"JOB N{i} node.sub\nCATEGORY N{i} heavy\n" for i in range(6))
    dag = nodes + "MAXJOBS heavy 2\nJOB L1 node.sub\nJOB L2 node.sub\nJOB L3 node.sub\n"
    work = dag_directory(tmp_path, {"node.sub": NODE, "cat.dag": dag})
    worker = Worker(pool, lambda ad: None, slots=16)  # hold everything: count what is queued at once
    try:
        dag_id = submit_dag(pool, work, "cat.dag", "-maxjobs", "4")
        wait_for(lambda: len(worker.running) == 4, 30)
        queued = queue_ads(pool, f"DAGManJobId == {dag_id}")
        heavy = [a for a in queued if str(a["DAGNodeName"]).startswith("N")]
        assert len(queued) == 4 and len(heavy) == 2
        worker.decide = lambda ad: 0
        ad = wait_dag(pool, dag_id)
    finally:
        worker.stop()
    assert ad["ExitCode"] == 0 and len(worker.ran) == 9


def test_a_splice_and_an_external_sub_dag(pool: RunningPool, tmp_path: Path) -> None:
    files = {
        "node.sub": NODE,
        "inner/node.sub": NODE,
        "inner/inner.dag": "JOB X node.sub\nJOB Y node.sub\nPARENT X CHILD Y\n",
        "part.dag": "JOB P node.sub\nJOB Q node.sub\nPARENT P CHILD Q\n",
        "outer.dag": "JOB A node.sub\nSPLICE S part.dag\nSUBDAG EXTERNAL SUB inner.dag DIR inner\n"
        "PARENT A CHILD S\nPARENT S CHILD SUB\n",
    }
    work = dag_directory(tmp_path, files)
    dag_id, ad, worker = run_dag(pool, work, "outer.dag", lambda ad: 0)
    assert ad["ExitCode"] == 0
    assert [node for node, _r, _c in worker.ran] == ["A", "S+P", "S+Q", "X", "Y"]
    inner = json.loads(
        pool.run("condor_history", "-constraint", "JobUniverse == 7", "-json", user="alice").stdout
    )
    sub = next(a for a in inner if a.get("DAGNodeName") == "SUB")
    assert sub["DAGManJobId"] == dag_id and sub["ExitCode"] == 0
    assert (work / "inner" / "inner.dag.dagman.out").exists() and (
        work / "inner" / "inner.dag.condor.sub"
    ).exists()


def test_a_failed_dag_leaves_a_rescue_dag_that_the_next_submission_uses(
    pool: RunningPool, tmp_path: Path
) -> None:
    work = dag_directory(tmp_path, {"node.sub": NODE, "diamond.dag": DIAMOND})
    worker = Worker(pool, lambda ad: 1 if ad["DAGNodeName"] == "C" else 0)
    try:
        first = wait_dag(pool, submit_dag(pool, work, "diamond.dag"))
        assert first["ExitCode"] == 1
        rescue = (work / "diamond.dag.rescue001").read_text()
        assert "DONE A\nDONE B\n" in rescue and "DONE C" not in rescue and "#   C,<ENDLIST>" in rescue
        worker.ran.clear()
        worker.decide = lambda ad: 0
        again = pool.run("condor_submit_dag", "diamond.dag", user="alice", cwd=work)
        assert again.returncode == 0, again.stderr
        assert again.lines[0] == "Running rescue DAG 1 (diamond.dag.rescue001): 2 node(s) already DONE"
        second_id = int(
            next(line for line in again.lines if "submitted to cluster" in line).rstrip(".").split()[-1]
        )
        second = wait_dag(pool, second_id)
    finally:
        worker.stop()
    assert second["ExitCode"] == 0 and sorted(node for node, _r, _c in worker.ran) == ["C", "D"]


def test_condor_rm_of_the_dag_removes_its_nodes_and_writes_the_rescue_dag(
    pool: RunningPool, tmp_path: Path
) -> None:
    work = dag_directory(tmp_path, {"node.sub": NODE, "diamond.dag": DIAMOND})
    worker = Worker(pool, lambda ad: 0 if ad["DAGNodeName"] == "A" else None)
    try:
        dag_id = submit_dag(pool, work, "diamond.dag")
        wait_for(lambda: len(worker.running) == 2, 30)
        removed = pool.run("condor_rm", str(dag_id), user="alice")
        assert removed.returncode == 0, removed.stderr
        ad = wait_dag(pool, dag_id)
        wait_for(lambda: (work / "diamond.dag.rescue001").exists(), 20)
        wait_for(lambda: not queue_ads(pool, f"DAGManJobId == {dag_id}"), 20)
    finally:
        worker.stop()
    assert ad["JobStatus"] == 3
    assert "DONE A" in (work / "diamond.dag.rescue001").read_text()
    assert "D" not in by_node(worker)


def test_hold_pauses_the_dag_and_release_resumes_it(pool: RunningPool, tmp_path: Path) -> None:
    work = dag_directory(tmp_path, {"node.sub": NODE, "diamond.dag": DIAMOND})
    gate = {"open": False}
    worker = Worker(pool, lambda ad: 0 if ad["DAGNodeName"] != "A" or gate["open"] else None)
    try:
        dag_id = submit_dag(pool, work, "diamond.dag")
        wait_for(lambda: len(worker.running) == 1, 30)
        assert pool.run("condor_hold", str(dag_id), user="alice").returncode == 0
        wait_for(lambda: queue_ads(pool, f"ClusterId == {dag_id}")[0]["JobStatus"] == 5, 10)
        gate["open"] = True  # A ends while the DAG is held: no child may be submitted
        wait_for(lambda: by_node(worker).get("A"), 10)
        import time

        time.sleep(2.0)
        assert not queue_ads(pool, f"DAGManJobId == {dag_id}") and list(by_node(worker)) == ["A"]
        assert pool.run("condor_release", str(dag_id), user="alice").returncode == 0
        ad = wait_dag(pool, dag_id)
    finally:
        worker.stop()
    assert ad["ExitCode"] == 0 and sorted(by_node(worker)) == ["A", "B", "C", "D"]
    assert "Running in RECOVERY mode" in (work / "diamond.dag.dagman.out").read_text()


def test_kill_9_of_the_pool_mid_dag_neither_loses_nor_repeats_a_node(tmp_path: Path) -> None:
    pool = start_pool(tmp_path / "pool")
    chain = "".join(f"JOB N{i} node.sub\n" for i in range(6)) + "".join(
        f"PARENT N{i} CHILD N{i + 1}\n" for i in range(5)
    )
    chain += "SCRIPT POST N2 post.sh $JOB\n"
    work = dag_directory(
        tmp_path, {"node.sub": NODE, "chain.dag": chain, "post.sh": "#!/bin/sh\necho $1 >> posts\n"}
    )
    worker = Worker(pool, lambda ad: 0 if int(str(ad["DAGNodeName"])[1]) < 3 else None)
    try:
        dag_id = submit_dag(pool, work, "chain.dag")
        wait_for(lambda: len(worker.running) == 1, 60)  # N3 runs: N0..N2 are done
        pool.kill()
        pool.process.start()  # the same pilot goes on with its claim on N3
        worker.decide = lambda ad: 0
        ad = wait_dag(pool, dag_id, timeout=120)
        nodes = json.loads(pool_history_json(pool, dag_id))
    finally:
        worker.stop()
        pool.stop()
    assert ad["ExitCode"] == 0
    attempts = sorted((a["DAGNodeName"], a["DAGManNodeRetry"]) for a in nodes)
    assert attempts == [(f"N{i}", 0) for i in range(6)]  # each node once: none lost, none twice
    out = (work / "chain.dag.dagman.out").read_text()
    assert "Running in RECOVERY mode" in out
    assert (work / "posts").read_text().split() == ["N2"]  # its POST script ran once


def test_a_killed_engine_is_started_again_and_recovers(pool: RunningPool, tmp_path: Path) -> None:
    chain = "JOB N0 node.sub\nJOB N1 node.sub\nJOB N2 node.sub\nPARENT N0 CHILD N1\nPARENT N1 CHILD N2\n"
    work = dag_directory(tmp_path, {"node.sub": NODE, "chain.dag": chain})
    worker = Worker(pool, lambda ad: 0 if ad["DAGNodeName"] == "N0" else None)
    try:
        dag_id = submit_dag(pool, work, "chain.dag")
        wait_for(lambda: len(worker.running) == 1, 30)  # N1 runs
        engine = int((work / "chain.dag.lock").read_text())
        os.kill(engine, 9)
        wait_for(lambda: "Running in RECOVERY mode" in (work / "chain.dag.dagman.out").read_text(), 20)
        worker.decide = lambda ad: 0
        ad = wait_dag(pool, dag_id)
        nodes = json.loads(pool_history_json(pool, dag_id))
    finally:
        worker.stop()
    assert ad["ExitCode"] == 0
    assert sorted((a["DAGNodeName"], a["DAGManNodeRetry"]) for a in nodes) == [
        ("N0", 0),
        ("N1", 0),
        ("N2", 0),
    ]


def pool_history_json(pool: RunningPool, dag_id: int) -> str:
    return pool.run("condor_history", "-constraint", f"DAGManJobId == {dag_id}", "-json", user="alice").stdout


@pytest.mark.skipif(not IS_ROOT, reason="only a root pool runs DAGs as another account")
def test_the_engine_and_its_scripts_run_as_the_owner(pool: RunningPool, tmp_path: Path) -> None:
    files = {
        "node.sub": NODE,
        "who.dag": "JOB A node.sub\nSCRIPT PRE A who.sh\n",
        "who.sh": "#!/bin/sh\nid -u > who\n",
    }
    work = dag_directory(tmp_path, files)
    run_dag(pool, work, "who.dag", lambda ad: 0)
    import pwd

    uid = pwd.getpwnam(JOB_ACCOUNT).pw_uid
    assert (work / "who").read_text().strip() == str(uid)
    for name in ("who.dag.dagman.out", "who.dag.metrics", "who.dag.lock"):
        assert os.stat(work / name).st_uid == uid, name
