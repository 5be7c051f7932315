"""Submit description files: lines, queue statements and per-proc macro expansion.

The submit language itself (macros, $INT/$SUBSTR/$ENV, if/else, include, the queue
statement's item lists) is htcondor2.Submit's; this module adds what it lacks: line
numbers for errors, several queue statements in one file, ``-append``, and fast
per-proc expansion.  For a 100,000-proc cluster each command is expanded once with
sentinels standing for $(Process), $(Item) and the other live variables; if the
result substituted back gives the true expansion for the first and last procs it is
used as a template, and only commands whose value really varies are touched per proc.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import htcondor2

from updraft.core import classads
from updraft.core.errors import BadRequest

LIVE_VARIABLES = ("Cluster", "ClusterId", "Process", "ProcId", "Step", "Row", "ItemIndex", "Node")
_KEY = re.compile(r"^(\+?[A-Za-z_][A-Za-z0-9_.]*)\s*=(.*)$", re.DOTALL)
_DIRECTIVE = re.compile(r"^(if|elif|else|endif|include|error|warning)\b", re.IGNORECASE)
_QUEUE = re.compile(r"^queue\b(.*)$", re.IGNORECASE | re.DOTALL)
_SENTINEL = "@@UPDRAFT%d@@"
MAX_PROCS = 10_000_000


class SubmitError(BadRequest):
    """A submit file condor_submit would refuse, with where."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}, line {line}" if line else path
        super().__init__(f"{where}: {message}")


@dataclass
class QueueStatement:
    line: int
    args: str
    body: list[str] = field(default_factory=list)  # item lines of a multi-line "from (" / "in (" list

    def text(self) -> str:
        return "\n".join([f"queue {self.args}", *self.body])


@dataclass
class SubmitFile:
    path: str
    lines: list[tuple[int, str]]  # logical lines (continuations joined), with their first line number
    key_lines: dict[str, int] = field(
        default_factory=dict
    )  # lower-case command -> line of its last definition
    queues: list[QueueStatement] = field(default_factory=list)
    raw_values: dict[str, str] = field(default_factory=dict)  # lower-case command -> raw text
    spelling: dict[str, str] = field(default_factory=dict)  # lower-case command -> as written

    written: dict[str, str] = field(
        default_factory=dict
    )  # lower-case command -> as typed (+Attr stays +Attr)

    def original_spelling(self, key: str) -> str:
        return self.spelling.get(key.lower(), key)

    def as_written(self, key: str) -> str:
        return self.written.get(key.lower(), key)

    def line_of(self, key: str) -> int | None:
        return self.key_lines.get(key.lower())

    def error(self, key: str | None, message: str) -> SubmitError:
        return SubmitError(self.path, self.line_of(key) if key else None, message)

    def near_miss(self, command: str) -> str:
        """' (... looks like a misspelt ...)' when the file has a near miss of a missing command."""
        import difflib

        for key in self.raw_values:
            if key != command and difflib.get_close_matches(key, [command], n=1, cutoff=0.75):
                return f" ('{key}' on line {self.line_of(key)} looks like a misspelt '{command}')"
        return ""


def _logical_lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.rstrip()
        if not pending:
            start = number
        if stripped.endswith("\\") and not stripped.lstrip().startswith("#"):
            pending.append(stripped[:-1])
            continue
        pending.append(line)
        out.append((start, " ".join(p.strip() for p in pending) if len(pending) > 1 else pending[0]))
        pending = []
    if pending:
        out.append((start, " ".join(p.strip() for p in pending)))
    return out


