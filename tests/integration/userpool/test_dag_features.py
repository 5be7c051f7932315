"""The rest of DAGMan's language on the pool (issue 16): VARS and inline descriptions reaching the
jobs, INCLUDE, DIR, SET_JOB_ATTR, CONFIG knobs, the node status file, the job state log, DOT, a
script's timeout, condor_q's DAG views, and what a hostile token holder cannot do with DAGs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dags import Worker, dag_directory, queue_ads, run_dag, submit_dag, wait_dag
from tests.support.factories import wait_for
from tests.support.pools import RunningPool, start_pool
from updraft.core.client import Client, ClientError
from updraft.core.payloads import QueryRequest, TokenRequest
from updraft.core.protocol import Scope

NODE = "executable = /bin/true\narguments = $(JOB) $(RETRY)\nqueue\n"


@pytest.fixture()
def pool(tmp_path: Path) -> Iterator[RunningPool]:
    home = tmp_path / "pool"
    home.mkdir()
    (home / "pool.yaml").write_text("dag_script_timeout_s: 2\nmax_running_scheduler_jobs_per_owner: 1\n")
    running = start_pool(home)
    yield running
    running.stop()


def history(pool: RunningPool, constraint: str) -> list[dict[str, object]]:
    return json.loads(
        pool.run("condor_history", "-constraint", constraint, "-json", user="alice").stdout or "[]"
    )


def test_vars_inline_descriptions_include_dir_and_set_job_attr(pool: RunningPool, tmp_path: Path) -> None:
    files = {
        "node.sub": "executable = /bin/true\narguments = $(JOB) $(RETRY) $(color)\nqueue\n",
        "sub/in.sub": "executable = /bin/true\narguments = in-dir\nqueue\n",
        "more.dag": 'JOB INC node.sub\nVARS INC color="blue"\n',
        "all.dag": (
            'JOB A node.sub\nVARS A color="red" +Custom="yes"\n'
            "JOB B {\n  executable = /bin/true\n  arguments = inline $(JOB)\n}\n"
            "SUBMIT-DESCRIPTION shared {\n  executable = /bin/true\n  arguments = shared $(JOB)\n}\n"
            "JOB C shared\nJOB D in.sub DIR sub\nINCLUDE more.dag\n"
            'PARENT A CHILD B C D INC\nSET_JOB_ATTR Campaign = "winter"\n'
        ),
    }
    work = dag_directory(tmp_path, files)
    dag_id, ad, _worker = run_dag(pool, work, "all.dag", lambda ad: 0)
    assert ad["ExitCode"] == 0 and ad["Campaign"] == "winter"
    nodes = {str(a["DAGNodeName"]): a for a in history(pool, f"DAGManJobId == {dag_id}")}
    assert nodes["A"]["Args"] == "A 0 red" and nodes["A"]["Custom"] == "yes"
    assert nodes["B"]["Args"] == "inline B" and nodes["C"]["Args"] == "shared C"
    assert nodes["D"]["Iwd"] == str(work / "sub") and nodes["INC"]["Args"] == "INC 0 blue"


def test_config_knobs_apply_and_an_unknown_one_is_refused_with_its_line(
    pool: RunningPool, tmp_path: Path
) -> None:
    nodes = "".join(f"JOB N{i} node.sub\n" for i in range(4))
    files = {
        "node.sub": NODE,
        "one.config": "# one node at a time\nDAGMAN_MAX_JOBS_SUBMITTED = 1\nDAGMAN_USER_LOG_SCAN_INTERVAL = 5\n",
        "bad.config": "DAGMAN_MAX_JOBS_SUBMITTED = 1\nDAGMAN_NO_SUCH_KNOB = 3\n",
        "one.dag": nodes + "CONFIG one.config\n",
        "bad.dag": nodes + "CONFIG bad.config\n",
    }
    work = dag_directory(tmp_path, files)
    refused = pool.run("condor_submit_dag", "bad.dag", user="alice", cwd=work)
    assert (
        refused.returncode == 1
        and "bad.config (line 2): unknown DAGMan knob DAGMAN_NO_SUCH_KNOB" in refused.stderr
    )
    assert not (work / "bad.dag.condor.sub").exists()
    worker = Worker(pool, lambda ad: None, slots=8)
    try:
        dag_id = submit_dag(pool, work, "one.dag")
        wait_for(lambda: len(worker.running) == 1, 30)
        assert len(queue_ads(pool, f"DAGManJobId == {dag_id}")) == 1
        worker.decide = lambda ad: 0
        wait_dag(pool, dag_id)
    finally:
        worker.stop()
    out = (work / "one.dag.dagman.out").read_text()
    assert "DAGMAN_USER_LOG_SCAN_INTERVAL in one.config has no effect here" in out


def test_the_node_status_file_the_job_state_log_and_dot(pool: RunningPool, tmp_path: Path) -> None:
    dag = (
        "JOB A node.sub\nJOB B node.sub\nPARENT A CHILD B\nNODE_STATUS_FILE status.txt 1\n"
        "JOBSTATE_LOG jobstate.log\nDOT graph.dot UPDATE\n"
    )
    work = dag_directory(tmp_path, {"node.sub": NODE, "files.dag": dag})
    _dag_id, _ad, _worker = run_dag(pool, work, "files.dag", lambda ad: 0 if ad["DAGNodeName"] == "A" else 1)
    status = (work / "status.txt").read_text()
    import classad2

    ads = [classad2.parseOne(f"[{block}") for block in status.split("[")[1:]]
    assert ads[0]["Type"] == "DagStatus" and ads[0]["NodesDone"] == 1 and ads[0]["NodesFailed"] == 1
    by_node = {ad["Node"]: ad for ad in ads if ad["Type"] == "NodeStatus"}
    assert (
        by_node["A"]["NodeStatus"] == 5 and by_node["B"]["NodeStatus"] == 6 and ads[-1]["Type"] == "StatusEnd"
    )
    lines = [line.split() for line in (work / "jobstate.log").read_text().splitlines()]
    assert lines[0][1:4] == ["INTERNAL", "***", "DAGMAN_STARTED"] and lines[-1][3] == "DAGMAN_FINISHED"
    events = [(line[1], line[2]) for line in lines if line[1] != "INTERNAL"]
    assert ("A", "SUBMIT") in events and ("A", "JOB_SUCCESS") in events and ("B", "JOB_FAILURE") in events
    assert events.index(("A", "JOB_SUCCESS")) < events.index(("B", "SUBMIT"))
    dot = (work / "graph.dot").read_text()
    assert dot.startswith("digraph DAG {") and '"A" -> "B";' in dot and "(failed)" in dot


def test_a_script_past_its_timeout_is_killed_and_fails_the_node(pool: RunningPool, tmp_path: Path) -> None:
    files = {
        "node.sub": NODE,
        "slow.dag": "JOB A node.sub\nSCRIPT PRE A slow.sh\n",
        "slow.sh": "#!/bin/sh\nsleep 60\n",
    }
    work = dag_directory(tmp_path, files)
    dag_id = submit_dag(pool, work, "slow.dag")
    ad = wait_dag(pool, dag_id, timeout=40)
    assert ad["ExitCode"] == 1
    out = (work / "slow.dag.dagman.out").read_text()
    assert (
        "killed after 2 s, the pool's dag_script_timeout_s" in out
        and "PRE Script of node A failed with status -9" in out
    )


def test_condor_q_shows_a_dag_as_one_batch_and_its_nodes_under_it(pool: RunningPool, tmp_path: Path) -> None:
    dag = "JOB A node.sub\nJOB B node.sub\nJOB C node.sub\nPARENT A CHILD C\n"
    work = dag_directory(tmp_path, {"node.sub": NODE, "q.dag": dag})
    worker = Worker(pool, lambda ad: None)
    try:
        dag_id = submit_dag(pool, work, "q.dag")
        wait_for(lambda: len(worker.running) == 2, 30)
        wait_for(lambda: queue_ads(pool, f"ClusterId == {dag_id}")[0].get("DAG_NodesTotal") == 3, 20)
        batch = pool.run("condor_q", user="alice").lines
        row = next(line for line in batch if f"q.dag+{dag_id}" in line).split()
        assert row[0] == "alice" and row[4:8] == ["_", "2", "_", "3"], row  # DONE RUN IDLE TOTAL: the nodes'
        assert f"{dag_id}.0" not in row[8:]  # the DAGMan job is not one of the batch's jobs
        nested = pool.run("condor_q", "-dag", "-nobatch", user="alice").lines
        rows = [line for line in nested if line.strip() and line.split()[0][0].isdigit()]
        assert rows[0].split()[0] == f"{dag_id}.0" and rows[0].split()[1] == "alice"
        assert {line.split()[1] for line in rows[1:]} == {"|-A", "|-B"}
    finally:
        worker.decide = lambda ad: 0
        wait_dag(pool, dag_id)
        worker.stop()


def test_a_user_cannot_pose_as_a_dags_engine(pool: RunningPool, tmp_path: Path) -> None:
    work = dag_directory(tmp_path, {"node.sub": NODE, "x.dag": "JOB A node.sub\n"})
    (work / "fake.sub").write_text('executable = /bin/true\n+DAGManJobId = 1\n+DAGNodeName = "A"\nqueue\n')
    refused = pool.run("condor_submit", "fake.sub", user="mallory", cwd=work)
    assert refused.returncode != 0 and "only that DAG's own DAGMan submits its nodes" in refused.stderr
    with pytest.raises(ClientError) as minted:
        pool.client("mallory").mint_token(TokenRequest("mallory", ["user"], 600, {"dag": "1"}))
    assert minted.value.status == 403
    worker = Worker(pool, lambda ad: None)
    try:
        dag_id = submit_dag(pool, work, "x.dag")
        wait_for(lambda: len(worker.running) == 1, 30)
        with pytest.raises(ClientError) as streamed:
            next(iter(pool.client("mallory").stream_events(-1, 5.0, dag=dag_id)))
        assert streamed.value.status == 403
        edit = pool.run("condor_qedit", str(dag_id), "JobUniverse", "5", user="alice")
        assert edit.returncode != 0
        taken = pool.run("condor_rm", str(dag_id), user="mallory")
        assert taken.returncode != 0 and queue_ads(pool, f"ClusterId == {dag_id}")
    finally:
        pool.run("condor_rm", str(dag_id), user="alice")
        worker.stop()


def test_the_engine_s_token_dies_with_its_dag_and_its_scripts_never_see_it(
    pool: RunningPool, tmp_path: Path
) -> None:
    files = {
        "node.sub": NODE,
        "t.dag": "JOB A node.sub\nSCRIPT PRE A grab.sh\n",
        "grab.sh": "#!/bin/sh\nenv > env.out\n",
    }
    work = dag_directory(tmp_path, files)
    dag_id, _ad, _worker = run_dag(pool, work, "t.dag", lambda ad: 0)
    assert "UPDRAFT_TOKEN" not in (work / "env.out").read_text()
    # a token as the engine had (bound to the DAG, issued while it ran) is refused once the DAG is over
    engine_like = pool.signer().issue(
        "alice", frozenset({Scope.USER}), 600, {"dag": str(dag_id)}, time.time() - 5
    )[0]
    client = Client.from_environment(pool=pool.url, token=engine_like, home=pool.home)
    wait_for(lambda: _refused(client), 10)


def _refused(client: Client) -> bool:
    try:
        client.query(QueryRequest(limit=1))
    except ClientError as exc:
        return exc.status == 401 and "revoked" in exc.message
    return False


def test_a_users_dags_past_the_per_owner_limit_wait_their_turn(pool: RunningPool, tmp_path: Path) -> None:
    work = dag_directory(
        tmp_path, {"node.sub": NODE, "one.dag": "JOB A node.sub\n", "two.dag": "JOB B node.sub\n"}
    )
    worker = Worker(pool, lambda ad: None)
    try:
        first = submit_dag(pool, work, "one.dag")
        wait_for(lambda: len(worker.running) == 1, 30)
        second = submit_dag(pool, work, "two.dag")
        time.sleep(2.0)  # the pool's limit (max_running_scheduler_jobs_per_owner: 1 here) keeps it idle
        assert queue_ads(pool, f"ClusterId == {second}")[0]["JobStatus"] == 1 and len(worker.running) == 1
        worker.decide = lambda ad: 0
        assert wait_dag(pool, first)["ExitCode"] == 0 and wait_dag(pool, second)["ExitCode"] == 0
    finally:
        worker.stop()


def test_a_sigterm_to_the_pools_whole_group_stops_it_without_spinning(tmp_path: Path) -> None:
    """What systemd's default stop does: SIGTERM to every process of the unit at once. The DAG
    engines' launcher ends first; the pool must not spin on its closed socket, and must stop."""
    pool = start_pool(tmp_path / "pool")
    process = pool.process.process
    assert process is not None
    children = subprocess.run(
        ["pgrep", "-P", str(process.pid)], capture_output=True, text=True
    ).stdout.split()
    assert children, "the pool forks its helpers at start"
    for child in children:
        os.kill(int(child), signal.SIGTERM)
    time.sleep(1.5)  # the supervisor notices at its next tick
    before = cpu_seconds(process.pid)
    time.sleep(2.0)
    assert cpu_seconds(process.pid) - before < 0.5, "the pool spins on its launcher's closed socket"
    assert pool.run("condor_q", user="alice").returncode == 0
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert "the DAG engines' launcher ended" in (pool.home / "pool.stderr").read_text()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
