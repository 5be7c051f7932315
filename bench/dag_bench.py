"""DAG benchmarks (issue 16): a 10,000-node DAG (fan-out to 9,998 nodes and fan-in) parsed and checked.

Target: parsed and accepted (every check condor_submit_dag makes, the submit file's
existence included) in under 2 s.  The engine's own overhead between a node's end and its
children's submission, and the diamond through the demo's pilots, come with the engine.
No anchor: HTCondor's condor_dagman cannot run here (its own -no_submit would be it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import Result, result, say, timer
from userpool.dag.check import check_dag
from userpool.dag.parse import parse_dag


def write_fan(directory: Path, width: int) -> Path:
    (directory / "node.sub").write_text("executable = /bin/true\nqueue\n")
    lines = ["JOB top node.sub", *(f"JOB n{index} node.sub" for index in range(width)), "JOB bottom node.sub"]
    lines += ["PARENT top CHILD " + " ".join(f"n{index}" for index in range(width))]
    lines += [f"PARENT n{index} CHILD bottom" for index in range(width)]
    lines += ['VARS ALL_NODES name="$(JOB)"', "RETRY ALL_NODES 2"]
    path = directory / "fan.dag"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(quick: bool) -> list[Result]:
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
    return [
        result(
            f"dag parse+check {width + 2:,} nodes",
            best,
            "s",
            "<= 2" if not quick else "",
            notes={"edges": 2 * width},
        )
    ]