def parse_submit(
    text: str, path: str = "<stdin>", append: Sequence[str] = (), prepend: Sequence[str] = ()
) -> SubmitFile:
    """Check every line's shape and find the queue statements; ``append`` goes before the first queue,
    ``prepend`` before everything (a DAG node's macros, which the file itself may override)."""
    logical = [(0, line) for line in prepend] + _logical_lines(text)
    appended = [(0, line) for line in append]
    if appended:
        first_queue = next(
            (i for i, (_n, line) in enumerate(logical) if _QUEUE.match(line.strip())), len(logical)
        )
        logical = logical[:first_queue] + appended + logical[first_queue:]
    submit = SubmitFile(path, logical)
    depth = 0  # if/endif nesting
    index = 0
    while index < len(logical):
        number, line = logical[index]
        index += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        queue = _QUEUE.match(stripped)
        if queue:
            statement = QueueStatement(number, queue.group(1).strip())
            if re.search(r"\b(in|from)\s*\($", statement.args, re.IGNORECASE):
                while index < len(logical):  # the items follow, one per line, until ")"
                    item = logical[index][1]
                    index += 1
                    statement.body.append(item)
                    if item.strip().startswith(")"):
                        break
                else:
                    raise SubmitError(
                        path, number, "queue statement: the item list opened with '(' is never closed"
                    )
            submit.queues.append(statement)
            continue
        if _DIRECTIVE.match(stripped):
            depth = _check_directive(submit, number, stripped, depth)
            continue
        match = _KEY.match(stripped)
        if not match:
            where = "-append" if number == 0 else None
            raise SubmitError(
                path if not where else f"{path} (-append)",
                number or None,
                f"expected 'command = value', found: {stripped}",
            )
        typed = match.group(1).strip()
        written = "MY." + typed[1:] if typed.startswith("+") else typed  # htcondor2 spells +Attr as MY.Attr
        key = written.lower()
        submit.key_lines[key] = number
        submit.raw_values[key] = match.group(2).strip()
        submit.spelling[key] = written
        submit.written[key] = typed
    if not submit.queues:
        raise SubmitError(path, None, "no 'queue' statement: nothing would be submitted")
    _refuse_macro_cycles(submit)
    return submit


#: $(name), $(name:default), $Fpnx(name), $INT(name,...), $SUBSTR(name,...), ...: a macro read by another
_MACRO_REFERENCE = re.compile(r"\$(?:F[A-Za-z]*|INT|REAL|SUBSTR|BASENAME|DIRNAME)?\(\s*([A-Za-z_][\w.]*)")


def _refuse_macro_cycles(submit: SubmitFile) -> None:
    """x = $(y) with y = $(x) never finishes expanding (HTCondor's own library spins on it).

    A macro that reads itself reads its previous definition (``x = $(x) more``), so only
    cycles through other macros are refused.
    """
    reads = {
        key: {m.lower() for m in _MACRO_REFERENCE.findall(value) if m.lower() in submit.raw_values} - {key}
        for key, value in submit.raw_values.items()
    }
    done: set[str] = set()
    for start in reads:
        if start in done:
            continue
        path = [start]  # depth first; the macros still being read, and what each reads next
        pending = [iter(sorted(reads[start]))]
        while pending:
            following = next(pending[-1], None)
            if following is None:
                pending.pop()
                done.add(path.pop())
            elif following in path:
                cycle = [*path[path.index(following) :], following]
                raise submit.error(
                    cycle[0],
                    "macro "
                    + " -> ".join(f"$({submit.original_spelling(k)})" for k in cycle)
                    + " refers back to itself: it can never be expanded",
                )
            elif following not in done:
                path.append(following)
                pending.append(iter(sorted(reads[following])))


def _check_directive(submit: SubmitFile, number: int, line: str, depth: int) -> int:
    """What HTCondor's library only reports as 'parse_up_to_q_line() failed': say which line, and why."""
    word = line.split(None, 1)[0].lower()
    if word == "if":
        return depth + 1
    if word in ("elif", "else", "endif") and depth == 0:
        raise SubmitError(submit.path, number or None, f"{word} without a matching if")
    if word == "endif":
        return depth - 1
    _name, colon, rest = line.partition(":")
    if word == "error" and colon and depth == 0:
        raise SubmitError(submit.path, number or None, f"error: {rest.strip()}")
    if word == "include" and colon and "command" not in _name.lower():
        target = rest.strip()
        if target and "$" not in target:
            places = [target, os.path.join(os.path.dirname(submit.path), target)]  # cwd, or beside the file
            if not any(os.path.isfile(place) for place in places):
                raise SubmitError(submit.path, number or None, f"include file {target} does not exist")
            _learn_spellings(submit, next(place for place in places if os.path.isfile(place)))
    return depth


