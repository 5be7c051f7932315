"""A full disk under the pool: refuse what can wait, keep what cannot.

Nothing acknowledged may be lost, but a full disk must not stop the pool either: running
jobs still renew their leases, finish and report, and users still look at the queue.  So
the pool keeps a reserve file in its state directory (``disk_reserve_mb``).  When a
commit finds the disk full, or the free space falls below ``min_free_disk_mb``, the pool
turns *degraded*: it releases the reserve, so that the changes of jobs already running can
still be written, and refuses new work (submissions, uploads) with 507 Insufficient
Storage.  When space comes back it takes the reserve again and accepts work as before.
A pool started on a full disk starts degraded and says so.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from updraft.core.errors import UpdraftError

log = logging.getLogger("updraft.pool")
RESERVE_NAME = "disk.reserve"


class DiskFull(UpdraftError):
    """A write the pool refused because its disk is full (HTTP 507 where a client asked for it)."""


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(exc).lower()
    return "disk is full" in text or "database or disk is full" in text


class DiskGuard:
    def __init__(self, state_dir: Path, reserve_mb: int, min_free_mb: int) -> None:
        self.state_dir = state_dir
        self.reserve = state_dir / RESERVE_NAME
        self.reserve_bytes = max(0, reserve_mb) << 20
        self.min_free_bytes = max(0, min_free_mb) << 20
        self.reason = ""

    @property
    def degraded(self) -> bool:
        return bool(self.reason)

    def free_bytes(self) -> int:
        stats = os.statvfs(self.state_dir)
        return stats.f_bavail * stats.f_frsize

    def refusal(self) -> str:
        return (
            f"no space left on the pool's disk ({self.free_bytes() >> 20} MB free in {self.state_dir}):"
            " new work is refused until space is freed; queries, polls and completions go on"
        )

    def check(self) -> None:
        """At start and now and then: degraded or not, and the reserve taken when there is room."""
        free = self.free_bytes()
        if self.reserve.exists() and free >= self.min_free_bytes:
            if self.degraded:
                log.warning("disk space is back (%d MB free): accepting new work again", free >> 20)
            self.reason = ""
            return
        if free >= self.min_free_bytes + self.reserve_bytes and self._take_reserve():
            if self.degraded:
                log.warning("disk space is back (%d MB free): accepting new work again", free >> 20)
            self.reason = ""
            return
        if not self.degraded:
            self.reason = self.refusal()
            log.error("degraded: %s", self.reason)

    def _take_reserve(self) -> bool:
        if self.reserve_bytes == 0 or self.reserve.exists():
            return True
        temp = self.reserve.with_suffix(".tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)  # real blocks, not a sparse file
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self.reserve)
            return True
        except OSError as exc:
            temp.unlink(missing_ok=True)
            if not is_disk_full(exc):
                raise
            return False

    def release(self) -> bool:
        """The disk is full: give the reserve back for the writes that must not fail; degraded now."""
        released = self.reserve.exists()
        self.reserve.unlink(missing_ok=True)
        if not self.degraded:
            self.reason = self.refusal()
            log.error("degraded: %s%s", self.reason, " (reserve released)" if released else "")
        return released
