"""Input sandboxes (uploaded once, checksummed, only for the claimed job) and output delivery."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest

from tests.support.accounts import give_to_job_account
from tests.support.pilots import ProtocolPilot, output_tar, slot_ad
from tests.support.pools import RunningPool, start_pool
from updraft.core.client import ClientError
from updraft.core.protocol import Scope


def submit(pool: RunningPool, workdir: Path, user: str, text: str) -> str:
    (workdir / "s.sub").write_text(text)
    result = pool.run("condor_submit", "s.sub", user=user, cwd=workdir)
    assert result.returncode == 0, result.stderr
    return result.lines[-1].split()[-1].rstrip(".")


def tagged_pilot(pool: RunningPool, tag: str) -> ProtocolPilot:
    return ProtocolPilot(
        pool.client(f"pilot-{tag}", Scope.PILOT),
        slot_ad(f"slot@{tag}", START=f'TARGET.SandboxTag =?= "{tag}"'),
    )


def test_inputs_arrive_intact_and_only_for_the_claim(
    pool: RunningPool, workdir: Path, tmp_path: Path
) -> None:
    (workdir / "data").mkdir()
    (workdir / "data" / "a.txt").write_text("alpha\n")
    (workdir / "calib.db").write_bytes(b"\x00\x01" * 5000)
    (workdir / "stdin.txt").write_text("to stdin\n")
    cluster = submit(
        pool, workdir, "ida",
        'executable = job.sh\ninput = stdin.txt\ntransfer_input_files = calib.db, data\n+SandboxTag = "in"\nqueue\n',
    )  # fmt: skip
    pilot = tagged_pilot(pool, "in")
    match = pilot.take()
    assert match is not None and match.job_id == f"{cluster}.0"
    names = sorted(f.path for f in match.inputs)
    assert names == ["calib.db", "data/a.txt", "job.sh", "stdin.txt"]
    for item in match.inputs:
        target = tmp_path / item.path.replace("/", "_")
        pilot.client.get_blob(item.digest, target, match.claim_id)
        assert hashlib.sha256(target.read_bytes()).hexdigest() == item.digest
        assert target.stat().st_size == item.size
    job_sh = next(f for f in match.inputs if f.path == "job.sh")
    assert job_sh.mode == 0o755
    other = tagged_pilot(pool, "nosuch")
    with pytest.raises(ClientError) as refused:
        other.client.get_blob(job_sh.digest, tmp_path / "x", match.claim_id)
    assert refused.value.status == 403
    with pytest.raises(ClientError) as user_read:
        pool.client("ida").get_blob(job_sh.digest, tmp_path / "y")
    assert user_read.value.status == 403


def test_same_files_upload_once(pool: RunningPool, workdir: Path) -> None:
    (workdir / "big.bin").write_bytes(b"x" * 200_000)
    submit(pool, workdir, "ida", "executable = job.sh\ntransfer_input_files = big.bin\nqueue\n")
    digest = hashlib.sha256(b"x" * 200_000).hexdigest()
    assert pool.client("ida").missing_blobs([digest]) == []


def test_output_lands_in_iwd_and_transfer_data(pool: RunningPool, workdir: Path) -> None:
    (workdir / "results").mkdir()
    give_to_job_account(workdir / "results")  # the user's own directory, as the user made it
    cluster = submit(
        pool, workdir, "jon",
        'executable = job.sh\noutput = job.out\nerror = job.err\n+SandboxTag = "out"\n'
        'transfer_output_files = result.txt\ntransfer_output_remaps = "result.txt = results/r.txt"\nqueue\n',
    )  # fmt: skip
    pilot = tagged_pilot(pool, "out")
    match = pilot.take()
    pilot.finish(match, exit_code=0, stdout="hello\n", files={"result.txt": "42\n"})
    deadline = __import__("time").monotonic() + 10
    while not (workdir / "results" / "r.txt").exists() and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.1)
    assert (workdir / "job.out").read_text() == "hello\n"
    assert (workdir / "results" / "r.txt").read_text() == "42\n"
    for name in ("job.out", "job.err", "results/r.txt"):
        (workdir / name).unlink()
    fetched = pool.run("condor_transfer_data", cluster, user="jon", cwd=workdir)
    assert fetched.returncode == 0, fetched.stderr
    assert (workdir / "job.out").read_text() == "hello\n" and (
        workdir / "results" / "r.txt"
    ).read_text() == "42\n"
    elsewhere = pool.run("condor_transfer_data", "-o", str(workdir / "copy"), f"{cluster}.0", user="jon")
    assert elsewhere.returncode == 0
    assert (workdir / "copy" / f"{cluster}.0" / "_condor_stdout").read_text() == "hello\n"
    stolen = pool.run("condor_transfer_data", f"{cluster}.0", user="kim", cwd=workdir)
    assert stolen.returncode == 1 and "belongs to jon" in stolen.stderr


def test_output_paths_cannot_escape(pool: RunningPool, workdir: Path) -> None:
    submit(pool, workdir, "kim", 'executable = job.sh\n+SandboxTag = "esc"\nqueue\n')
    pilot = tagged_pilot(pool, "esc")
    match = pilot.take()
    escape = tarfile.TarInfo("../../../../tmp/escaped.txt")
    link = tarfile.TarInfo("link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    absolute = tarfile.TarInfo("/tmp/absolute.txt")
    for member in (escape, link, absolute):
        with pytest.raises(ClientError) as refused:
            pilot.client.put_output(match.claim_id, output_tar([member]))
        assert refused.value.status == 400, member.name
    assert not Path("/tmp/escaped.txt").exists()


def test_size_limits(tmp_path: Path, workdir: Path) -> None:
    home = tmp_path / "limited"
    home.mkdir()
    (home / "pool.yaml").write_text("max_input_file_mb: 1\nmax_output_sandbox_mb: 1\n")
    pool = start_pool(home)
    try:
        (workdir / "large.bin").write_bytes(b"y" * (2 << 20))
        (workdir / "l.sub").write_text("executable = job.sh\ntransfer_input_files = large.bin\nqueue\n")
        result = pool.run("condor_submit", "l.sub", user="leo", cwd=workdir)
        assert result.returncode == 1
        assert "limit" in result.stderr
        assert pool.run("condor_q", "-af", "ClusterId", user="leo").stdout == ""
    finally:
        pool.stop()
