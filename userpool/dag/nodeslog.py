"""The engine's own events in the DAG's nodes log, and reading them back when it recovers.

The pool writes each node job's events in ``file.dag.nodes.log`` (the job's DAGManNodesLog);
the engine adds the events only it knows, as DAGMan does: 016 "POST Script terminated" with
the script's value and the node, and 034 PRE_SKIP when a PRE script's value skipped a node.
A recovering engine reads them back (the jobs' own results it takes from the pool), so a
POST script that already ran is not run again and a skipped node stays done.  Each event is
one ``write`` on a file opened for appending, so it never interleaves with the pool's.
A fresh run of a DAG starts the file again, as DAGMan truncates it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

POST_TERMINATED = 16
PRE_SKIP = 34
NOOP_PROC = -10  # DAGMan's proc number for events of nodes that have no job
_HEADER = re.compile(r"^(\d{3}) \((-?\d+)\.(-?\d+)\.(-?\d+)\) ")
_RETURN = re.compile(
    r"\((\d)\) (?:Normal termination \(return value (-?\d+)\)|Abnormal termination \(signal (\d+)\))"
)
_NODE = "DAG Node: "


@dataclass(frozen=True)
class EngineEvent:
    number: int
    cluster: int
    node: str
    value: int  # a POST script's exit value (minus its signal); 0 for PRE_SKIP


def _header(number: int, cluster: int, proc: int, subproc: int = 0) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    return f"{number:03d} ({cluster:03d}.{proc:03d}.{subproc:03d}) {stamp} "


def post_event(cluster: int, proc: int, node: str, value: int) -> str:
    if value < 0:
        how = f"\t(0) Abnormal termination (signal {-value})\n"
    else:
        how = f"\t(1) Normal termination (return value {value})\n"
    return f"{_header(POST_TERMINATED, cluster, proc)}POST Script terminated.\n{how}    {_NODE}{node}\n...\n"


def pre_skip_event(node: str, sequence: int) -> str:
    return f"{_header(PRE_SKIP, 0, NOOP_PROC, sequence)}PRE_SKIP event for DAGMan.\n    {_NODE}{node}\n...\n"


def append(path: str, text: str) -> None:
    """One event, appended in one write, on disk before the engine goes on (its journal)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def append_after_end(path: str, text: str, cluster: int, wait_s: float = 3.0) -> None:
    """A POST event goes after its job's end in the log, as in DAGMan's: the pool writes the job's
    events a moment after the engine hears of them, so wait (briefly) for the end to be there."""
    marks = [f"{number:03d} ({cluster:03d}." for number in (5, 9)]
    deadline = time.monotonic() + wait_s
    while cluster > 0 and time.monotonic() < deadline:
        try:
            with open(path, "rb") as handle:
                handle.seek(max(0, os.fstat(handle.fileno()).st_size - (1 << 20)))
                tail = handle.read().decode(errors="replace")
        except FileNotFoundError:
            tail = ""
        if any(mark in tail for mark in marks):
            break
        time.sleep(0.02)
    append(path, text)


def start_again(path: str) -> None:
    """A fresh run of the DAG: the nodes log of an earlier run goes (DAGMan truncates it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    os.close(fd)


def engine_events(path: str) -> list[EngineEvent]:
    """The POST and PRE_SKIP events in the nodes log, in order (nothing if there is no log)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except FileNotFoundError:
        return []
    found: list[EngineEvent] = []
    for block in text.split("\n...\n"):
        lines = block.strip("\n").split("\n")
        header = _HEADER.match(lines[0]) if lines else None
        if header is None or int(header.group(1)) not in (POST_TERMINATED, PRE_SKIP):
            continue
        number, cluster = int(header.group(1)), int(header.group(2))
        node = next((line.strip()[len(_NODE) :] for line in lines[1:] if line.strip().startswith(_NODE)), "")
        if not node:
            continue
        value = 0
        if number == POST_TERMINATED:
            result = next((_RETURN.search(line) for line in lines[1:] if _RETURN.search(line)), None)
            if result is None:
                continue
            value = int(result.group(2)) if result.group(1) == "1" else -int(result.group(3))
        found.append(EngineEvent(number, cluster, node, value))
    return found
