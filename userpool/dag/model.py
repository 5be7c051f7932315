"""A parsed DAG: its nodes, their edges and settings, and the DAG-wide files and throttles.

What DAGMan's DAG input file describes (HTCondor's manual, docs/automated-workflows), as
plain data: the parser (parse.py) builds it, the checks (check.py) find cycles and missing
files in it before anything is queued, the rescue writer turns it back into text.  Node
names are as DAGMan spells them after splicing: ``Splice+Node`` for a node of a splice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class NodeKind(StrEnum):
    JOB = "job"  # a submit file or description: one cluster
    SUBDAG = "subdag"  # SUBDAG EXTERNAL: a nested DAG submitted as its own DAG job
    FINAL = "final"  # runs last, whatever happened before


class ScriptWhen(StrEnum):
    PRE = "PRE"
    POST = "POST"


@dataclass
class Script:
    when: ScriptWhen
    command: str  # the executable and its arguments, as written ($JOB, $RETURN, ... not yet expanded)
    defer_status: int = 0  # DEFER: this exit status retries the script ...
    defer_time: int = 0  # ... after at least this many seconds
    line: int = 0


@dataclass
class Node:
    name: str
    kind: NodeKind
    submit: str  # the submit file (or the DAG file of a SUBDAG), or the name of a SUBMIT-DESCRIPTION
    source: str  # the DAG file and ...
    line: int  # ... line that defined it
    directory: str = ""  # DIR: where it is submitted from and its scripts run (relative: to the DAG's)
    inline: str = ""  # an inline submit description (JOB name { ... })
    noop: bool = False
    done: bool = False
    retry: int = 0
    retry_unless_exit: int | None = None
    abort_on: int | None = None  # ABORT-DAG-ON: this exit status aborts the DAG ...
    abort_return: int | None = None  # ... with this return value (default: the node's)
    priority: int = 0
    category: str = ""
    pre_skip: int | None = None
    vars: list[tuple[str, str]] = field(default_factory=list)  # in order; a later value wins
    #: VARS given with PREPEND (False) or APPEND (True); others follow DAGMAN_DEFAULT_APPEND_VARS
    placement: dict[str, bool] = field(default_factory=dict)
    scripts: dict[ScriptWhen, Script] = field(default_factory=dict)
    parents: set[str] = field(default_factory=set)
    children: set[str] = field(default_factory=set)

    def macros(self) -> dict[str, str]:
        """VARS as the submit description sees them (the last one given for a name wins)."""
        return dict(self.vars)


@dataclass
class DagFiles:
    """The optional files a DAG asks for (relative paths: to the DAG file's directory)."""

    dot: str = ""
    dot_update: bool = False
    dot_overwrite: bool = True
    dot_include: str = ""
    node_status: str = ""
    node_status_min_s: int = 60
    node_status_always: bool = False
    jobstate_log: str = ""
    config: str = ""


@dataclass
class Dag:
    path: str  # the primary DAG file
    nodes: dict[str, Node] = field(default_factory=dict)
    final: str = ""  # the FINAL node's name, if any
    maxjobs: dict[str, int] = field(default_factory=dict)  # category -> most nodes submitted at once
    descriptions: dict[str, str] = field(default_factory=dict)  # SUBMIT-DESCRIPTION name -> its text
    job_attrs: dict[str, str] = field(default_factory=dict)  # SET_JOB_ATTR: for the DAG job's own ad
    files: DagFiles = field(default_factory=DagFiles)
    sources: list[str] = field(default_factory=list)  # every file read (the DAG, INCLUDEs, splices)
    rejected: str = ""  # REJECT: where; the DAG must not run

    def edges(self) -> int:
        return sum(len(node.children) for node in self.nodes.values())

    def roots(self) -> list[str]:
        """Nodes with no parents (in the order they were defined)."""
        return [name for name, node in self.nodes.items() if not node.parents and name != self.final]

    def leaves(self) -> list[str]:
        return [name for name, node in self.nodes.items() if not node.children and name != self.final]
