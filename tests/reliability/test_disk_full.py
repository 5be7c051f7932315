"""A full disk under the pool: submissions refused with 507, everything else goes on.

The pool's home is put on a small tmpfs of the test's own and filled up: a submission is
refused in words a user understands, queries still answer, a job already running still
finishes, and when space comes back the pool accepts work again.  A pool started on a full
disk starts, degraded, and says so.  Mounting needs root: the test skips otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pilots import ProtocolPilot, slot_ad
from tests.support.pools import RunningPool, start_pool
from updraft.core.protocol import Scope

pytestmark = pytest.mark.root
REFUSAL = "no space left on the pool's disk"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system for the pool's home needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write until the disk is full; the filler file is returned to be removed later."""
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        while True:
            try:
                handle.write(b"\0" * (1 << 20))
                handle.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    with contextlib.suppress(OSError), open(disk / "filler2", "wb") as handle:  # the last few kilobytes
        while True:
            handle.write(b"\0" * 4096)
            handle.flush()
    return filler


def degraded(pool: RunningPool) -> str:
    return pool.client().ping().degraded


def wait_for(condition, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_full_disk_refuses_new_work_and_keeps_running_jobs(small_disk: Path, workdir: Path) -> None:
    home = small_disk / "pool"
    home.mkdir()
    (home / "pool.yaml").write_text("disk_reserve_mb: 8\nmin_free_disk_mb: 4\ndisk_check_interval_s: 0.5\n")
    pool = start_pool(home)
    try:
        cluster = pool.submit('executable = job.sh\n+DiskTag = "full"\nqueue\n', "alice", workdir)
        pilot = ProtocolPilot(
            pool.client("disk-pilot", Scope.PILOT), slot_ad("slot@disk", START='TARGET.DiskTag =?= "full"')
        )
        match = pilot.take()
        assert match is not None
        filler = fill(small_disk)
        wait_for(lambda: REFUSAL in degraded(pool), "the pool never noticed the full disk")

        (workdir / "more.sub").write_text("executable = job.sh\nqueue\n")
        refused = pool.run("condor_submit", "more.sub", user="alice", cwd=workdir)
        assert refused.returncode == 1 and REFUSAL in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert pool.job(f"{cluster}.0", "JobStatus", user="alice") == "2"  # queries answer
        pilot.poll(max_matches=0)  # a running job's heartbeat
        assert pilot.finish(match, exit_code=0).status == 4  # and its completion is written
        assert pool.job(f"{cluster}.0", "ExitCode", user="alice", history=True) == "0"

        filler.unlink()
        (small_disk / "filler2").unlink(missing_ok=True)
        wait_for(lambda: not degraded(pool), "the pool never noticed the space coming back")
        accepted = pool.run("condor_submit", "more.sub", user="alice", cwd=workdir)
        assert accepted.returncode == 0, accepted.stderr
    finally:
        pool.stop()


def test_a_pool_started_on_a_full_disk_starts_degraded(small_disk: Path, workdir: Path) -> None:
    home = small_disk / "pool"
    home.mkdir()
    (home / "pool.yaml").write_text("disk_reserve_mb: 8\nmin_free_disk_mb: 4\n")
    pool = start_pool(home)
    cluster = pool.submit("executable = job.sh\nqueue\n", "alice", workdir)
    pool.stop()
    fill(small_disk)
    pool.process.start()
    try:
        assert REFUSAL in degraded(pool)
        assert "degraded" in (home / "pool.log").read_text()
        assert pool.job(f"{cluster}.0", "JobStatus", user="alice") == "1"
        (workdir / "more.sub").write_text("executable = job.sh\nqueue\n")
        refused = pool.run("condor_submit", "more.sub", user="alice", cwd=workdir)
        assert refused.returncode == 1 and REFUSAL in refused.stderr, refused.stderr
    finally:
        pool.stop()
