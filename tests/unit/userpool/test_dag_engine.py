"""The DAG engine's decisions (userpool/dag/engine.py, states in noderun.py), driven without a pool: DAGMan's rules.

A fake carries out what the engine asks (submissions get cluster ids, scripts are recorded
and ended by the test), so each rule of the HTCondor manual's "Node success/failure",
"Retrying failed nodes", "ABORT-DAG-ON", "FINAL node" and "Throttling" is checked alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from userpool.dag.engine import Engine
from userpool.dag.model import ScriptWhen
from userpool.dag.noderun import (
    NODE_STATES,
    RETURN_JOB_SKIPPED,
    Attempt,
    DagStatus,
    NodeRun,
    NodeState,
    Recovery,
    Settings,
    SubmitFailed,
)
from userpool.dag.parse import parse_dag


@dataclass
class Fake:
    procs: dict[str, int] = field(default_factory=dict)
    fail_submit: dict[str, list[bool]] = field(default_factory=dict)  # node -> lasting? per attempt
    submitted: list[tuple[str, int, int]] = field(default_factory=list)  # (node, retry, cluster)
    scripts: list[tuple[str, ScriptWhen, dict[str, str]]] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    records: list[tuple[str, str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    next_cluster: int = 100

    def submit(self, run: NodeRun, macros: dict[str, str]) -> tuple[int, int]:
        failures = self.fail_submit.get(run.name)
        if failures:
            raise SubmitFailed("no", failures.pop(0))
        self.next_cluster += 1
        self.submitted.append((run.name, run.retry, self.next_cluster))
        return self.next_cluster, self.procs.get(run.name, 1)

    def run_script(self, run: NodeRun, when: ScriptWhen, macros: dict[str, str]) -> None:
        self.scripts.append((run.name, when, macros))

    def remove(self, cluster: int, reason: str) -> None:
        self.removed.append(cluster)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def record(self, run: NodeRun, kind: str, value: int) -> None:
        self.records.append((run.name, kind, value))


def engine_for(
    tmp_path, text: str, settings: Settings | None = None, fake: Fake | None = None
) -> tuple[Engine, Fake]:
    (tmp_path / "n.sub").write_text("queue\n")
    (tmp_path / "t.dag").write_text(text)
    dag = parse_dag(str(tmp_path / "t.dag"))
    fake = fake or Fake()
    engine = Engine(dag, settings or Settings(), fake)
    return engine, fake


def cluster_of(fake: Fake, node: str) -> int:
    return [c for n, _r, c in fake.submitted if n == node][-1]


def finish(engine: Engine, fake: Fake, node: str, value: int = 0, proc: int = 0) -> None:
    engine.proc_ended(cluster_of(fake, node), proc, value)
    engine.pump(0.0)


def test_every_node_state_reaches_an_end() -> None:
    for state in NodeState:
        assert NODE_STATES.reaches_an_end(state)


def test_a_diamond_submits_children_only_after_their_parents(tmp_path) -> None:
    engine, fake = engine_for(
        tmp_path,
        "JOB A n.sub\nJOB B n.sub\nJOB C n.sub\nJOB D n.sub\nPARENT A CHILD B C\nPARENT B C CHILD D\n",
    )
    engine.start()
    engine.pump(0.0)
    assert [n for n, _r, _c in fake.submitted] == ["A"]
    finish(engine, fake, "A")
    assert [n for n, _r, _c in fake.submitted] == ["A", "B", "C"]
    finish(engine, fake, "B")
    assert len(fake.submitted) == 3  # D waits for C
    finish(engine, fake, "C")
    finish(engine, fake, "D")
    assert engine.finished and engine.exit_code == 0 and engine.status == DagStatus.OK


def test_retries_and_unless_exit(tmp_path) -> None:
    engine, fake = engine_for(tmp_path, "JOB A n.sub\nJOB B n.sub\nRETRY A 2\nRETRY B 5 UNLESS-EXIT 3\n")
    engine.start()
    engine.pump(0.0)
    finish(engine, fake, "A", 1)
    finish(engine, fake, "A", 1)
    finish(engine, fake, "A", 1)  # the third failure: no retry left
    finish(engine, fake, "B", 3)  # UNLESS-EXIT: no retry at all
    assert [(n, r) for n, r, _c in fake.submitted] == [("A", 0), ("B", 0), ("A", 1), ("A", 2)]
    assert engine.finished and engine.exit_code == 1 and engine.status == DagStatus.NODE_FAILED
    assert engine.names_in(NodeState.FAILED) == ["A", "B"]


def test_the_last_part_that_ran_decides_the_node(tmp_path) -> None:
    text = "JOB A n.sub\nSCRIPT POST A post $RETURN\nJOB B n.sub\nSCRIPT PRE B pre\nJOB C n.sub\nPARENT B CHILD C\n"
    engine, fake = engine_for(tmp_path, text)
    engine.start()
    engine.pump(0.0)
    finish(engine, fake, "A", 4)
    name, when, macros = fake.scripts[-1]
    assert (name, when, macros["RETURN"]) == ("A", ScriptWhen.POST, "4")
    engine.script_ended("A", ScriptWhen.POST, 0, 0.0)  # the job failed, its POST succeeded: success
    engine.script_ended("B", ScriptWhen.PRE, 1, 0.0)  # PRE failed: no job, node failed, C futile
    engine.pump(0.0)
    assert engine.runs["A"].state == NodeState.DONE and engine.runs["B"].state == NodeState.FAILED
    assert engine.runs["C"].state == NodeState.FUTILE and "B" not in [n for n, _r, _c in fake.submitted]
    assert engine.finished and engine.exit_code == 1


def test_always_run_post_runs_post_after_a_failed_pre_with_return_minus_1004(tmp_path) -> None:
    engine, fake = engine_for(
        tmp_path, "JOB A n.sub\nSCRIPT PRE A pre\nSCRIPT POST A post\n", Settings(always_run_post=True)
    )
    engine.start()
    engine.pump(0.0)
    engine.script_ended("A", ScriptWhen.PRE, 1, 0.0)
    _name, when, macros = fake.scripts[-1]
    assert (
        when == ScriptWhen.POST
        and macros["RETURN"] == str(RETURN_JOB_SKIPPED)
        and macros["PRE_SCRIPT_RETURN"] == "1"
    )
    engine.script_ended("A", ScriptWhen.POST, 0, 0.0)
    engine.pump(0.0)
    assert engine.finished and engine.exit_code == 0


def test_pre_skip_skips_the_job_and_post_and_the_node_succeeds(tmp_path) -> None:
    engine, fake = engine_for(tmp_path, "JOB A n.sub\nSCRIPT PRE A pre\nSCRIPT POST A post\nPRE_SKIP A 9\n")
    engine.start()
    engine.pump(0.0)
    engine.script_ended("A", ScriptWhen.PRE, 9, 0.0)
    engine.pump(0.0)
    assert not fake.submitted and [s[1] for s in fake.scripts] == [ScriptWhen.PRE]
    assert ("A", "pre_skip", 9) in fake.records and engine.finished and engine.exit_code == 0


def test_abort_dag_on_wins_over_retries_removes_what_runs_and_the_final_node_decides(tmp_path) -> None:
    text = "JOB A n.sub\nJOB B n.sub\nJOB C n.sub\nPARENT A CHILD C\nRETRY A 4\nABORT-DAG-ON A 7 RETURN 2\nFINAL F n.sub\n"
    engine, fake = engine_for(tmp_path, text)
    engine.start()
    engine.pump(0.0)
    finish(engine, fake, "A", 7)
    assert fake.removed == [cluster_of(fake, "B")] and engine.status == DagStatus.ABORT
    assert [n for n, _r, _c in fake.submitted] == ["A", "B", "F"]  # no retry of A, no C; FINAL at once
    engine.proc_ended(cluster_of(fake, "B"), 0, -1002)  # the removal arrives
    finish(engine, fake, "F", 1)
    assert engine.finished and engine.exit_code == 1  # the FINAL node failed: so did the DAG
    assert engine.runs["C"].state == NodeState.FUTILE


def test_abort_return_value_without_a_final_node(tmp_path) -> None:
    engine, fake = engine_for(tmp_path, "JOB A n.sub\nABORT-DAG-ON A 7 RETURN 5\n")
    engine.start()
    engine.pump(0.0)
    finish(engine, fake, "A", 7)
    assert engine.finished and engine.exit_code == 5


def test_a_removed_dag_runs_its_final_node(tmp_path) -> None:
    engine, fake = engine_for(tmp_path, "JOB A n.sub\nJOB B n.sub\nPARENT A CHILD B\nFINAL F n.sub\n")
    engine.start()
    engine.pump(0.0)
    engine.abort(1, DagStatus.RM)
    engine.pump(0.0)
    assert [n for n, _r, _c in fake.submitted] == ["A", "F"] and fake.removed == [cluster_of(fake, "A")]
    macros = engine.submit_macros(engine.runs["F"])
    assert macros["DAG_STATUS"] == str(int(DagStatus.RM))
    finish(engine, fake, "F", 0)
    assert engine.finished and engine.exit_code == 0


def test_throttles_maxjobs_categories_maxidle_and_priority(tmp_path) -> None:
    text = "".join(f"JOB N{i} n.sub\nCATEGORY N{i} c\nPRIORITY N{i} {i}\n" for i in range(5))
    text += "MAXJOBS c 2\nJOB X n.sub\nJOB Y n.sub\n"
    engine, fake = engine_for(tmp_path, text, Settings(maxjobs=3))
    engine.start()
    engine.pump(0.0)
    assert [n for n, _r, _c in fake.submitted] == ["N4", "N3", "X"]  # priority first; 2 of category c
    finish(engine, fake, "X")
    assert [n for n, _r, _c in fake.submitted][-1] == "Y"
    engine, fake = engine_for(
        tmp_path, "JOB A n.sub\nJOB B n.sub\nJOB C n.sub\n", Settings(maxidle=3), Fake(procs={"A": 2, "B": 2})
    )
    engine.start()
    engine.pump(0.0)
    assert [n for n, _r, _c in fake.submitted] == ["A", "B"]  # 4 idle procs: C waits
    engine.proc_started(cluster_of(fake, "A"), 0)
    engine.proc_started(cluster_of(fake, "A"), 1)
    engine.pump(0.0)
    assert [n for n, _r, _c in fake.submitted] == ["A", "B", "C"]


def test_maxpre_and_maxpost_limit_scripts_at_once(tmp_path) -> None:
    text = "".join(f"JOB N{i} n.sub\nSCRIPT PRE N{i} pre\n" for i in range(3))
    engine, fake = engine_for(tmp_path, text, Settings(maxpre=1))
    engine.start()
    engine.pump(0.0)
    assert len(fake.scripts) == 1
    engine.script_ended("N0", ScriptWhen.PRE, 0, 0.0)
    engine.pump(0.0)
    assert len(fake.scripts) == 2 and [n for n, _r, _c in fake.submitted] == ["N0"]


def test_a_failed_proc_fails_the_node_and_removes_the_rest(tmp_path) -> None:
    engine, fake = engine_for(tmp_path, "JOB A n.sub\n", fake=Fake(procs={"A": 3}))
    engine.start()
    engine.pump(0.0)
    engine.proc_ended(cluster_of(fake, "A"), 0, 0)
    engine.proc_ended(cluster_of(fake, "A"), 1, 2)
    engine.pump(0.0)
    assert fake.removed == [cluster_of(fake, "A")] and engine.finished and engine.exit_code == 1


def test_noop_and_done_nodes_submit_nothing(tmp_path) -> None:
    engine, fake = engine_for(
        tmp_path, "JOB A n.sub NOOP\nJOB B n.sub DONE\nJOB C n.sub\nPARENT A B CHILD C\n"
    )
    engine.start()
    engine.pump(0.0)
    assert [n for n, _r, _c in fake.submitted] == ["C"]


def test_defer_runs_the_script_again_later(tmp_path) -> None:
    engine, fake = engine_for(tmp_path, "JOB A n.sub\nSCRIPT DEFER 4 30 PRE A pre\n")
    engine.start()
    engine.pump(100.0)
    engine.script_ended("A", ScriptWhen.PRE, 4, 100.0)
    assert engine.pump(110.0) == 130.0 and len(fake.scripts) == 1
    engine.pump(131.0)
    assert len(fake.scripts) == 2


def test_a_submit_that_may_work_later_is_tried_again_a_lasting_one_fails_the_node(tmp_path) -> None:
    engine, fake = engine_for(
        tmp_path, "JOB A n.sub\nJOB B n.sub\n", fake=Fake(fail_submit={"A": [False, False], "B": [True]})
    )
    engine.start()
    engine.pump(0.0)
    assert engine.runs["B"].state == NodeState.FAILED and engine.runs["A"].state == NodeState.READY
    engine.pump(0.5)
    assert not fake.submitted  # the second attempt waits its back-off (1 s, then 2 s)
    engine.pump(1.0)
    engine.pump(3.0)
    assert [n for n, _r, _c in fake.submitted] == ["A"]


def test_recovery_takes_what_the_pool_and_the_nodes_log_know(tmp_path) -> None:
    text = (
        "JOB A n.sub\nJOB B n.sub\nJOB C n.sub\nJOB D n.sub\nJOB E n.sub\nPARENT A CHILD B C D\nPARENT B C D CHILD E\n"
        "SCRIPT POST C post\nSCRIPT POST D post\nRETRY B 2\nSCRIPT PRE E pre\nPRE_SKIP E 3\n"
    )
    engine, fake = engine_for(tmp_path, text)
    recovery = Recovery(
        [
            Attempt("A", 0, 10, {0: (4, 0)}),
            Attempt("B", 0, 11, {0: (4, 1)}),  # failed once: retry 1 is due
            Attempt("C", 0, 12, {0: (4, 0)}),  # done, but its POST result was never logged: POST again
            Attempt("D", 0, 13, {0: (2, None)}),  # still running
        ],
        posts={},
    )
    engine.start(recovery)
    engine.pump(0.0)
    assert [(n, r) for n, r, _c in fake.submitted] == [("B", 1)]
    assert [(s[0], s[1]) for s in fake.scripts] == [("C", ScriptWhen.POST)]
    assert engine.runs["D"].state == NodeState.SUBMITTED and 13 in engine.by_cluster
    engine2, fake2 = engine_for(tmp_path, text)
    engine2.start(
        Recovery([Attempt("A", 0, 10, {0: (4, 0)}), Attempt("C", 0, 12, {0: (4, 0)})], {12: 0}, {"E"})
    )
    engine2.pump(0.0)
    assert engine2.runs["C"].state == NodeState.DONE and engine2.runs["E"].state == NodeState.DONE
    assert sorted(n for n, _r, _c in fake2.submitted) == ["B", "D"] and not fake2.scripts


@pytest.mark.parametrize("value", [0, 1])
def test_the_final_node_runs_after_success_or_failure(tmp_path, value: int) -> None:
    engine, fake = engine_for(tmp_path, "JOB A n.sub\nFINAL F n.sub\n")
    engine.start()
    engine.pump(0.0)
    finish(engine, fake, "A", value)
    assert engine.submit_macros(engine.runs["F"])["DAG_STATUS"] == ("0" if value == 0 else "2")
    finish(engine, fake, "F", 0)
    assert engine.finished and engine.exit_code == 0
