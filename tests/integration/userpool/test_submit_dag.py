"""condor_submit_dag as users meet it: HTCondor's banner and files, errors with file and line, rescue DAGs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.pools import BIN

BANNER = [
    "-" * 71,
    "File for submitting this DAG to HTCondor           : diamond.dag.condor.sub",
    "Log of DAGMan debugging messages                   : diamond.dag.dagman.out",
    "Log of HTCondor library output                     : diamond.dag.lib.out",
    "Log of HTCondor library error messages             : diamond.dag.lib.err",
    "Log of the life of condor_dagman itself            : diamond.dag.dagman.log",
    "",
]


def submit_dag(directory: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "condor_submit_dag"), *argv], cwd=directory, capture_output=True, text=True, timeout=60
    )


def diamond(directory: Path) -> None:
    (directory / "node.sub").write_text("executable = /bin/echo\narguments = $(JOB)\nqueue\n")
    (directory / "diamond.dag").write_text(
        "JOB A node.sub\nJOB B node.sub\nJOB C node.sub\nJOB D node.sub\nPARENT A CHILD B C\nPARENT B C CHILD D\n"
    )


def test_no_submit_checks_the_dag_and_prints_what_htcondor_prints(tmp_path: Path) -> None:
    diamond(tmp_path)
    done = submit_dag(tmp_path, "-no_submit", "-maxjobs", "2", "diamond.dag")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        *BANNER,
        "-no_submit given, not submitting DAG to HTCondor. You can do this with:",
        '"condor_submit diamond.dag.condor.sub"',
        "-" * 71,
    ]
    sub = (tmp_path / "diamond.dag.condor.sub").read_text()
    assert (
        "universe\t= scheduler" in sub
        and '"-Dag diamond.dag -AutoRescue 1 -DoRescueFrom 0 -Maxjobs 2"' in sub
    )
    assert "batch_name\t= diamond.dag+$(Cluster)" in sub
    again = submit_dag(tmp_path, "-no_submit", "diamond.dag")  # its own files exist now: -f or a rescue
    assert again.returncode == 1 and 'use the "-f" option' in again.stderr
    assert submit_dag(tmp_path, "-no_submit", "-f", "diamond.dag").returncode == 0


def test_a_bad_dag_is_refused_with_its_file_and_line_and_nothing_is_written(tmp_path: Path) -> None:
    diamond(tmp_path)
    (tmp_path / "bad.dag").write_text("JOB A node.sub\nJOB B node.sub\nPARENT A CHILD B\nPARENT B CHILD A\n")
    done = submit_dag(tmp_path, "-no_submit", "bad.dag")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "ERROR: bad.dag (line 1): a cycle in the DAG: A -> B -> A",
        "Aborting: the DAG was not submitted.",
    ]
    assert not (tmp_path / "bad.dag.condor.sub").exists()


def test_the_newest_rescue_dag_is_used_and_force_sets_it_aside(tmp_path: Path) -> None:
    diamond(tmp_path)
    (tmp_path / "diamond.dag.rescue001").write_text("# Rescue DAG file\nDONE A\n")
    (tmp_path / "diamond.dag.rescue002").write_text("# Rescue DAG file\nDONE A\nDONE B\n")
    done = submit_dag(tmp_path, "-no_submit", "diamond.dag")
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.splitlines()[0] == "Running rescue DAG 2 (diamond.dag.rescue002): 2 node(s) already DONE"
    )
    chosen = submit_dag(tmp_path, "-no_submit", "-DoRescueFrom", "1", "diamond.dag")
    assert (
        chosen.stdout.splitlines()[0]
        == "Running rescue DAG 1 (diamond.dag.rescue001): 1 node(s) already DONE"
    )
    forced = submit_dag(tmp_path, "-no_submit", "-force", "diamond.dag")
    assert forced.returncode == 0 and "Renamed rescue DAG to diamond.dag.rescue001.old" in forced.stdout
    assert (
        not (tmp_path / "diamond.dag.rescue002").exists()
        and (tmp_path / "diamond.dag.rescue002.old").exists()
    )


def test_options_that_reach_the_dags_engine(tmp_path: Path) -> None:
    diamond(tmp_path)
    (tmp_path / "knobs.config").write_text("DAGMAN_MAX_JOBS_IDLE = 10\n")
    done = submit_dag(
        tmp_path, "-no_submit", "-config", "knobs.config", "-AlwaysRunPost", "-maxidle", "5", "diamond.dag"
    )
    assert done.returncode == 0, done.stderr
    sub = (tmp_path / "diamond.dag.condor.sub").read_text()
    assert (
        '"-Dag diamond.dag -AutoRescue 1 -DoRescueFrom 0 -Maxidle 5 -AlwaysRunPost -Config knobs.config"'
        in sub
    )
    again = submit_dag(tmp_path, "-no_submit", "-update_submit", "-DontAlwaysRunPost", "diamond.dag")
    assert again.returncode == 0 and "-DontAlwaysRunPost" in (tmp_path / "diamond.dag.condor.sub").read_text()
    (tmp_path / "bad.config").write_text("DAGMAN_MAX_JOBS_IDLE = lots\n")
    refused = submit_dag(tmp_path, "-no_submit", "-f", "-config", "bad.config", "diamond.dag")
    assert refused.returncode == 1
    assert (
        "ERROR: bad.config (line 1): DAGMAN_MAX_JOBS_IDLE must be a whole number, not 'lots'"
        in refused.stderr
    )
