"""Starting DAG engines as their owners: a helper forked while the pool is still small.

HTCondor's schedd starts ``condor_dagman`` as the DAG's owner.  Updraft's engine is Python,
and an interpreter the pool can run is not always one every account can run (a Python under
root's home, say); so the engine is not exec'd.  At start, before it reads its keys or starts
a thread, the pool forks this helper.  The helper loads the engine's code once, then for each
DAG forks a child that becomes the owner (uid, gid, groups; never root), moves into the DAG's
directory and runs the engine in the code it already has.  Nothing of the pool is in the
helper but the socket it serves, and nothing secret was loaded before it was forked.

The helper reaps its children and reports each exit (its code, or minus the signal that
killed it).  When the pool goes away, even by kill -9, the helper sees the end of its socket
and exits, and each engine, told by the kernel that its parent died, stops (its DAG job
recovers under the next pool).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Any

from userpool.asowner import close_helper, drop_to

log = logging.getLogger("updraft.dagman")

PR_SET_PDEATHSIG = 1
#: an engine that stops because it cannot go on now (its DAG busy, the pool gone) exits so
EXIT_TRY_LATER = 75
#: ... and one that failed in an unexpected way so; the supervisor starts it again
EXIT_ENGINE_ERROR = 70
_MAX_LINE = 1 << 20


@dataclass(frozen=True)
class EngineSpec:
    """What one engine is started with: who it runs as, where, with what environment and arguments."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    uid: int | None = None  # None: the pool's own account (an unprivileged pool)
    gid: int | None = None
    groups: tuple[int, ...] = ()
    stdout: str = ""  # appended to, as the owner; empty: nowhere
    stderr: str = ""


class LaunchError(Exception):
    """The helper could not start an engine (said in the DAG job's hold reason)."""


class EngineLauncher:
    """The pool's side: ask the helper to start or signal engines; collect their exits."""

    def __init__(self, entry: str = "userpool.dag.runner:main") -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            ours.close()
            status = 0
            try:
                _serve(theirs, entry)
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        theirs.close()
        self.pid = pid
        self._socket = ours
        self._buffer = b""
        self._exits: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        #: the helper ended (killed with the pool's process group, say): no engine can start until
        #: the pool starts again, and its socket must leave the pool's loop (it reads as EOF forever)
        self.gone = False

    # -- requests ---------------------------------------------------------------------------
    def spawn(self, spec: EngineSpec) -> int:
        """Start one engine; its pid."""
        request = {"op": "spawn", **spec.__dict__, "groups": list(spec.groups)}
        with self._lock:
            self._send(request)
            while True:
                message = self._receive(block=True)
                if message is None:
                    raise LaunchError("the pool's DAG launcher is gone")
                if "exited" in message:
                    self._exits.append((int(message["exited"]), int(message["status"])))
                    continue
                if "error" in message:
                    raise LaunchError(str(message["error"]))
                return int(message["pid"])

    def signal(self, pid: int, number: int) -> None:
        """Signal one engine (the helper knows whether it is still its child)."""
        with self._lock:
            self._send({"op": "signal", "pid": pid, "signal": int(number)})

    def exits(self) -> list[tuple[int, int]]:
        """Engines that ended since the last call: (pid, exit code or -signal)."""
        with self._lock:
            while True:
                message = self._receive(block=False)
                if message is None:
                    break
                if "exited" in message:
                    self._exits.append((int(message["exited"]), int(message["status"])))
            found, self._exits = self._exits, []
        return found

    def fileno(self) -> int:
        """Readable when the helper has news (an engine ended): the pool's loop watches it."""
        return self._socket.fileno()

    def close(self) -> None:
        close_helper(self._socket, self.pid)

    # -- the wire -----------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        if self.gone:
            raise LaunchError("the pool's DAG launcher is gone")
        try:
            self._socket.sendall(json.dumps(message).encode() + b"\n")
        except OSError as exc:
            raise LaunchError(f"the pool's DAG launcher is gone: {exc}") from None

    def _receive(self, block: bool) -> dict[str, Any] | None:
        while b"\n" not in self._buffer:
            if not block and not select.select([self._socket], [], [], 0)[0]:
                return None
            try:
                chunk = self._socket.recv(1 << 16)
            except BlockingIOError:
                if not block:
                    return None
                select.select([self._socket], [], [])
                continue
            except OSError as exc:
                self.gone = True
                raise LaunchError(f"the pool's DAG launcher is gone: {exc}") from None
            if not chunk:
                self.gone = True
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return dict(json.loads(line))


