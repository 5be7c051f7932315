"""Every command the docs mark as runnable runs, as the reader would run it, and exits 0.

Per document: a fresh pool with eleven clusters already taken (so the document's first own
cluster is 12, the number the examples use), one pilot (site Nebraska, two slots) that runs
whatever may run there, and an empty directory belonging to the job account, where the
document's file blocks are written as it introduces them and its commands run in order. The
commands run as the job account with a user token that may also administer (what the pool's
own machine gives its local user), `HOME` set to that directory, and the repository's
`config/` beside them (the operator guides speak from a checkout). When that account cannot
run this checkout's commands (a Python or a clone under root's home), they run as root and
what they leave is given to the account after each one, as a user's own files would be.
Each document's transcript is kept in artifacts/docs/NAME.txt. How blocks are marked:
tests/support/docblocks.py.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.accounts import IS_ROOT, JOB_ACCOUNT, give_to_job_account
from tests.support.docblocks import Block, blocks
from tests.support.pilots_real import PilotLauncher
from tests.support.pools import BIN, RunningPool, start_pool
from updraft.core.protocol import Scope

ROOT = Path(__file__).resolve().parents[3]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ARTIFACTS = ROOT / "artifacts" / "docs"
FIRST_CLUSTER = 12  # the cluster id the examples use for the reader's first submission
COMMAND_TIMEOUT_S = 240


def with_runnable_blocks() -> list[Path]:
    return [path for path in DOCUMENTS if any(block.runnable for block in blocks(path))]


def test_every_shell_block_is_run_or_says_why_not() -> None:
    unmarked = [
        block.where
        for path in DOCUMENTS
        for block in blocks(path)
        if block.is_shell and not (block.runnable or block.file_name or block.options.get("skip"))
    ]
    assert not unmarked, f'shell blocks neither runnable, a file nor skip="why": {unmarked}'
    misplaced = [
        block.where
        for path in DOCUMENTS
        for block in blocks(path)
        if block.runnable and block.language not in ("sh", "python")
    ]
    assert not misplaced, f"runnable is for sh and python blocks: {misplaced}"


def test_the_readme_and_the_guides_have_runnable_examples() -> None:
    names = {path.name for path in with_runnable_blocks()}
    assert {"README.md", "user-guide.md", "pool-operations.md", "factory.md", "frontend.md"} <= names


class Reader:
    """Someone following one document on a machine with a pool."""

    def __init__(self, document: Path, root: Path, pool: RunningPool) -> None:
        self.document = document
        self.work = give_to_job_account(_directory(root / "work"))
        shutil.copytree(ROOT / "config", self.work / "config")
        credentials = _directory(root / "credentials")
        self.token_file = credentials / "token"
        self.token_file.write_text(pool.token(JOB_ACCOUNT, Scope.USER, Scope.ADMIN) + "\n")
        self.token_file.chmod(0o600)
        for path in (credentials, self.token_file):
            give_to_job_account(path)
        self._give_tree(self.work)
        self.env = {
            "PATH": f"{BIN}{os.pathsep}/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(self.work),
            "LANG": "C.UTF-8",
            "UPDRAFT_POOL": pool.url,
            "UPDRAFT_TOKEN_FILE": str(self.token_file),
        }
        self.transcript: list[str] = []

    def follow(self) -> None:
        for block in blocks(self.document):
            if block.file_name:
                self.write(block)
            if not block.runnable:
                continue
            if block.language == "python":
                self.run(block, block.line + 1, [str(BIN / "python"), "-c", block.text], block.text)
                continue
            for line, command in block.commands():
                self.run(block, line, ["bash", "-c", command], command)

    def write(self, block: Block) -> None:
        assert block.file_name and "/" not in block.file_name, f"{block.where}: file=NAME, a plain name"
        path = self.work / block.file_name
        path.write_text(block.text)
        self._give_tree(path)
        self.transcript.append(f"# {block.where}: wrote {block.file_name}\n")

    def run(self, block: Block, line: int, argv: list[str], shown: str) -> None:
        result = subprocess.run(
            argv, cwd=self.work, env=self.env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
            **as_job_account(),
        )  # fmt: skip
        self._give_tree(self.work)
        self.transcript.append(f"$ {shown}\n{result.stdout}{result.stderr}[exit {result.returncode}]\n")
        assert result.returncode == 0, (
            f"{self.document.name}:{line}: `{shown.strip()}` exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
        )

    def keep_transcript(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"{self.document.stem}.txt").write_text("".join(self.transcript))

    @staticmethod
    def _give_tree(path: Path) -> None:
        if not IS_ROOT:
            return
        account = pwd.getpwnam(JOB_ACCOUNT)
        for item in [path, *(path.rglob("*") if path.is_dir() else [])]:
            os.chown(item, account.pw_uid, account.pw_gid, follow_symlinks=False)


def as_job_account() -> dict[str, object]:
    """subprocess's arguments to run as the job account, when root and when that account can run
    this checkout's commands (its interpreter and its sources)."""
    if not IS_ROOT:
        return {}
    account = pwd.getpwnam(JOB_ACCOUNT)
    switch: dict[str, object] = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    return switch if job_account_can_run(account.pw_uid, account.pw_gid) else {}


@functools.cache
def job_account_can_run(uid: int, gid: int) -> bool:
    try:
        probe = subprocess.run(
            [str(BIN / "python"), "-c", "import updraft.cli, userpool.cli, pilot"],
            capture_output=True, cwd="/", user=uid, group=gid, extra_groups=[],
        )  # fmt: skip
    except PermissionError:
        return False
    return probe.returncode == 0


def _directory(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[RunningPool]:
    running = start_pool(tmp_path / "pool")
    client = running.client()
    for _ in range(FIRST_CLUSTER - 1):
        client.reserve_cluster()
    yield running
    running.stop()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("document", with_runnable_blocks(), ids=lambda path: path.name)
def test_the_documents_runnable_commands_work(document: Path, pool: RunningPool, tmp_path: Path) -> None:
    pilots = PilotLauncher(pool, _directory(tmp_path / "pilots"))
    pilots.start(site="Nebraska", cpus=2, idle_timeout_s=900, tail_timeout_s=900, lifetime_s=1800)
    reader = Reader(document, tmp_path, pool)
    try:
        reader.follow()
    finally:
        reader.keep_transcript()
        pilots.stop_all()
