"""The pool's home as an attacker on the same host, or a clumsy operator, meets it.

One home is one pool (a second one refuses to start); the queue, spool, blobs and keys are
the pool account's alone; a damaged queue database is refused in one line that says what
to do, and never replaced by an empty one whose cluster ids restart next to an old spool;
``updraft token create -o`` writes its secret safely.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.pools import BIN, RunningPool, start_pool
from userpool.process import PoolProcess


def pool_command(home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`updraft pool` on ``home`` in the foreground, for pools expected to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "updraft", "pool", "--home", str(home), "--port", "0", *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "UPDRAFT_HOME": str(home)},
    )


def test_a_second_pool_on_the_same_home_refuses_naming_the_first(fresh_pool: RunningPool) -> None:
    before = (fresh_pool.home / "pool.json").read_text()
    second = pool_command(fresh_pool.home)
    assert second.returncode != 0
    assert f"pid {fresh_pool.process.process.pid}" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    assert (fresh_pool.home / "pool.json").read_text() == before
    assert fresh_pool.client().reserve_cluster() > 0  # the first one is untouched


def test_state_is_readable_by_the_pool_account_only(fresh_pool: RunningPool, workdir: Path) -> None:
    fresh_pool.submit("executable = job.sh\nqueue\n", "alice", workdir)
    home = fresh_pool.home
    for name in ("state", "keys", "tokens", "spool", "blobs"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o700, name
    for path in [*(home / "state").iterdir(), home / "keys" / "signing.key", home / "pool.log"]:
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path} is open to others"
    assert stat.S_IMODE((home / "pool.json").stat().st_mode) == 0o644  # how local clients find it


def test_an_old_home_with_open_modes_is_closed_up_at_start(tmp_path: Path) -> None:
    home = tmp_path / "pool"
    running = start_pool(home)
    running.stop()
    os.chmod(home / "state", 0o755)
    os.chmod(home / "state" / "queue.db", 0o644)
    running.process.start()
    try:
        assert stat.S_IMODE((home / "state").stat().st_mode) == 0o700
        assert stat.S_IMODE((home / "state" / "queue.db").stat().st_mode) == 0o600
    finally:
        running.stop()


@pytest.mark.parametrize("damage", ["garbage", "empty"])
def test_a_damaged_queue_is_refused_in_one_line(tmp_path: Path, damage: str) -> None:
    home = tmp_path / "pool"
    start_pool(home).stop()
    database = home / "state" / "queue.db"
    for extra in ("-wal", "-shm"):
        Path(f"{database}{extra}").unlink(missing_ok=True)
    database.write_bytes(b"this is not a database, it is a text file\n" * 100 if damage == "garbage" else b"")
    result = pool_command(home)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    message = [line for line in result.stderr.splitlines() if "queue.db" in line]
    assert message and "Restore it from a backup" in message[-1], result.stderr
    assert database.stat().st_size == (0 if damage == "empty" else 4200)  # left as it was


def test_a_queue_moved_aside_never_reuses_the_ids_of_the_spool(tmp_path: Path, workdir: Path) -> None:
    home = tmp_path / "pool"
    running = start_pool(home)
    for _ in range(3):
        running.submit("executable = job.sh\nqueue\n", "alice", workdir)
    running.stop()
    (home / "spool" / "41").mkdir()  # output of a cluster the moved database knew
    for path in (home / "state").glob("queue.db*"):
        path.rename(tmp_path / path.name)
    running.process.start()
    try:
        assert running.client().reserve_cluster() == 42
    finally:
        running.stop()


def test_token_create_writes_its_file_safely(fresh_pool: RunningPool, tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "fe1.token"

    def create(path: Path) -> subprocess.CompletedProcess[str]:
        argv = ["token", "create", "--home", str(fresh_pool.home), "--user", "fe1", "--scope", "frontend"]
        return subprocess.run(
            [str(BIN / "updraft"), *argv, "-o", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    made = create(target)
    assert made.returncode == 0, made.stderr
    assert made.stdout == ""  # the secret is in the file, not also on the terminal
    assert str(target) in made.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert fresh_pool.signer().verify(target.read_text().strip()).subject == "fe1"

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    link = tmp_path / "planted.token"
    link.symlink_to(victim)
    assert create(link).returncode == 0
    assert victim.read_text() == "keep me\n"  # the link was replaced, not followed
    assert not link.is_symlink() and stat.S_IMODE(link.stat().st_mode) == 0o600


def test_pool_process_helper_sees_the_refusal(tmp_path: Path) -> None:
    """The helper every test uses reports a pool that would not start, with its reason."""
    home = tmp_path / "pool"
    first = PoolProcess(home).start()
    try:
        with pytest.raises(RuntimeError, match="exited"):
            PoolProcess(home).start(timeout=30)
        assert "another pool" in (home / "pool.stderr").read_text()
    finally:
        first.stop()
