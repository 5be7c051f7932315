"""Writing in users' directories with the rights of the job's owner, never the pool's.

A pool running as root that copied a job's output where the job's ad says would let any
token holder overwrite the pool's signing key or drop a file in /etc/cron.d.  HTCondor's
schedd writes a job's files as the job's owner; so does this module:

- **as root**, a helper process forked at start (while the pool has one thread) serves
  requests over a socket; for each it forks a child that takes the owner's uid, gid and
  groups, does the writes with nothing but those rights, and reports back.  The pool opens
  the spooled sources itself and passes the descriptors, so the owner never sees the spool.
- **unprivileged**, the pool writes with its own rights, and only into directories that
  are its own (every directory on the way, checked on the open descriptor).

Either way every directory on the way is opened without following links (below the base
the owner named), a destination is opened without following a link and must be a plain
file with one link, and nothing is written under the pool's home (its state, keys, spool),
compared by device and inode so no path trick reaches it.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import stat
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from userpool.identities import Account

#: how long one owner's writes may take before the child is killed (a hung file server)
CHILD_TIMEOUT_S = 120.0
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_MAX_MESSAGE = 1 << 20


class Refused(Exception):
    """A write the rules do not allow (said in the delivery's event)."""


@dataclass(frozen=True)
class Place:
    """Where writes may go: under ``base``, never into ``forbidden`` (device, inode) directories,
    and (unprivileged) only through directories owned by ``owner``."""

    base: str
    forbidden: frozenset[tuple[int, int]]
    owner: int | None = None


def forbidden_directories(home: Path) -> frozenset[tuple[int, int]]:
    """The pool's home and what it keeps there, by (device, inode)."""
    out = set()
    for path in [home, *(home / name for name in ("state", "keys", "tokens", "spool", "blobs", "tls"))]:
        try:
            info = path.stat()
        except OSError:
            continue
        out.add((info.st_dev, info.st_ino))
    return frozenset(out)


# ---------------------------------------------------------------------------------------------
# The writes themselves (in the owner's child, or in the unprivileged pool)
# ---------------------------------------------------------------------------------------------
def _check_dir(fd: int, place: Place, shown: str) -> None:
    info = os.fstat(fd)
    if (info.st_dev, info.st_ino) in place.forbidden:
        raise Refused(f"{shown} is the pool's own directory")
    if place.owner is not None and info.st_uid != place.owner:
        raise Refused(f"{shown} is not the pool account's own directory")


def _open_parent(place: Place, relative: str, make_dirs: bool) -> tuple[int, str]:
    """A descriptor of the directory that holds ``relative`` under the base, and the file's name."""
    parts = [part for part in relative.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise Refused(f"{relative!r} is not a path inside {place.base}")
    fd = os.open(place.base, _DIR_FLAGS)
    try:
        _check_dir(fd, place, place.base)
        shown = place.base
        for part in parts[:-1]:
            shown = f"{shown}/{part}"
            try:
                child = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not make_dirs:
                    raise
                os.mkdir(part, 0o777, dir_fd=fd)  # the owner's umask applies
                child = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
            _check_dir(fd, place, shown)
        return fd, parts[-1]
    except BaseException:
        os.close(fd)
        raise


def _open_target(place: Place, relative: str, mode: int, append: bool) -> int:
    parent, name = _open_parent(place, relative, make_dirs=not append)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(name, flags | (os.O_APPEND if append else 0), mode, dir_fd=parent)
    finally:
        os.close(parent)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{relative} is not a plain file")
        if info.st_nlink != 1:
            raise Refused(f"{relative} has other hard links")
        if place.owner is not None and info.st_uid != place.owner:
            raise Refused(f"{relative} is not the pool account's own file")
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _describe(exc: BaseException) -> str:
    if isinstance(exc, Refused):
        return str(exc)
    if isinstance(exc, OSError):
        if exc.errno == errno.ELOOP:
            return "a symbolic link is in the way (links are not followed)"
        return exc.strerror or str(exc)
    return str(exc)


def copy_files(place: Place, files: Sequence[tuple[str, int]], sources: Sequence[int]) -> list[str]:
    """Copy each source descriptor to its (relative path, mode); '' or the problem, per file."""
    results = []
    for (relative, mode), source in zip(files, sources, strict=True):
        try:
            target = _open_target(place, relative, mode, append=False)
            try:
                os.ftruncate(target, 0)
                os.lseek(source, 0, os.SEEK_SET)
                while chunk := os.read(source, 1 << 20):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(target, view) :]
            finally:
                os.close(target)
            results.append("")
        except (OSError, Refused) as exc:
            results.append(_describe(exc))
    return results


def append_text(place: Place, relative: str, data: bytes, mode: int = 0o644) -> str:
    """Append ``data`` to a file (created when missing); '' or the problem."""
    try:
        target = _open_target(place, relative, mode, append=True)
        try:
            os.write(target, data)
        finally:
            os.close(target)
        return ""
    except (OSError, Refused) as exc:
        return _describe(exc)


def writable_directories(paths: Sequence[str], place: Place) -> list[str]:
    return [writable_directory(path, place) for path in paths]


def writable_directory(path: str, place: Place) -> str:
    """'' if ``path`` is a directory the caller may write in (and not the pool's); else why not."""
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        return f"{path}: {_describe(exc)}"
    try:
        _check_dir(fd, place, path)
    except Refused as exc:
        return str(exc)
    finally:
        os.close(fd)
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{path} is not writable"
    return ""


def _perform(request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
    place = Place(
        request["base"], frozenset(tuple(item) for item in request["forbidden"]), request.get("owner")
    )
    op = request["op"]
    if op == "copy":
        return {"results": copy_files(place, [tuple(f) for f in request["files"]], fds)}
    if op == "append":
        return {"result": append_text(place, request["path"], request["data"].encode(), request["mode"])}
    if op == "writable":
        return {"results": writable_directories(request["paths"], place)}
    raise ValueError(f"unknown op {op!r}")


# ---------------------------------------------------------------------------------------------
# Who does them
# ---------------------------------------------------------------------------------------------
class OwnerWriter:
    """The interface the pool uses; see the module docstring for the two kinds."""

    privileged = False

    def copy(
        self, account: Account, place: Place, files: Sequence[tuple[str, int]], sources: Sequence[int]
    ) -> list[str]:
        raise NotImplementedError

    def append(self, account: Account, place: Place, relative: str, data: bytes, mode: int = 0o644) -> str:
        raise NotImplementedError

    def writable(self, account: Account, place: Place, paths: Sequence[str]) -> list[str]:
        """For each directory, '' when ``account`` may write in it, else why not."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class OwnRightsWriter(OwnerWriter):
    """An unprivileged pool: its own rights, in directories that are its own, as its own account only."""

    def __init__(self) -> None:
        self.uid = os.geteuid()

    def _mine(self, account: Account, place: Place) -> Place:
        if account.uid != self.uid:
            raise Refused(f"the pool runs as uid {self.uid} and cannot write as {account.name}")
        return Place(place.base, place.forbidden, self.uid)

    def copy(
        self, account: Account, place: Place, files: Sequence[tuple[str, int]], sources: Sequence[int]
    ) -> list[str]:
        try:
            mine = self._mine(account, place)
        except Refused as exc:
            return [str(exc)] * len(files)
        return copy_files(mine, files, sources)

    def append(self, account: Account, place: Place, relative: str, data: bytes, mode: int = 0o644) -> str:
        try:
            return append_text(self._mine(account, place), relative, data, mode)
        except Refused as exc:
            return str(exc)

    def writable(self, account: Account, place: Place, paths: Sequence[str]) -> list[str]:
        try:
            return writable_directories(paths, self._mine(account, place))
        except Refused as exc:
            return [str(exc)] * len(paths)


class ForkedWriter(OwnerWriter):
    """A root pool: a helper forked now serves writes, each in a child with the owner's rights."""

    privileged = True

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the helper: nothing of the pool but this socket
            ours.close()
            try:
                _serve(theirs)
            finally:
                os._exit(0)
        theirs.close()
        self.pid = pid
        self._socket = ours
        self._lock = threading.Lock()

    def _call(self, account: Account, request: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        request = {**request, "uid": account.uid, "gid": account.gid, "groups": list(account.groups)}
        with self._lock:
            socket.send_fds(self._socket, [json.dumps(request).encode()], list(fds))
            reply = self._socket.recv(_MAX_MESSAGE)
        if not reply:
            raise OSError("the pool's writer helper is gone")
        answer = json.loads(reply)
        if "error" in answer:
            raise OSError(answer["error"])
        return answer

    @staticmethod
    def _request(op: str, place: Place, **extra: Any) -> dict[str, Any]:
        return {"op": op, "base": place.base, "forbidden": sorted(place.forbidden), "owner": None, **extra}

    def copy(
        self, account: Account, place: Place, files: Sequence[tuple[str, int]], sources: Sequence[int]
    ) -> list[str]:
        try:
            answer = self._call(account, self._request("copy", place, files=list(files)), sources)
        except OSError as exc:
            return [str(exc)] * len(files)
        return list(answer["results"])

    def append(self, account: Account, place: Place, relative: str, data: bytes, mode: int = 0o644) -> str:
        try:
            return str(
                self._call(
                    account, self._request("append", place, path=relative, data=data.decode(), mode=mode)
                )["result"]
            )
        except OSError as exc:
            return str(exc)

    def writable(self, account: Account, place: Place, paths: Sequence[str]) -> list[str]:
        try:
            return list(self._call(account, self._request("writable", place, paths=list(paths)))["results"])
        except OSError as exc:
            return [str(exc)] * len(paths)

    def close(self) -> None:
        close_helper(self._socket, self.pid)


def close_helper(sock: socket.socket, pid: int) -> None:
    """A forked helper's end: it sees the end of its socket and exits; wait for it."""
    sock.close()
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def owner_writer() -> OwnerWriter:
    """The writer for this process: forked helper when root, own rights otherwise."""
    return ForkedWriter() if os.geteuid() == 0 else OwnRightsWriter()


def _serve(sock: socket.socket) -> None:
    """The helper's loop (root): one request at a time, each done by a child as its owner."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pool decides when to stop: it closes the socket
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            message, fds, _flags, _address = socket.recv_fds(sock, _MAX_MESSAGE, 256)
        except OSError:
            return
        if not message:
            return
        try:
            answer = _as_owner(json.loads(message), fds)
        except Exception as exc:  # never let one request end the helper
            answer = {"error": f"writer helper: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)
        sock.send(json.dumps(answer).encode())


def drop_to(uid: int, gid: int, groups: Iterable[int]) -> None:
    """This process (a child of root) keeps nothing but the account's rights, for good."""
    os.setgroups([g for g in groups if g != 0])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() == 0 or os.geteuid() == 0 or os.getgid() == 0:
        raise OSError("could not drop root")
    os.umask(0o022)


def _as_owner(request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
    uid, gid = int(request["uid"]), int(request["gid"])
    if uid == 0 or gid == 0:
        return {"error": "refusing to write as root"}
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            drop_to(uid, gid, request["groups"])
            answer = _perform(request, fds)
            os.write(write_end, json.dumps(answer).encode())
            status = 0
        except BaseException as exc:
            try:
                os.write(write_end, json.dumps({"error": f"as uid {uid}: {exc}"}).encode())
            except OSError:
                pass
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        data = _read_all(read_end, CHILD_TIMEOUT_S)
    finally:
        os.close(read_end)
    if data is None:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    if data is None:
        return {"error": f"the writes as uid {uid} took longer than {CHILD_TIMEOUT_S:.0f} s"}
    return json.loads(data) if data else {"error": f"the writer for uid {uid} died"}


def _read_all(fd: int, timeout: float) -> bytes | None:
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _w, _x = select.select([fd], [], [], remaining)
        if not ready:
            return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


__all__: Iterable[str] = [
    "ForkedWriter",
    "OwnRightsWriter",
    "OwnerWriter",
    "Place",
    "Refused",
    "close_helper",
    "drop_to",
    "forbidden_directories",
    "owner_writer",
]
