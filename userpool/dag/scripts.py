"""PRE and POST scripts: run on the submit side, as the DAG's owner, with DAGMan's macros.

``SCRIPT [DEFER status time] PRE|POST node executable arguments``: the executable and its
arguments are split on blanks, each argument that is ``$JOB``, ``$RETRY``, ``$MAX_RETRIES``,
``$JOBID``, ``$RETURN``, ``$PRE_SCRIPT_RETURN``, ``$DAG_STATUS`` or ``$FAILED_COUNT`` replaced
(only whole arguments, as in DAGMan), and the script run in the node's directory (DIR) with the DAG's
environment, never its engine's token.  Each runs in its own process group and is killed
with it after the pool's ``dag_script_timeout_s`` (Updraft's knob: a hung script would hold
its DAG for ever); its output goes to dagman.out.  The end comes back to the engine's inbox.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from userpool.dag.model import ScriptWhen

MAX_OUTPUT = 64 * 1024  # of a script's output, this much reaches dagman.out


@dataclass(frozen=True)
class ScriptEnded:
    node: str
    when: ScriptWhen
    value: int  # exit status, or minus the signal that ended it
    output: str


def command_line(text: str, macros: Mapping[str, str]) -> list[str]:
    """The script's argv: blank-separated words; a word that is a whole $MACRO is replaced by its
    value (``job_status=$RETURN`` stays as written, as in DAGMan)."""
    return [macros.get(word[1:], word) if word.startswith("$") else word for word in text.split()]


class ScriptRunner:
    """Starts scripts and reports each end into ``inbox``; kills them all when the engine stops."""

    def __init__(self, inbox: queue.Queue[object], timeout_s: float, environment: Mapping[str, str]) -> None:
        self.inbox = inbox
        self.timeout_s = timeout_s
        self.environment = dict(environment)
        self.running: dict[tuple[str, ScriptWhen], subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def start(self, node: str, when: ScriptWhen, argv: list[str], directory: str) -> None:
        if not argv:
            self.inbox.put(ScriptEnded(node, when, 1, "the script line names no program"))
            return
        program = argv[0] if os.path.isabs(argv[0]) else os.path.join(directory, argv[0])
        try:
            process = subprocess.Popen(
                [program, *argv[1:]], cwd=directory, env=self.environment, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )  # fmt: skip
        except OSError as exc:
            self.inbox.put(ScriptEnded(node, when, 1, f"could not run {argv[0]}: {exc.strerror}"))
            return
        with self._lock:
            self.running[(node, when)] = process
        threading.Thread(
            target=self._wait, args=(node, when, process), daemon=True, name=f"{when}-{node}"
        ).start()

    def _wait(self, node: str, when: ScriptWhen, process: subprocess.Popen[bytes]) -> None:
        note = ""
        try:
            output, _ = process.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            output, _ = process.communicate()
            note = f"\n(killed after {self.timeout_s:.0f} s, the pool's dag_script_timeout_s)"
        with self._lock:
            self.running.pop((node, when), None)
        text = output[:MAX_OUTPUT].decode(errors="replace") + note
        self.inbox.put(ScriptEnded(node, when, int(process.returncode), text))

    def stop_all(self) -> None:
        """The engine stops (a hold, the pool's stop): its scripts go too; a recovery runs them again."""
        with self._lock:
            processes = list(self.running.values())
        for process in processes:
            _kill_group(process)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        pass
