"""The pool's home directory: its layout, who may read what in it, and the lock that makes it one pool's.

HTCondor's job queue log is readable by the condor account only; the same holds here: the
queue database (every job's environment and arguments), the spool (every job's output), the
blobs (every input) and the signing key are the pool account's alone.  What clients on the
host need to find the pool (``pool.json``, the TLS CA certificate) stays readable.

Two pools on one home would hand out the same cluster ids and overwrite each other's
``pool.json``: the first holds an exclusive lock on ``state/pool.lock`` for its whole life,
and a second one refuses to start, naming the process that holds it.
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import os
import stat
import time
from pathlib import Path

from updraft.core.errors import UpdraftError
from updraft.core.protocol import Scope
from userpool.config import PoolConfig
from userpool.tokens import TokenSigner

#: directories only the pool account may enter
PRIVATE_DIRS = ("state", "keys", "tokens", "spool", "blobs")
LOCK_NAME = "pool.lock"
LOCAL_TOKEN_LIFETIME_S = 365 * 86400


class HomeInUse(UpdraftError):
    """Another pool process holds this home's state lock."""


def private_mode() -> None:
    """Everything the pool creates from now on is its own (0600 files, 0700 directories)."""
    os.umask(0o077)


def secure_layout(config: PoolConfig) -> None:
    """Create the layout and close up what an older pool (or a careless copy) left open."""
    home = config.home
    home.mkdir(parents=True, exist_ok=True)
    for name in PRIVATE_DIRS:
        directory = home / name
        directory.mkdir(exist_ok=True)
        _restrict(directory)
    for name in ("pool.log", "pool.stderr", "pool.yaml", "identity.map"):
        path = home / name
        if path.is_file() and not path.is_symlink():
            os.chmod(path, stat.S_IMODE(path.stat().st_mode) & 0o600)


def _restrict(directory: Path) -> None:
    """0700 on ``directory``, 0600/0700 on what it holds (the top two levels: files, spool clusters)."""
    os.chmod(directory, 0o700)
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.is_symlink():
            continue
        if entry.is_dir():
            os.chmod(entry.path, 0o700)
        elif entry.is_file():
            os.chmod(entry.path, entry.stat().st_mode & 0o700)


class StateLock:
    """An exclusive lock on ``state/pool.lock``, held as long as the object is open."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            who = f"pid {holder}" if holder else "another process"
            raise HomeInUse(
                f"{self.path.parent.parent}: another pool ({who}) is running on this home; "
                "stop it first, or give this one a home of its own (--home)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def prepare_home(config: PoolConfig) -> Path:
    """The layout, its modes, and the local user's token; returns the token path."""
    secure_layout(config)
    signer = TokenSigner.from_home(config.signing_key)
    token_path = config.home / "tokens" / "local.token"
    if not token_path.exists() or not _still_valid(signer, token_path):
        user = getpass.getuser()
        lifetime = min(LOCAL_TOKEN_LIFETIME_S, config.max_token_lifetime_s)
        token, _expires = signer.issue(user, frozenset({Scope.USER, Scope.ADMIN}), lifetime)
        write_private_file(token_path, token + "\n")
    return token_path


def _still_valid(signer: TokenSigner, path: Path) -> bool:
    try:
        identity = signer.verify(path.read_text().strip())
    except Exception:
        return False
    return identity.expires - time.time() > 86400


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 from the start, never through a symlink.

    A temporary file beside it (O_EXCL, 0600) is renamed over ``path``: a link planted at
    ``path`` is replaced, not followed, and no reader ever sees a half-written secret.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
