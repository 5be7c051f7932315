"""The issue's list of attacks, in one place: each refused with a clear error, and logged.

Every refusal must leave a line in the pool's log naming the request, the caller and the
reason (``updraft.pool.security``), so that an operator can see an attack, not only the
attacker a 4xx.  Finer cases of the same rules live beside the code they test
(tests/integration/userpool/test_auth.py, test_sandbox.py).
"""

from __future__ import annotations

import hashlib
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.pilots import ProtocolPilot, output_tar, slot_ad
from tests.support.pools import RunningPool, start_pool
from updraft.core.client import Client, ClientError
from updraft.core.payloads import ClaimReport, QueryRequest, SandboxFile, SubmitRequest
from updraft.core.protocol import Scope
from userpool.tokens import TokenSigner


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    """A pool with 1 MB upload limits, of this module's own (its log is read)."""
    home = tmp_path_factory.mktemp("guarded") / "pool"
    home.mkdir()
    (home / "pool.yaml").write_text("max_input_file_mb: 1\nmax_output_sandbox_mb: 1\n")
    running = start_pool(home)
    yield running
    running.stop()


def refused_and_logged(pool: RunningPool, call: Callable[[], Any], status: int, words: str) -> None:
    """``call`` fails with ``status`` and ``words``, and the pool's log says so."""
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.status == status, caught.value.message
    assert words in caught.value.message, caught.value.message
    logged(pool, words)


def logged(pool: RunningPool, words: str) -> str:
    deadline = time.monotonic() + 5
    while True:
        lines = [
            line
            for line in (pool.home / "pool.log").read_text().splitlines()
            if "updraft.pool.security" in line and words in line
        ]
        if lines:
            return lines[-1]
        assert time.monotonic() < deadline, f"no security log line with {words!r}"
        time.sleep(0.1)


def tagged_job(pool: RunningPool, workdir: Path, user: str, tag: str, extra: str = "") -> str:
    return pool.submit(f'executable = job.sh\n+SecurityTag = "{tag}"\n{extra}queue\n', user, workdir)


def pilot_for(pool: RunningPool, name: str, tag: str) -> ProtocolPilot:
    return ProtocolPilot(
        pool.client(name, Scope.PILOT), slot_ad(f"slot@{name}", START=f'TARGET.SecurityTag =?= "{tag}"')
    )


def running_claim(pool: RunningPool, workdir: Path, tag: str) -> tuple[ProtocolPilot, Any]:
    """A job of alice's, matched to a pilot of its own: the pilot and its match."""
    tagged_job(pool, workdir, "alice", tag)
    pilot = pilot_for(pool, f"{tag}-pilot", tag)
    match = pilot.take()
    assert match is not None
    return pilot, match


def test_a_user_cannot_remove_another_users_job(guarded: RunningPool, workdir: Path) -> None:
    cluster = tagged_job(guarded, workdir, "alice", "rm")
    result = guarded.run("condor_rm", f"{cluster}.0", user="mallory")
    assert result.returncode == 1 and "not owner (job belongs to alice)" in result.stderr
    line = logged(guarded, f"job {cluster}.0: not owner")
    assert "mallory (user)" in line and "/v1/jobs/act" in line
    assert guarded.job(f"{cluster}.0", "JobStatus", user="alice") == "1"


def test_a_pilot_cannot_take_or_report_a_job_it_was_not_matched_to(
    guarded: RunningPool, workdir: Path
) -> None:
    (workdir / "input.txt").write_text("alice's data\n")
    tagged_job(guarded, workdir, "alice", "claim", "transfer_input_files = input.txt\n")
    honest, thief = pilot_for(guarded, "honest", "claim"), pilot_for(guarded, "thief", "nothing")
    match = honest.take()
    assert match is not None
    refused_and_logged(guarded, lambda: thief.client.claim_sandbox(match.claim_id), 403, "another pilot")
    report = ClaimReport("exited", exit_code=0)
    refused_and_logged(guarded, lambda: thief.client.report(match.claim_id, report), 403, "another pilot")
    digest = next(f.digest for f in honest.client.claim_sandbox(match.claim_id) if f.path == "input.txt")
    refused_and_logged(
        guarded,
        lambda: thief.client.get_blob(digest, workdir / "stolen"),
        403,
        "readable by the pilot running the job",
    )
    assert guarded.job(match.job_id, "JobStatus", user="alice") == "2"  # still running, for honest


