"""The DAG language as DAGMan reads it (HTCondor's manual and condor_dagman's parser), and its errors.

Each construct of docs/automated-workflows is read into the model; each mistake is refused
with the file and line in DAGMan's own words, before anything could be queued.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from userpool.dag.check import check_dag, find_cycle
from userpool.dag.model import NodeKind, ScriptWhen
from userpool.dag.parse import DagError, parse_dag, parse_vars
from userpool.dag.rescue import apply_rescue, next_rescue, rescue_files, rescue_text, set_aside


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.sub").write_text("executable = /bin/true\nqueue\n")
    return tmp_path


def dag(text: str, name: str = "x.dag") -> str:
    Path(name).write_text(text)
    return name


def refused(text: str, name: str = "x.dag") -> DagError:
    with pytest.raises(DagError) as caught:
        check_dag(parse_dag(dag(text, name)))
    return caught.value


def test_the_diamond_with_every_node_option() -> None:
    parsed = parse_dag(dag(
        "# the manual's diamond\n"
        "JOB A a.sub\n"
        "job B a.sub DIR sub NOOP\n"
        "Node C a.sub DONE\n"
        "JOB D a.sub DIR sub NOOP DONE\n"
        "PARENT A CHILD B C\n"
        "parent B C child D\n"
    ))  # fmt: skip
    assert list(parsed.nodes) == ["A", "B", "C", "D"]
    b, c, d = parsed.nodes["B"], parsed.nodes["C"], parsed.nodes["D"]
    assert (
        (b.directory, b.noop, b.done) == ("sub", True, False) and c.done and (d.noop, d.done) == (True, True)
    )
    assert parsed.nodes["A"].children == {"B", "C"} and d.parents == {"B", "C"}
    assert parsed.roots() == ["A"] and parsed.leaves() == ["D"] and parsed.edges() == 4


def test_comments_continuations_and_case() -> None:
    parsed = parse_dag(dag(
        "   # an indented comment\n"
        "JOB A a.sub\n"
        "JOB B \\\n"
        "   a.sub\n"
        "PARENT A \\\n"
        "# a commented-out continuation line\n"
        "  CHILD B\n"
        "Retry B 1\n"
    ))  # fmt: skip
    assert parsed.nodes["B"].parents == {"A"} and parsed.nodes["B"].retry == 1
    error = refused("JOB A a.sub\nRETRY a 1\n")
    assert str(error) == "ERROR: x.dag (line 2): Unknown Job a (did you mean A?)"


def test_inline_and_shared_submit_descriptions() -> None:
    parsed = parse_dag(dag(
        "SUBMIT-DESCRIPTION Shared {\n    executable = /bin/echo\n    arguments = $(JOB)\n}\n"
        "JOB A Shared\n"
        "JOB B {\n    executable = /bin/true\n}\n"
        "JOB C{\n  executable = /bin/false\n}\n"
        "PARENT A CHILD B C\n"
    ))  # fmt: skip
    assert parsed.descriptions["Shared"].split() == [
        "executable",
        "=",
        "/bin/echo",
        "arguments",
        "=",
        "$(JOB)",
    ]
    assert parsed.nodes["A"].submit == "Shared" and "/bin/true" in parsed.nodes["B"].inline
    assert "/bin/false" in parsed.nodes["C"].inline
    check_dag(parsed)  # no file needed for either
    assert "no closing brace" in str(refused("JOB A {\n executable = /bin/true\n"))


def test_retry_vars_scripts_and_the_rest() -> None:
    parsed = parse_dag(dag(
        "JOB A a.sub\nJOB B a.sub\nFINAL F a.sub\n"
        "RETRY A 3 UNLESS-EXIT 42\n"
        'VARS A name="alpha" +Custom="say \\"hi\\"" path="C:\\\\x"\n'
        "VARS ALL_NODES PREPEND shared=\"$(JOB)\"\n"
        "SCRIPT DEFER 4 30 PRE A pre.sh $JOB $RETRY\n"
        "SCRIPT POST A post.sh $JOB $RETURN $PRE_SCRIPT_RETURN\n"
        "PRE_SKIP A 7\nABORT-DAG-ON B 3 RETURN 9\nPRIORITY A 10\n"
        "CATEGORY ALL_NODES light\nMAXJOBS light 2\n"
        "CONFIG dag.config\nDOT dag.dot UPDATE DONT-OVERWRITE\nNODE_STATUS_FILE status.txt 30 ALWAYS-UPDATE\n"
        "JOBSTATE_LOG jobstate.log\nSET_JOB_ATTR Project = \"cms\"\n"
    ))  # fmt: skip
    a, b, final = parsed.nodes["A"], parsed.nodes["B"], parsed.nodes["F"]
    assert (a.retry, a.retry_unless_exit, a.pre_skip, a.priority) == (3, 42, 7, 10)
    assert a.macros() == {"name": "alpha", "My.Custom": 'say "hi"', "path": "C:\\x", "shared": "$(JOB)"}
    assert (
        a.scripts[ScriptWhen.PRE].command == "pre.sh $JOB $RETRY"
        and a.scripts[ScriptWhen.PRE].defer_status == 4
    )
    assert a.scripts[ScriptWhen.POST].command.endswith("$PRE_SCRIPT_RETURN")
    assert (b.abort_on, b.abort_return) == (3, 9)
    assert a.category == b.category == "light" and parsed.maxjobs == {"light": 2}
    assert (
        final.kind == NodeKind.FINAL and parsed.final == "F" and not final.category and not final.vars
    )  # ALL_NODES skips FINAL
    files = parsed.files
    assert (files.config, files.dot, files.dot_update, files.dot_overwrite) == (
        "dag.config",
        "dag.dot",
        True,
        False,
    )
    assert (files.node_status, files.node_status_min_s, files.node_status_always) == ("status.txt", 30, True)
    assert files.jobstate_log == "jobstate.log" and parsed.job_attrs == {"Project": '"cms"'}


def test_include_splice_and_external_subdag() -> None:
    os.mkdir("inner")
    Path("inner/a.sub").write_text("executable = /bin/true\nqueue\n")
    Path("inner/part.dag").write_text(
        "JOB X a.sub\nJOB Y a.sub\nPARENT X CHILD Y\nCATEGORY X local\nMAXJOBS local 1\n"
    )
    Path("more.dag").write_text("JOB B a.sub\n")
    Path("nested.dag").write_text("JOB N a.sub\n")
    parsed = parse_dag(dag(
        "PARENT A CHILD S\n"  # before the nodes: DAGMan reads the node lines first
        "JOB A a.sub\nINCLUDE more.dag\nSPLICE S part.dag DIR inner\n"
        "SUBDAG EXTERNAL Sub nested.dag\nPARENT S CHILD B Sub\n"
    ))  # fmt: skip
    assert set(parsed.nodes) == {"A", "B", "S+X", "S+Y", "Sub"}
    assert parsed.nodes["S+X"].parents == {"A"} and parsed.nodes["S+Y"].children == {"B", "Sub"}
    assert parsed.nodes["S+X"].directory == "inner" and parsed.nodes["S+X"].category == "S+local"
    assert parsed.maxjobs == {"S+local": 1}
    assert parsed.nodes["Sub"].kind == NodeKind.SUBDAG and parsed.nodes["Sub"].submit == "nested.dag"
    assert parsed.sources == ["x.dag", "inner/part.dag"]
    check_dag(parsed)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("JOB A a.sub\nJOB A a.sub\n", "ERROR: x.dag (line 2): node name A is already used (by x.dag, line 1)"),
        ("JOB A a.sub\nPARENT A CHILD Z\n", "ERROR: x.dag (line 2): Unknown Job Z"),
        ("JOB A missing.sub\n", "ERROR: x.dag (line 1): node A's submit file missing.sub does not exist"),
        ("JOB A a.sub\nJOB B a.sub\nJOB C a.sub\nPARENT A CHILD B\nPARENT B CHILD C\nPARENT C CHILD A\n",
         "ERROR: x.dag (line 1): a cycle in the DAG: A -> B -> C -> A"),
        ("JOB PARENT a.sub\n", "JobName cannot be a reserved word (PARENT)"),
        ("JOB a+b a.sub\n", "JobName a+b contains one or more illegal characters ('+')"),
        ("JOB A a.sub BOGUS\n", 'invalid parameter "BOGUS"'),
        ("JOB A a.sub\nRETRY A -1\n", 'Invalid Retry value "-1" (cannot be negative)'),
        ("JOB A a.sub\nRETRY A 2 UNLESS 3\n", "Invalid retry option: UNLESS"),
        ("JOB A a.sub\nABORT-DAG-ON A 1 RETURN 300\n", "Bad return value for ABORT_ON (must be between 0 and 255): 300"),
        ("JOB A a.sub\nVARS A x=1\n", "x's value must be quoted"),
        ("JOB A a.sub\nVARS A queue_x=\"1\"\n", 'Illegal variable name: queue_x; variable names cannot begin with "queue"'),
        ("JOB A a.sub\nVARS A\n", "No valid name-value pairs"),
        ("JOB A a.sub\nSCRIPT PRE A\n", "You named a PRE script for node A but didn't provide a script filename"),
        ("JOB A a.sub\nSCRIPT HOLD A h.sh\n", "HOLD scripts are not supported by Updraft"),
        ("JOB A a.sub\nSERVICE S a.sub\n", "ERROR: x.dag (line 2): SERVICE nodes are not supported by Updraft"),
        ("JOB A a.sub\nPROVISIONER P a.sub\n", "PROVISIONER nodes are not supported by Updraft"),
        ("JOB A a.sub\nENV SET X=1\n", "ENV is not supported by Updraft"),
        ("JOB A a.sub\nMAXJOB c 1\n", "(found MAXJOB) (did you mean MAXJOBS?)"),
        ("FINAL F a.sub\nFINAL G a.sub\n", "a DAG has one FINAL node; F is already one"),
        ("JOB A a.sub\nFINAL F a.sub\nPARENT A CHILD F\n", "FINAL node F cannot have parents or children"),
        ("FINAL F a.sub\nRETRY F 2\n", "Final job F cannot have RETRY specification"),
        ("JOB A a.sub\nPRIORITY A 1 2\n", "Extra token (2) on PRIORITY line"),
        ("JOB A a.sub\nMAXJOBS c -1\n", "MAXJOBS value must be non-negative"),
        ("JOB A a.sub\nREJECT\n", "REJECT specification at x.dag (line 2): this DAG must not run"),
        ("SUBDAG A nested.dag\n", "only SUBDAG EXTERNAL is supported"),
        ("INCLUDE nowhere.dag\n", "ERROR: nowhere.dag: Could not open file for input (No such file or directory)"),
    ],
)  # fmt: skip
def test_mistakes_are_refused_with_the_file_and_line(text: str, message: str) -> None:
    assert message in str(refused(text))


def test_an_include_loop_and_a_splice_of_itself_are_refused() -> None:
    assert "INCLUDE nested more than" in str(refused("INCLUDE x.dag\n"))
    assert "nested more than" in str(refused("SPLICE S x.dag\n"))


def test_errors_in_an_included_file_name_that_file() -> None:
    Path("more.dag").write_text("JOB B a.sub\n\nRETRY B many\n")
    assert (
        str(refused("JOB A a.sub\nINCLUDE more.dag\n"))
        == 'ERROR: more.dag (line 3): Invalid Retry value "many"'
    )


def test_vars_quoting_follows_dagman() -> None:
    where = ("x.dag", 1)
    assert parse_vars(' a = "1"  b="two words" +C="\\"q\\""', where) == [
        ("a", "1"),
        ("b", "two words"),
        ("My.C", '"q"'),
    ]
    for text, words in (
        ('a="x', "Missing end quote"),
        ('a="\\n"', 'Unknown escape sequence "\\n"'),
        ('a+b="1"', "'+' can only be first"),
    ):
        with pytest.raises(DagError, match=re.escape(words)):
            parse_vars(text, where)


def test_a_long_chain_is_checked_without_recursion() -> None:
    count = 20000
    text = "".join(f"JOB n{i} a.sub\n" for i in range(count)) + "".join(
        f"PARENT n{i} CHILD n{i + 1}\n" for i in range(count - 1)
    )
    parsed = parse_dag(dag(text))
    assert find_cycle(parsed) is None
    check_dag(parsed)


def test_rescue_dags_are_written_found_applied_and_set_aside() -> None:
    parsed = parse_dag(dag("JOB A a.sub\nJOB B a.sub\nJOB C a.sub\nPARENT A CHILD B C\n"))
    text = rescue_text(parsed, done=["A", "C"], failed=["B"], now=0)
    assert text.splitlines()[:10] == [
        "# Rescue DAG file, created after running", "#   the x.dag DAG file", "# Created 1/1/1970 00:00:00 UTC",
        "# Rescue DAG version: 2.0.1 (partial)", "#", "# Total number of Nodes: 3", "# Nodes premarked DONE: 2",
        "# Nodes that failed: 1", "#   B,<ENDLIST>", "",
    ]  # fmt: skip
    assert text.endswith("DONE A\nDONE C\n")
    first = next_rescue("x.dag")
    assert first.name == "x.dag.rescue001"
    first.write_text(text)
    assert next_rescue("x.dag").name == "x.dag.rescue002"
    again = parse_dag("x.dag")
    assert apply_rescue(again, str(rescue_files("x.dag")[-1][1])) == ["A", "C"]
    assert again.nodes["A"].done and not again.nodes["B"].done
    assert [p.name for p in set_aside("x.dag")] == ["x.dag.rescue001.old"] and rescue_files("x.dag") == []