# ---------------------------------------------------------------------------------------------
# The helper (a fork of the pool taken at its start)
# ---------------------------------------------------------------------------------------------
def _serve(sock: socket.socket, entry: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pool decides when to stop: it closes the socket
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    keep = sock.fileno()
    os.closerange(3, keep)  # nothing of the pool's: its database, its listening socket, its writer
    os.closerange(keep + 1, 1 << 16)
    module_name, _, function_name = entry.partition(":")
    main = getattr(__import__(module_name, fromlist=[function_name]), function_name)
    _preload()
    children: set[int] = set()
    buffer = b""
    wake_read, wake_write = os.pipe()  # an engine's end wakes the loop at once (SIGCHLD)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        ready, _w, _x = select.select([sock, wake_read], [], [], 1.0)
        if wake_read in ready:
            os.read(wake_read, 4096)
        for pid, status in _reap(children):
            _answer(sock, {"exited": pid, "status": status})
        if sock not in ready:
            continue
        chunk = sock.recv(1 << 16)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            try:
                request = json.loads(line)
                if request["op"] == "spawn":
                    pid = _spawn(request, main, sock)
                    children.add(pid)
                    _answer(sock, {"pid": pid})
                elif request["op"] == "signal" and int(request["pid"]) in children:
                    os.kill(int(request["pid"]), int(request["signal"]))
            except Exception as exc:  # one bad request never ends the helper
                if request.get("op") == "spawn":
                    _answer(sock, {"error": str(exc)})


#: what the standard library loads only when first used: an engine's account may not be able to
#: read the interpreter's files (a Python under root's home), so they are loaded here, as the pool
PRELOAD = (
    "encodings.idna", "encodings.ascii", "encodings.latin_1", "encodings.utf_8", "encodings.punycode",
    "stringprep", "unicodedata", "_strptime", "json.decoder", "json.encoder", "http.client", "email.parser",
    "email.feedparser", "email.message", "ssl", "fcntl", "pwd", "grp", "shlex", "tarfile", "gzip", "zlib",
    "hashlib", "difflib", "uuid", "random", "secrets", "base64", "mimetypes", "locale", "tempfile", "glob",
    "fnmatch", "heapq", "bisect", "calendar", "urllib.parse", "selectors", "_posixsubprocess", "textwrap",
)  # fmt: skip


def _preload() -> None:
    import importlib
    import time

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    "localhost".encode("idna")
    time.strptime("2026", "%Y")


def _answer(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def _reap(children: set[int]) -> list[tuple[int, int]]:
    ended = []
    for pid in list(children):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            children.discard(pid)
            ended.append((pid, EXIT_ENGINE_ERROR))
            continue
        if done:
            children.discard(pid)
            ended.append((pid, os.waitstatus_to_exitcode(status)))
    return ended


def _spawn(request: dict[str, Any], main: Any, sock: socket.socket) -> int:
    uid, gid = request.get("uid"), request.get("gid")
    if uid is not None and (int(uid) == 0 or not gid):
        raise LaunchError("refusing to run a DAG as root")
    if len(request["argv"]) > 10000 or len(json.dumps(request["env"])) > _MAX_LINE:
        raise LaunchError("the engine's arguments or environment are too large")
    helper = os.getpid()
    pid = os.fork()
    if pid != 0:
        return pid
    status = EXIT_ENGINE_ERROR
    try:
        sock.close()
        signal.set_wakeup_fd(-1)
        os.setsid()
        if uid is not None:
            drop_to(int(uid), int(gid or 0), request.get("groups") or [])
        else:
            os.umask(0o022)
        # after the change of identity, which clears it: the engine ends with its helper (the pool)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != helper:
            os._exit(EXIT_TRY_LATER)
        for name in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT, signal.SIGCHLD):
            signal.signal(name, signal.SIG_DFL)
        _redirect(request.get("stdout") or "", request.get("stderr") or "")
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in request["env"].items()})
        status = int(main(list(request["argv"])))
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else EXIT_ENGINE_ERROR
    except BaseException:
        try:
            traceback.print_exc()
            sys.stderr.flush()
        except Exception:
            pass
    finally:
        os._exit(status)


def _redirect(stdout: str, stderr: str) -> None:
    """The engine's output (the DAG job's lib.out and lib.err), opened as the owner, never through a link."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    for fd, path in ((1, stdout), (2, stderr)):
        target = null
        if path:
            try:
                target = os.open(
                    path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
                )
            except OSError:
                target = null
        os.dup2(target, fd)
        if target != null:
            os.close(target)
    os.close(null)
