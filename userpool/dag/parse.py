"""DAGMan's DAG input files, read as condor_dagman reads them, with DAGMan's error wording.

The lexical rules are DAGMan's: a line ending in a backslash continues on the next; a line
whose first non-blank character is ``#`` is a comment (and does not continue); tokens are
separated by blanks and tabs; command names (and PARENT, CHILD, ALL_NODES, DIR, NOOP, DONE,
...) are case-insensitive, node names and file names are not.  As in DAGMan, the commands
that define nodes (JOB, FINAL, SUBDAG, SPLICE, SUBMIT-DESCRIPTION) are read first, so a
PARENT line may come before the nodes it names; INCLUDE reads its file as if it were written
in place.  A command Updraft does not carry out (SERVICE, PROVISIONER, ...) is refused by
name, never ignored.  Every error names the file and line: ``ERROR: x.dag (line 7): ...``.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field

from userpool.dag.lexical import (
    MAX_INCLUDE_DEPTH,
    DagError,
    Reader,
    Statement,
    integer,
    parse_vars,
    read_file,
    statements,
)
from userpool.dag.model import Dag, Node, NodeKind, Script, ScriptWhen

ALL_NODES = "ALL_NODES"
RESERVED = ("PARENT", "CHILD", ALL_NODES)
ILLEGAL_IN_NAMES = "+"  # the splice separator
SPLICE_SEPARATOR = "+"
NODE_COMMANDS = ("JOB", "NODE", "FINAL", "SUBDAG", "SPLICE", "SUBMIT-DESCRIPTION")
OTHER_COMMANDS = (
    "PARENT", "SCRIPT", "RETRY", "ABORT-DAG-ON", "VARS", "PRIORITY", "CATEGORY", "MAXJOBS", "PRE_SKIP",
    "DONE", "CONFIG", "DOT", "NODE_STATUS_FILE", "JOBSTATE_LOG", "SET_JOB_ATTR", "REJECT", "INCLUDE",
)  # fmt: skip
#: DAGMan commands Updraft does not carry out, and why: refused by name
NOT_SUPPORTED = {
    "PROVISIONER": "PROVISIONER nodes are not supported by Updraft (pilots are the provisioning here)",
    "SERVICE": "SERVICE nodes are not supported by Updraft",
    "CONNECT": "CONNECT (splice pins) is not supported by Updraft",
    "PIN_IN": "PIN_IN (splice pins) is not supported by Updraft",
    "PIN_OUT": "PIN_OUT (splice pins) is not supported by Updraft",
    "SAVE_POINT_FILE": "SAVE_POINT_FILE is not supported by Updraft",
    "ENV": "ENV is not supported by Updraft (the DAG runs in the pool, not in your shell)",
    "DATA": "DATA nodes are not supported by Updraft",
}


@dataclass
class Scope:
    """The nodes one DAG file (or splice) defined: what ALL_NODES and node names refer to there."""

    prefix: str = ""  # "Splice+" inside a splice
    directory: str = ""  # a splice's DIR
    names: list[str] = field(default_factory=list)
    splices: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # name -> (roots, leaves)


class Parser:
    def __init__(self, dag: Dag, reader: Reader) -> None:
        self.dag = dag
        self.reader = reader

    # -- the two passes ---------------------------------------------------------------------------
    def parse(self, path: str, scope: Scope, depth: int = 0) -> Scope:
        found = statements(path, self.reader)
        self.dag.sources.append(path)
        for statement in found:
            if statement.words[0].upper() in NODE_COMMANDS:
                self._define(statement, scope, depth)
        for statement in found:
            keyword = statement.words[0].upper()
            if keyword in NODE_COMMANDS:
                continue
            if keyword in NOT_SUPPORTED:
                raise DagError(statement.source, statement.line, NOT_SUPPORTED[keyword])
            handler = getattr(self, "_" + keyword.lower().replace("-", "_"), None)
            if keyword not in OTHER_COMMANDS or handler is None:
                close = difflib.get_close_matches(keyword, [*NODE_COMMANDS, *OTHER_COMMANDS], n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise DagError(
                    statement.source, statement.line,
                    f"expected JOB, FINAL, SUBDAG, SPLICE, SUBMIT-DESCRIPTION, SCRIPT, PARENT, RETRY, ABORT-DAG-ON, "
                    f"VARS, PRIORITY, CATEGORY, MAXJOBS, PRE_SKIP, DONE, CONFIG, DOT, NODE_STATUS_FILE, JOBSTATE_LOG, "
                    f"SET_JOB_ATTR, REJECT or INCLUDE token (found {statement.words[0]}){hint}",
                )  # fmt: skip
            handler(statement, scope)
        return scope

    # -- pass 1: nodes --------------------------------------------------------------------------
    def _define(self, statement: Statement, scope: Scope, depth: int) -> None:
        words, keyword = statement.words, statement.words[0].upper()
        where = (statement.source, statement.line)
        if keyword == "SUBMIT-DESCRIPTION":
            if len(words) < 2 or statement.body is None:
                raise DagError(*where, "SUBMIT-DESCRIPTION needs a name and a { ... } description")
            if words[1] in self.dag.descriptions:
                raise DagError(*where, f"a submit description named {words[1]} already exists")
            self.dag.descriptions[words[1]] = statement.body
            return
        if keyword == "SPLICE":
            self._splice(statement, scope, depth)
            return
        kind = {"FINAL": NodeKind.FINAL, "SUBDAG": NodeKind.SUBDAG}.get(keyword, NodeKind.JOB)
        if kind == NodeKind.SUBDAG:
            if len(words) < 2 or words[1].upper() != "EXTERNAL":
                raise DagError(
                    *where,
                    "only SUBDAG EXTERNAL is supported"
                    if len(words) > 1
                    else "SUBDAG needs EXTERNAL keyword",
                )
            words = words[1:]
        example = f"{words[0]} <nodename> <{'dagfile' if kind == NodeKind.SUBDAG else 'submitfile'}> [DIR directory] [NOOP] [DONE]"
        if len(words) < 2:
            raise DagError(*where, f"no node name specified (example: {example})")
        name = words[1]
        if name.upper() in RESERVED:
            raise DagError(*where, f"JobName cannot be a reserved word ({name})")
        if any(char in name for char in ILLEGAL_IN_NAMES):
            raise DagError(*where, f"JobName {name} contains one or more illegal characters ('+')")
        if len(words) < 3 and statement.body is None:
            raise DagError(*where, f"no submit file or submit description specified (example: {example})")
        submit = words[2] if len(words) > 2 and statement.body is None else ""
        extra = words[3:] if statement.body is None else words[2:]
        node = Node(
            scope.prefix + name,
            kind,
            submit,
            statement.source,
            statement.line,
            scope.directory,
            statement.body or "",
        )
        if extra and extra[0].upper() == "DIR":
            if len(extra) < 2:
                raise DagError(*where, f"no directory specified after DIR keyword (example: {example})")
            node.directory = os.path.join(scope.directory, extra[1]) if scope.directory else extra[1]
            extra = extra[2:]
        if extra and extra[0].upper() == "NOOP":
            node.noop, extra = True, extra[1:]
        if extra and extra[0].upper() == "DONE" and kind != NodeKind.FINAL:
            node.done, extra = True, extra[1:]
        if extra:
            raise DagError(*where, f'invalid parameter "{extra[0]}" (example: {example})')
        if node.name in self.dag.nodes:
            first = self.dag.nodes[node.name]
            raise DagError(*where, f"node name {name} is already used (by {first.source}, line {first.line})")
        if name in scope.splices:
            raise DagError(*where, f"Node name '{name}' must not also be a splice name.")
        if kind == NodeKind.FINAL:
            if scope.prefix:
                raise DagError(*where, "splices cannot have final nodes")
            if self.dag.final:
                raise DagError(*where, f"a DAG has one FINAL node; {self.dag.final} is already one")
            self.dag.final = node.name
        self.dag.nodes[node.name] = node
        scope.names.append(node.name)

    def _splice(self, statement: Statement, scope: Scope, depth: int) -> None:
        words, where = statement.words, (statement.source, statement.line)
        example = "SPLICE SpliceName SpliceFileName [DIR directory]"
        if len(words) < 3:
            raise DagError(
                *where, f"Missing SPLICE {'name' if len(words) < 2 else 'file name'} (example: {example})"
            )
        name, path, rest = words[1], words[2], words[3:]
        directory = scope.directory
        if rest and rest[0].upper() == "DIR":
            if len(rest) < 2:
                raise DagError(*where, "DIR requires a directory specification")
            directory = os.path.join(scope.directory, rest[1]) if scope.directory else rest[1]
            rest = rest[2:]
        if rest:
            raise DagError(*where, f"illegal token ({rest[0]}) on SPLICE line")
        if scope.prefix + name in self.dag.nodes or name in scope.splices:
            raise DagError(
                *where, f"Splice name '{name}' must not also be a node name (or another splice's)."
            )
        if depth > MAX_INCLUDE_DEPTH:
            raise DagError(*where, f"splices nested more than {MAX_INCLUDE_DEPTH} deep (a splice of itself?)")
        inner = Scope(scope.prefix + name + SPLICE_SEPARATOR, directory)
        self.parse(os.path.join(directory, path) if directory else path, inner, depth + 1)
        roots = [n for n in inner.names if not (self.dag.nodes[n].parents & set(inner.names))]
        leaves = [n for n in inner.names if not (self.dag.nodes[n].children & set(inner.names))]
        scope.splices[name] = (roots, leaves)

    # -- pass 2: everything else ----------------------------------------------------------------
    def _targets(self, statement: Statement, scope: Scope, name: str) -> list[Node]:
        """The nodes a command names: one node, or ALL_NODES of this file (never the FINAL node)."""
        if name.upper() == ALL_NODES:
            return [self.dag.nodes[n] for n in scope.names if self.dag.nodes[n].kind != NodeKind.FINAL]
        node = self.dag.nodes.get(scope.prefix + name)
        if node is None:
            raise DagError(statement.source, statement.line, f"Unknown Job {name}{self._near(name, scope)}")
        return [node]

    def _near(self, name: str, scope: Scope) -> str:
        """A did-you-mean for an unknown node: node names are case-sensitive, which surprises people."""
        same = [n for n in scope.names if n.lower() == (scope.prefix + name).lower()]
        close = same or difflib.get_close_matches(scope.prefix + name, scope.names, n=1)
        return f" (did you mean {close[0][len(scope.prefix) :]}?)" if close else ""

    def _ends(self, statement: Statement, scope: Scope, name: str, leaves: bool) -> list[str]:
        """A PARENT/CHILD name: a node, or a splice (its leaves as a parent, its roots as a child)."""
        if name in scope.splices:
            return scope.splices[name][1 if leaves else 0]
        if scope.prefix + name not in self.dag.nodes:
            raise DagError(statement.source, statement.line, f"Unknown Job {name}{self._near(name, scope)}")
        return [scope.prefix + name]

    def _parent(self, statement: Statement, scope: Scope) -> None:
        words = statement.words[1:]
        upper = [w.upper() for w in words]
        if "CHILD" not in upper:
            raise DagError(
                statement.source,
                statement.line,
                "Expected CHILD token (example: PARENT p1 [p2 p3 ...] CHILD c1 [c2 c3 ...])",
            )
        split = upper.index("CHILD")
        parents, children = words[:split], words[split + 1 :]
        if not parents:
            raise DagError(statement.source, statement.line, "Missing Parent Job names")
        if not children:
            raise DagError(statement.source, statement.line, "Missing Child Job names")
        tops = [n for p in parents for n in self._ends(statement, scope, p, leaves=True)]
        bottoms = [n for c in children for n in self._ends(statement, scope, c, leaves=False)]
        for parent in tops:
            for child in bottoms:
                if parent == child:
                    raise DagError(
                        statement.source, statement.line, f"node {parent} cannot be its own parent"
                    )
                self.dag.nodes[parent].children.add(child)
                self.dag.nodes[child].parents.add(parent)
        if self.dag.final in tops or self.dag.final in bottoms:
            raise DagError(
                statement.source,
                statement.line,
                f"FINAL node {self.dag.final} cannot have parents or children",
            )

    def _script(self, statement: Statement, scope: Scope) -> None:
        words, where = statement.words[1:], (statement.source, statement.line)
        example = "SCRIPT [DEFER status time] (PRE|POST) JobName Script Args ..."
        defer_status = defer_time = 0
        if words and words[0].upper() == "DEFER":
            if len(words) < 3:
                raise DagError(
                    *where,
                    f"Missing DEFER {'status' if len(words) < 2 else 'time'} value (example: {example})",
                )
            defer_status, defer_time = (
                integer(words[1], where, "DEFER status"),
                integer(words[2], where, "DEFER time"),
            )
            if defer_status <= 0 or defer_time < 0:
                raise DagError(
                    *where,
                    f'Invalid DEFER {"status" if defer_status <= 0 else "time"} value "{words[1] if defer_status <= 0 else words[2]}"',
                )
            words = words[3:]
        if words and words[0].upper() == "DEBUG":
            raise DagError(
                *where, "SCRIPT DEBUG is not supported by Updraft (scripts' output goes to dagman.out)"
            )
        if not words:
            raise DagError(*where, f"Missing PRE or POST (example: {example})")
        if words[0].upper() == "HOLD":
            raise DagError(*where, "HOLD scripts are not supported by Updraft")
        if words[0].upper() not in ("PRE", "POST"):
            raise DagError(
                *where,
                f'After specifying "SCRIPT", you must indicate if you want "PRE" or "POST" (or DEFER) (example: {example})',
            )
        when = ScriptWhen(words[0].upper())
        if len(words) < 2:
            raise DagError(*where, f"Missing job name (example: {example})")
        if len(words) < 3:
            raise DagError(
                *where,
                f"You named a {when.value} script for node {words[1]} but didn't provide a script filename",
            )
        command = " ".join(words[2:])
        for node in self._targets(statement, scope, words[1]):
            node.scripts[when] = Script(when, command, defer_status, defer_time, statement.line)

    def _retry(self, statement: Statement, scope: Scope) -> None:
        words, where = statement.words[1:], (statement.source, statement.line)
        example = "Retry JobName 3 [UNLESS-EXIT 42]"
        if len(words) < 2:
            raise DagError(
                *where, f"Missing {'job name' if not words else 'Retry value'} (example: {example})"
            )
        count = integer(words[1], where, "Retry value")
        if count < 0:
            raise DagError(*where, f'Invalid Retry value "{count}" (cannot be negative)')
        unless = None
        if len(words) > 2:
            if words[2].upper() != "UNLESS-EXIT":
                raise DagError(*where, f"Invalid retry option: {words[2]} (example: {example})")
            if len(words) < 4:
                raise DagError(*where, "Missing parameter for UNLESS-EXIT")
            unless = integer(words[3], where, "UNLESS-EXIT parameter")
        for node in self._targets(statement, scope, words[0]):
            self._not_final(node, statement, "RETRY")
            node.retry, node.retry_unless_exit = count, unless

    def _abort_dag_on(self, statement: Statement, scope: Scope) -> None:
        words, where = statement.words[1:], (statement.source, statement.line)
        if len(words) < 2:
            raise DagError(
                *where,
                f"Missing {'job name' if not words else 'ABORT-ON node value'} (example: ABORT-DAG-ON JobName 3 [RETURN 1])",
            )
        value, returned = integer(words[1], where, "ABORT-ON node value"), None
        if len(words) > 2:
            if words[2].upper() != "RETURN":
                raise DagError(*where, f"Invalid ABORT-ON option: {words[2]}")
            if len(words) < 4:
                raise DagError(*where, "Missing parameter for ABORT-ON")
            returned = integer(words[3], where, "ABORT_ON parameter")
            if not 0 <= returned <= 255:
                raise DagError(
                    *where, f"Bad return value for ABORT_ON (must be between 0 and 255): {words[3]}"
                )
        for node in self._targets(statement, scope, words[0]):
            self._not_final(node, statement, "ABORT-DAG-ON")
            node.abort_on, node.abort_return = value, returned

    def _vars(self, statement: Statement, scope: Scope) -> None:
        where = (statement.source, statement.line)
        if len(statement.words) < 2:
            raise DagError(
                *where, 'Missing job name (example: Vars JobName [PREPEND | APPEND] VarName1="value1")'
            )
        rest = statement.text[len(statement.words[1]) :].strip()
        placement = None  # before the submit file's own commands (PREPEND) or after them (APPEND)
        for keyword in ("PREPEND", "APPEND"):
            if rest.startswith(keyword) and (len(rest) == len(keyword) or rest[len(keyword)].isspace()):
                rest, placement = rest[len(keyword) :], keyword == "APPEND"
        pairs = parse_vars(rest, where)
        if not pairs:
            raise DagError(*where, "No valid name-value pairs")
        for node in self._targets(statement, scope, statement.words[1]):
            node.vars.extend(pairs)
            if placement is not None:
                node.placement.update(dict.fromkeys((name for name, _value in pairs), placement))

    def _priority(self, statement: Statement, scope: Scope) -> None:
        name, value = self._name_and_value(statement, "PRIORITY", "PRIORITY value")
        for node in self._targets(statement, scope, name):
            self._not_final(node, statement, "PRIORITY")
            node.priority = integer(value, (statement.source, statement.line), "PRIORITY value")

    def _category(self, statement: Statement, scope: Scope) -> None:
        name, category = self._name_and_value(statement, "CATEGORY", "CATEGORY name")
        for node in self._targets(statement, scope, name):
            self._not_final(node, statement, "CATEGORY")
            node.category = (
                category[1:] if category.startswith("+") else scope.prefix + category
            )  # +name: global

    def _maxjobs(self, statement: Statement, scope: Scope) -> None:
        category, value = self._name_and_value(statement, "MAXJOBS", "MAXJOBS value")
        count = integer(value, (statement.source, statement.line), "MAXJOBS value")
        if count < 0:
            raise DagError(statement.source, statement.line, "MAXJOBS value must be non-negative")
        self.dag.maxjobs[category[1:] if category.startswith("+") else scope.prefix + category] = count

    def _pre_skip(self, statement: Statement, scope: Scope) -> None:
        name, value = self._name_and_value(statement, "PRE_SKIP", "exit code")
        code = integer(value, (statement.source, statement.line), "exit code")
        for node in self._targets(statement, scope, name):
            node.pre_skip = code

    def _done(self, statement: Statement, scope: Scope) -> None:
        words = statement.words[1:]
        if len(words) != 1:
            raise DagError(
                statement.source,
                statement.line,
                "Missing job name" if not words else f"Extra token ({words[1]}) on DONE line",
            )
        (node,) = self._targets(statement, scope, words[0])
        if node.kind == NodeKind.FINAL:
            raise DagError(statement.source, statement.line, f"FINAL Job {node.name} cannot be set to DONE")
        node.done = True

    @staticmethod
    def _not_final(node: Node, statement: Statement, command: str) -> None:
        """RETRY, ABORT-DAG-ON, PRIORITY and CATEGORY are refused for the FINAL node, as in DAGMan."""
        if node.kind == NodeKind.FINAL:
            raise DagError(
                statement.source, statement.line, f"Final job {node.name} cannot have {command} specification"
            )

    def _name_and_value(self, statement: Statement, command: str, what: str) -> tuple[str, str]:
        words = statement.words[1:]
        if len(words) < 2:
            missing = "job name" if not words else what
            raise DagError(
                statement.source, statement.line, f"Missing {missing} (example: {command} JobName Value)"
            )
        if len(words) > 2:
            raise DagError(statement.source, statement.line, f"Extra token ({words[2]}) on {command} line")
        return words[0], words[1]

    def _single(self, statement: Statement, command: str) -> str:
        words = statement.words[1:]
        if not words:
            raise DagError(statement.source, statement.line, f"Missing {command} file name")
        if len(words) > 1 and command in ("CONFIG", "JOBSTATE_LOG"):
            raise DagError(statement.source, statement.line, f"Extra token ({words[1]}) on {command} line")
        return words[0]

    def _config(self, statement: Statement, scope: Scope) -> None:
        given = self._single(statement, "CONFIG")
        if self.dag.files.config and self.dag.files.config != given:
            raise DagError(
                statement.source,
                statement.line,
                f"a DAG has one CONFIG file; {self.dag.files.config} is already given",
            )
        self.dag.files.config = given

    def _dot(self, statement: Statement, scope: Scope) -> None:
        files = self.dag.files
        files.dot = self._single(statement, "dot")
        words = statement.words[2:]
        while words:
            option = words.pop(0).upper()
            if option in ("UPDATE", "DONT-UPDATE"):
                files.dot_update = option == "UPDATE"
            elif option in ("OVERWRITE", "DONT-OVERWRITE"):
                files.dot_overwrite = option == "OVERWRITE"
            elif option == "INCLUDE" and words:
                files.dot_include = words.pop(0)
            else:
                raise DagError(statement.source, statement.line, f"invalid DOT option {option}")

    def _node_status_file(self, statement: Statement, scope: Scope) -> None:
        files, words = self.dag.files, statement.words[2:]
        files.node_status = self._single(statement, "node status")
        if words:
            files.node_status_min_s = integer(
                words.pop(0), (statement.source, statement.line), "min update time"
            )
        if words and words[0].upper() == "ALWAYS-UPDATE":
            files.node_status_always = True
            words.pop(0)
        if words:
            raise DagError(
                statement.source, statement.line, f"Extra token ({words[0]}) on NODE_STATUS_FILE line"
            )

    def _jobstate_log(self, statement: Statement, scope: Scope) -> None:
        self.dag.files.jobstate_log = self._single(statement, "JOBSTATE_LOG")

    def _set_job_attr(self, statement: Statement, scope: Scope) -> None:
        name, equals, value = statement.text.partition("=")
        if not equals or not name.strip() or not value.strip() or len(name.split()) != 1:
            raise DagError(
                statement.source, statement.line, "SET_JOB_ATTR needs AttributeName = AttributeValue"
            )
        self.dag.job_attrs[name.strip()] = value.strip()

    def _reject(self, statement: Statement, scope: Scope) -> None:
        if len(statement.words) > 1:
            raise DagError(statement.source, statement.line, "REJECT should have no additional tokens.")
        self.dag.rejected = f"{statement.source} (line {statement.line})"


def parse_dag(path: str, reader: Reader = read_file) -> Dag:
    """The DAG in ``path`` (with its INCLUDEs and splices), or a DagError with the file and line."""
    dag = Dag(path)
    Parser(dag, reader).parse(path, Scope())
    return dag
