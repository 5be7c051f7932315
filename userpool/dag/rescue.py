"""Rescue DAGs as DAGMan writes and reads them: ``file.dag.rescueNNN``, partial (DONE lines only).

A DAG that fails leaves a rescue file naming the nodes that finished; submitting the same
DAG again reads the original file and then the newest rescue file on top of it (DAGMan's
``DAGMAN_AUTO_RESCUE``), so the finished nodes are not run twice.  ``-force`` moves old
rescue files aside (``.old``) and starts from the beginning.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

from userpool.dag.lexical import DagError, statements
from userpool.dag.model import Dag

RESCUE_VERSION = "2.0.1"
MAX_RESCUE = 999  # the file name has three digits (DAGMAN_MAX_RESCUE_NUM, 100 by default, is at most this)


def rescue_files(dag_path: str) -> list[tuple[int, Path]]:
    """(number, path) of the DAG's rescue files, oldest first."""
    path = Path(dag_path)
    pattern = re.compile(re.escape(path.name) + r"\.rescue(\d{3})$")
    found = []
    for candidate in path.parent.glob(path.name + ".rescue*"):
        match = pattern.match(candidate.name)
        if match:
            found.append((int(match.group(1)), candidate))
    return sorted(found)


def next_rescue(dag_path: str, most: int = 100) -> Path:
    """The next rescue file's name; past ``most`` (DAGMAN_MAX_RESCUE_NUM) the last is written again."""
    existing = rescue_files(dag_path)
    number = existing[-1][0] + 1 if existing else 1
    return Path(f"{dag_path}.rescue{min(number, most, MAX_RESCUE):03d}")


def write_rescue(
    dag: Dag,
    done: Iterable[str],
    failed: Iterable[str],
    most: int = 100,
    retries_left: dict[str, int] | None = None,
) -> Path:
    """The rescue DAG of a run that did not finish every node, written whole (a temporary, then a rename)."""
    path = next_rescue(dag.path, most)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(rescue_text(dag, done, failed, retries_left=retries_left))
    temporary.replace(path)
    return path


def set_aside_newer(dag_path: str, number: int) -> list[Path]:
    """Running from an older rescue DAG (-DoRescueFrom): the newer ones become .old, as DAGMan does."""
    moved = []
    for found, path in rescue_files(dag_path):
        if found > number:
            target = path.with_name(path.name + ".old")
            path.replace(target)
            moved.append(target)
    return moved


def rescue_text(
    dag: Dag, done: Iterable[str], failed: Iterable[str], now: float | None = None,
    retries_left: dict[str, int] | None = None,
) -> str:  # fmt: skip
    """A partial rescue DAG: the header DAGMan writes, one DONE line per finished node, and (with
    DAGMAN_RESET_RETRIES_UPON_RESCUE false) a RETRY line with what is left of a node's retries."""
    stamp = time.gmtime(time.time() if now is None else now)
    done_names = [name for name in dag.nodes if name in set(done)]
    failed_names = [name for name in dag.nodes if name in set(failed)]
    lines = [
        "# Rescue DAG file, created after running",
        f"#   the {os.path.basename(dag.path)} DAG file",
        f"# Created {stamp.tm_mon}/{stamp.tm_mday}/{stamp.tm_year} "
        f"{stamp.tm_hour:02d}:{stamp.tm_min:02d}:{stamp.tm_sec:02d} UTC",
        f"# Rescue DAG version: {RESCUE_VERSION} (partial)",
        "#",
        f"# Total number of Nodes: {len(dag.nodes)}",
        f"# Nodes premarked DONE: {len(done_names)}",
        f"# Nodes that failed: {len(failed_names)}",
        "#   " + "".join(f"{name}," for name in failed_names) + "<ENDLIST>",
        "",
        *(f"DONE {name}" for name in done_names),
        *(f"RETRY {name} {left}" for name, left in (retries_left or {}).items()),
    ]
    return "\n".join(lines) + "\n"


def apply_rescue(dag: Dag, path: str) -> list[str]:
    """Mark the nodes a rescue file says are DONE; returns them.  Anything but DONE is refused."""
    marked = []
    for statement in statements(path):
        keyword = statement.words[0].upper()
        if keyword == "RETRY" and len(statement.words) == 3 and statement.words[1] in dag.nodes:
            dag.nodes[statement.words[1]].retry = (
                int(statement.words[2]) if statement.words[2].isdigit() else 0
            )
            continue
        if keyword != "DONE" or len(statement.words) != 2:
            raise DagError(
                statement.source, statement.line, "a partial rescue DAG holds DONE and RETRY lines only"
            )
        node = dag.nodes.get(statement.words[1])
        if node is None:
            raise DagError(
                statement.source, statement.line, f"Unknown Job {statement.words[1]} (was the DAG changed?)"
            )
        node.done = True
        marked.append(node.name)
    return marked


def set_aside(dag_path: str) -> list[Path]:
    """-force: the old rescue files become .old and are not used."""
    moved = []
    for _, path in rescue_files(dag_path):
        target = path.with_name(path.name + ".old")
        path.replace(target)
        moved.append(target)
    return moved
