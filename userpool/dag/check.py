"""What condor_submit_dag finds before anything is queued: cycles, missing files, a REJECT.

A cycle is reported with its path (A -> B -> C -> A) and where its first edge was written;
a node's submit file (or a SUBDAG's DAG file) that does not exist is named with the line of
its JOB.  The walk is iterative: a 10,000-node chain must not exhaust Python's stack.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from userpool.dag.lexical import DagError
from userpool.dag.model import Dag, NodeKind


def find_cycle(dag: Dag) -> list[str] | None:
    """One cycle as a path of node names (first == last), or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(dag.nodes, WHITE)
    for start in dag.nodes:
        if colour[start] != WHITE:
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(dag.nodes[start].children))]
        path = [start]
        colour[start] = GREY
        while stack:
            name, pending = stack[-1]
            if not pending:
                colour[name] = BLACK
                stack.pop()
                path.pop()
                continue
            child = pending.pop()
            if colour[child] == GREY:
                return [*path[path.index(child) :], child]
            if colour[child] == WHITE:
                colour[child] = GREY
                path.append(child)
                stack.append((child, sorted(dag.nodes[child].children)))
    return None


def check_dag(dag: Dag, base: str = "", exists: Callable[[str], bool] = os.path.exists) -> None:
    """Raise the first DagError condor_submit_dag would report for this DAG."""
    if dag.rejected:
        raise DagError(dag.path, None, f"REJECT specification at {dag.rejected}: this DAG must not run")
    cycle = find_cycle(dag)
    if cycle is not None:
        first = dag.nodes[cycle[0]]
        raise DagError(first.source, first.line, f"a cycle in the DAG: {' -> '.join(cycle)}")
    for node in dag.nodes.values():
        if node.inline or node.submit in dag.descriptions:
            continue
        path = os.path.join(base, node.directory, node.submit)
        if not exists(path):
            what = "DAG file" if node.kind == NodeKind.SUBDAG else "submit file"
            raise DagError(node.source, node.line, f"node {node.name}'s {what} {path} does not exist")
    unknown = sorted({n.category for n in dag.nodes.values() if n.category} - set(dag.maxjobs))
    del unknown  # a category without MAXJOBS is no throttle, as in DAGMan