def _learn_spellings(submit: SubmitFile, path: str) -> None:
    """How an included file spells its commands (+ProjectName stays ProjectName, not projectname)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return
    for line in text.splitlines():
        match = _KEY.match(line.strip())
        if match:
            typed = match.group(1).strip()
            written = "MY." + typed[1:] if typed.startswith("+") else typed
            submit.spelling.setdefault(written.lower(), written)
            submit.written.setdefault(written.lower(), typed)


def segment_text(submit: SubmitFile, index: int) -> str:
    """The file as condor_submit sees it at queue statement ``index``: every command before it."""
    queue = submit.queues[index]
    lines = []
    body_left = 0
    for number, line in submit.lines:
        if body_left:
            body_left -= 1
            continue
        if _QUEUE.match(line.strip()):
            statement = next((q for q in submit.queues if q.line == number), None)
            if statement is queue:
                lines.append(queue.text())
                break
            body_left = len(statement.body) if statement is not None else 0
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass
class Proc:
    """The live variables of one proc."""

    step: int
    item_index: int
    items: dict[str, str]


@dataclass
class Segment:
    """One queue statement: its htcondor2.Submit and the procs it makes."""

    submit: Any  # htcondor2.Submit
    keys: list[str]  # commands defined (original spelling)
    item_names: list[str]
    procs: list[Proc]
    queue: QueueStatement


def _queue_count(
    submit: Any, args: str, item_names: list[str], file: SubmitFile, queue: QueueStatement
) -> int:
    tokens = args.replace(",", " , ").split()
    count_tokens: list[str] = []
    for token in tokens:
        lowered = token.lower()
        if lowered in ("in", "from", "matching") or token in item_names or token == ",":
            break
        count_tokens.append(token)
    if not count_tokens:
        return 1
    expression = " ".join(count_tokens)
    if "$" in expression:  # queue $(N): expanded by the submit language, in a scratch copy
        scratch = htcondor2.Submit(dict(submit))
        scratch["updraft_queue_count"] = expression
        expression = scratch.expand("updraft_queue_count")
    try:
        value = classads.evaluate(expression)
    except classads.ExpressionError:
        value = None
    value = classads.whole_number(value)
    if value is None or value < 0:
        raise SubmitError(file.path, queue.line, f"invalid queue count {' '.join(count_tokens)!r}")
    return value


def _submit_object(text: str, file: SubmitFile) -> Any:
    """htcondor2.Submit of the text; its complaints about an ``if`` line become file:line errors.

    The library says what is wrong with an ``if`` only on the process's stderr ("Parse_config
    if error: ... line: ..."), then fails with a message that names nothing; the stderr is
    caught here (in the main thread: condor_submit) and the line found in the file.
    """
    import tempfile
    import threading

    capture = threading.current_thread() is threading.main_thread()
    saved = os.dup(2) if capture else -1
    with tempfile.TemporaryFile() as caught:
        if capture:
            os.dup2(caught.fileno(), 2)
        try:
            return htcondor2.Submit(text)
        except Exception as exc:
            failure: Exception = exc
        finally:
            if capture:
                os.dup2(saved, 2)
                os.close(saved)
        caught.seek(0)
        said = caught.read().decode(errors="replace")
    found = re.search(r"Parse_config if error: '(.*)' line: (.*)", said)
    if found:
        wanted = found.group(2).strip()
        line = next((number for number, logical in file.lines if logical.strip() == wanted), None)
        raise SubmitError(file.path, line, found.group(1))
    if said.strip():
        sys.stderr.write(said)
    raise SubmitError(file.path, None, f"cannot parse: {failure}")


def segments(file: SubmitFile, cwd: str) -> list[Segment]:
    out = []
    for index, queue in enumerate(file.queues):
        text = segment_text(file, index)
        submit = _submit_object(text, file)
        keys = [k for k in submit if not k.startswith("$")]
        previous = os.getcwd()
        try:
            os.chdir(cwd)  # 'queue matching *.dat' globs where condor_submit runs
            items_raw = list(submit.itemdata()) if _has_items(queue.args) else []
        except Exception as exc:
            # HTCondor counts the line from its own buffer ("on line -2"): ours is in the prefix
            message = re.sub(r" (for|of) Queue command on line -?\d+", "", str(exc))
            raise SubmitError(file.path, queue.line, f"queue statement: {message}") from None
        finally:
            os.chdir(previous)
        item_names: list[str] = []
        items: list[dict[str, str]] = []
        for raw in items_raw:
            if isinstance(raw, dict):
                items.append({str(k): str(v) for k, v in raw.items()})
            else:
                items.append({"Item": str(raw)})
        for item in items:
            for name in item:
                if name not in item_names:
                    item_names.append(name)
        if _has_items(queue.args) and not item_names:
            item_names = _declared_names(queue.args)
        count = _queue_count(submit, queue.args, item_names, file, queue)
        total = count * (len(items) if _has_items(queue.args) else 1)
        if total > MAX_PROCS:  # refused before a single proc is made
            raise SubmitError(file.path, queue.line, f"{total} procs is more than {MAX_PROCS}")
        procs: list[Proc] = []
        if _has_items(queue.args):
            for item_index, item in enumerate(items):
                for step in range(count):
                    procs.append(Proc(step, item_index, item))
        else:
            procs = [Proc(step, 0, {}) for step in range(count)]
        out.append(Segment(submit, keys, item_names, procs, queue))
    return out


def _has_items(args: str) -> bool:
    return bool(re.search(r"\b(in|from|matching)\b", args, re.IGNORECASE))


def _declared_names(args: str) -> list[str]:
    head = re.split(r"\b(?:in|from|matching)\b", args, maxsplit=1, flags=re.IGNORECASE)[0]
    names = [
        t for t in head.replace(",", " ").split() if classads.is_valid_attribute_name(t) and not t.isdigit()
    ]
    return names or ["Item"]


# ---------------------------------------------------------------------------------------------
# Expansion
# ---------------------------------------------------------------------------------------------
def live_values(proc: Proc, cluster_id: int, proc_id: int, item_names: list[str]) -> dict[str, str]:
    values = {
        "Cluster": str(cluster_id),
        "ClusterId": str(cluster_id),
        "Process": str(proc_id),
        "ProcId": str(proc_id),
        "Step": str(proc.step),
        "Row": str(proc.item_index),
        "ItemIndex": str(proc.item_index),
        "Node": "",
    }
    for name in item_names:
        values[name] = proc.items.get(name, "")
    return values


class Expander:
    """Expanded command values per proc, with templates where they are safe."""

    def __init__(self, segment: Segment, cluster_id: int, first_proc_id: int) -> None:
        self.segment = segment
        self.cluster_id = cluster_id
        self.first_proc_id = first_proc_id
        self.variables = [*LIVE_VARIABLES, *segment.item_names]
        self.constant: dict[str, str] = {}
        self.templates: dict[str, str] = {}
        self.dynamic: list[str] = []  # expanded for real per proc ($INT(Process), $RANDOM_...)
        self._classify()

    def _expand_all(self, values: dict[str, str], keys: Sequence[str]) -> dict[str, str]:
        submit = self.segment.submit
        for name, value in values.items():
            submit[name] = value
        out = {}
        for key in keys:
            try:
                out[key] = submit.expand(key)
            except KeyError:  # a command with an empty value
                out[key] = ""
        return out

    def _classify(self) -> None:
        keys = [k for k in self.segment.keys if k not in self.variables]
        sentinels = {name: _SENTINEL % i for i, name in enumerate(self.variables)}
        try:
            templated = self._expand_all(sentinels, keys)
        except Exception:
            templated = dict.fromkeys(keys, "\0")
        procs = self.segment.procs
        checks = []
        if procs:
            checks.append(0)
            if len(procs) > 1:
                checks.append(len(procs) - 1)
        actual = [self._expand_all(self.values_of(i), keys) for i in checks]
        for key in keys:
            template = templated[key]
            uses = "@@UPDRAFT" in template
            ok = all(self._fill(template, self.values_of(i)) == actual[n][key] for n, i in enumerate(checks))
            if ok and not uses:
                self.constant[key] = template
            elif ok:
                self.templates[key] = template
            else:
                self.dynamic.append(key)
        self._template_variables = {
            key: [(_SENTINEL % i, name) for i, name in enumerate(self.variables) if _SENTINEL % i in template]
            for key, template in self.templates.items()
        }

    def values_of(self, index: int) -> dict[str, str]:
        proc = self.segment.procs[index]
        return live_values(proc, self.cluster_id, self.first_proc_id + index, self.segment.item_names)

    def _fill(self, template: str, values: dict[str, str]) -> str:
        if "@@UPDRAFT" not in template:
            return template
        for i, name in enumerate(self.variables):
            template = template.replace(_SENTINEL % i, values.get(name, ""))
        return template

    def placeholders(self, key: str) -> list[tuple[str, str]]:
        """(placeholder, variable) in the template of ``key`` (a key of ``templates``)."""
        return self._template_variables[key]

    def proc_values(self, index: int, values: dict[str, str] | None = None) -> dict[str, str]:
        """Values of the commands that may vary, for proc ``index`` of this segment (``values``:
        its variables, when the caller has them already)."""
        values = values if values is not None else self.values_of(index)
        out = {}
        for key, template in self.templates.items():
            for sentinel, name in self._template_variables[key]:
                template = template.replace(sentinel, values.get(name, ""))
            out[key] = template
        if self.dynamic:
            out.update(self._expand_all(values, self.dynamic))
        for name in self.segment.item_names:  # queue input, arguments from ...: the item sets the command
            out[name] = values.get(name, "")
        return out

    def varying_keys(self) -> list[str]:
        return [*self.templates, *self.dynamic, *self.segment.item_names]

    def iter_values(self) -> Iterator[dict[str, str]]:
        for index in range(len(self.segment.procs)):
            yield self.proc_values(index)