def test_a_frontend_cannot_write_a_factorys_ads(guarded: RunningPool) -> None:
    frontend = guarded.client("fe-sec", Scope.FRONTEND)
    refused_and_logged(
        guarded,
        lambda: frontend.advertise("glidefactory", [{"Name": '"entry@fac"'}]),
        403,
        "may not write glidefactory",
    )
    assert "fe-sec (frontend)" in logged(guarded, "may not write glidefactory")


def test_forged_and_expired_tokens(guarded: RunningPool) -> None:
    forged = TokenSigner(b"a key that is not the pool's, long enough").issue(
        "root", frozenset({Scope.ADMIN})
    )[0]
    refused_and_logged(guarded, Client(guarded.url, forged).reserve_cluster, 401, "signature")
    expired = guarded.signer().issue("olga", frozenset({Scope.USER}), 1, now=time.time() - 100)[0]
    refused_and_logged(guarded, Client(guarded.url, expired).reserve_cluster, 401, "expired")
    assert "from unauthenticated" in logged(guarded, "expired")


def test_sandbox_paths_cannot_leave_their_directory(
    guarded: RunningPool, workdir: Path, tmp_path: Path
) -> None:
    user = guarded.client("alice")
    # an input named to land outside the job's scratch directory on the worker node
    payload = workdir / "payload"
    payload.write_text("#!/bin/sh\n")
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    user.put_blob(digest, payload)
    cluster = user.reserve_cluster()
    escaping = SandboxFile("../../.bashrc", digest, payload.stat().st_size, 0o755)
    request = SubmitRequest(cluster, {"Cmd": '"/bin/true"'}, [{}], [escaping])
    refused_and_logged(guarded, lambda: user.submit(request), 400, "escapes its directory")
    assert user.query(QueryRequest(f"ClusterId == {cluster}", ["ProcId"])).ads == []  # nothing half-queued

    # an output archive with a member that climbs out of the spool
    pilot, match = running_claim(guarded, workdir, "out")
    refused_and_logged(
        guarded,
        lambda: pilot.client.put_output(
            match.claim_id, output_tar([tarfile.TarInfo("../../../escaped.txt")])
        ),
        400,
        "escapes",
    )

    # an output the job's ad sends outside its initial directory: the pool does not write it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cluster = tagged_job(
        guarded,
        workdir,
        "alice",
        "remap",
        f'transfer_output_remaps = "result.txt = {elsewhere}/result.txt"\n',
    )
    pilot = pilot_for(guarded, "remap-pilot", "remap")
    match = pilot.take()
    assert match is not None
    pilot.finish(match, exit_code=0, files={"result.txt": "42\n"})
    deadline = time.monotonic() + 10
    while not (problems := _delivery_problems(guarded, int(cluster))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert problems and "outside the job's initial directory" in problems[0]
    assert not (elsewhere / "result.txt").exists()


def test_oversized_uploads(guarded: RunningPool, workdir: Path, tmp_path: Path) -> None:
    user = guarded.client("alice")
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (2 << 20))
    refused_and_logged(
        guarded,
        lambda: user.put_blob(hashlib.sha256(big.read_bytes()).hexdigest(), big),
        413,
        "per-file limit",
    )
    pilot, match = running_claim(guarded, workdir, "big")
    refused_and_logged(
        guarded,
        lambda: pilot.client.put_output(
            match.claim_id, output_tar([tarfile.TarInfo("big.out")], b"y" * (2 << 20))
        ),
        413,
        "exceeds",
    )


def _delivery_problems(pool: RunningPool, cluster: int) -> list[str]:
    for event in pool.client().events(0, 10000):
        if event.cluster_id == cluster and event.type == "output_delivered":
            return list(event.details.get("problems", []))
    return []
