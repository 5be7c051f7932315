"""The attacks that once worked, one test each: a token holder of every scope against the pool.

1. output delivery writing where the submitter could not (the signing key, /etc/cron.d);
2. a frontend minting the name of a pilot or a user;
3. bodies read before the caller is known, and without bound;
4. one user's expressions stalling every request;
6. a revocation forgotten before the token it revokes;
7. output tarballs bounded only in file bytes;
8. a history query naming thousands of jobs.

(5, two pools on one home, is in test_pool_home.py.)  Every refusal also leaves a line in
the pool's security log.  The parts about writing as another account need root (they are
the point of the pool running as root) and skip otherwise.
"""

from __future__ import annotations

import io
import os
import socket
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bench.heavy import doubling, run_heavy
from tests.reliability.test_security import logged
from tests.support.accounts import IS_ROOT, JOB_ACCOUNT
from tests.support.pilots import ProtocolPilot, output_tar, slot_ad
from tests.support.pools import RunningPool, start_pool
from updraft.core.client import Client, ClientError
from updraft.core.payloads import (
    ActRequest,
    ClaimReport,
    EditRequest,
    Match,
    PollRequest,
    QueryRequest,
    RevokeRequest,
    SubmitRequest,
    TokenRequest,
)
from updraft.core.protocol import Scope, quote

needs_root = pytest.mark.skipif(not IS_ROOT, reason="writing as another account is what a root pool does")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    """A pool of this module's own: small limits, a short match budget for one test's jobs."""
    home = tmp_path_factory.mktemp("target") / "pool"
    home.mkdir()
    (home / "pool.yaml").write_text(
        "max_request_body_mb: 4\nmax_output_sandbox_mb: 1\nmax_output_files: 1000\n"
        "header_timeout_s: 1\nbody_idle_timeout_s: 1\nmax_connections_per_client: 400\n"
        "max_ads_per_author: 20\n"
    )
    running = start_pool(home)
    yield running
    running.stop()


def refused(call, status: int) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.status == status, caught.value.message
    return caught.value


def claimed(pool: RunningPool, tag: str, pilot_name: str = "") -> tuple[ProtocolPilot, Match]:
    """The job tagged ``tag``, taken by a pilot of its own (named ``pilot_name``)."""
    name = pilot_name or f"pilot-{tag}"
    pilot = ProtocolPilot(
        pool.client(name, Scope.PILOT), slot_ad(f"slot@{name}", START=f'TARGET.Tag =?= "{tag}"')
    )
    match = pilot.take()
    assert match is not None, f"no job tagged {tag}"
    return pilot, match


def run_one(pool: RunningPool, tag: str, files: dict[str, str] | None = None, stdout: str = "out\n") -> str:
    """The job tagged ``tag`` taken and finished by a pilot of its own; returns its id."""
    pilot, match = claimed(pool, tag)
    pilot.finish(match, exit_code=0, stdout=stdout, files=files)
    return match.job_id


def delivery_of(pool: RunningPool, job_id: str, timeout: float = 15) -> dict:
    cluster, proc = (int(x) for x in job_id.split("."))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in pool.client().events(0, 10000):
            if (event.cluster_id, event.proc_id) == (cluster, proc) and event.type == "output_delivered":
                return dict(event.details)
        time.sleep(0.1)
    raise AssertionError(f"no output_delivered event for {job_id}")


# -- 1. output delivery ------------------------------------------------------------------------
def test_no_initialdir_under_the_pools_home(target: RunningPool, workdir: Path) -> None:
    key = target.home / "keys" / "signing.key"
    before = key.read_bytes()
    (workdir / "steal.sub").write_text(
        f"executable = job.sh\ninitialdir = {target.home / 'keys'}\noutput = signing.key\nqueue\n"
    )
    result = target.run("condor_submit", "steal.sub", user="mallory", cwd=workdir)
    assert result.returncode == 1 and "inside the pool's home" in result.stderr, result.stderr
    # the API refuses it too, however the ad was made
    client = target.client("mallory")
    cluster = client.reserve_cluster()
    ad = {"Cmd": '"/bin/true"', "Iwd": quote(str(target.home / "keys")), "Out": '"signing.key"'}
    assert (
        "inside the pool's home"
        in refused(lambda: client.submit(SubmitRequest(cluster, ad, [{}])), 403).message
    )
    assert "inside the pool's home" in logged(target, "inside the pool's home")
    # and so does an edit of a queued job's Iwd
    job = target.submit(
        'executable = job.sh\noutput = o.txt\n+Tag = "home-edit"\nqueue\n', "mallory", workdir
    )
    edit = EditRequest([f"{job}.0"], {"Iwd": quote(str(target.home / "keys"))})
    assert "inside the pool's home" in refused(lambda: client.edit(edit), 403).message
    assert key.read_bytes() == before


@needs_root
def test_output_is_written_as_the_owner_and_never_as_root(target: RunningPool, workdir: Path) -> None:
    cluster = target.submit(
        'executable = job.sh\noutput = job.out\n+Tag = "as-owner"\nqueue\n', "alice", workdir
    )
    job_id = run_one(target, "as-owner", stdout="mine\n")
    details = delivery_of(target, job_id)
    assert details["delivered"] == 1 and details["as"] == JOB_ACCOUNT, details
    written = workdir / "job.out"
    assert written.read_text() == "mine\n"
    assert written.stat().st_uid == __import__("pwd").getpwnam(JOB_ACCOUNT).pw_uid
    assert cluster


@needs_root
def test_a_directory_the_owner_cannot_write_gets_nothing(
    target: RunningPool, workdir: Path, tmp_path: Path
) -> None:
    cron = tmp_path / "cron.d"  # root's, 0755: a stand-in for /etc/cron.d
    cron.mkdir()
    (workdir / "cron.sub").write_text(f"executable = job.sh\ninitialdir = {cron}\noutput = evil\nqueue\n")
    result = target.run("condor_submit", "cron.sub", user="mallory", cwd=workdir)
    assert result.returncode == 1 and f"not writable by {JOB_ACCOUNT}" in result.stderr, result.stderr
    job = target.submit('executable = job.sh\noutput = evil\n+Tag = "cron"\nqueue\n', "mallory", workdir)
    edit = EditRequest([f"{job}.0"], {"Iwd": quote(str(cron))})
    assert (
        f"not writable by {JOB_ACCOUNT}" in refused(lambda: target.client("mallory").edit(edit), 403).message
    )
    assert (
        "the account mallory maps to" in refused(lambda: target.client().edit(edit), 403).message
    )  # an admin's too
    # the submit directory becomes a link to root's directory after the submission: the delivery,
    # made with the owner's rights, cannot write there either
    moved = tmp_path / "moved-work"
    workdir.rename(moved)
    workdir.symlink_to(cron)
    try:
        details = delivery_of(target, run_one(target, "cron", stdout="* * * * * root sh\n"))
    finally:
        workdir.unlink()
        moved.rename(workdir)
    assert details["delivered"] == 0 and "Permission denied" in details["problems"][0], details
    assert list(cron.iterdir()) == []
    assert "not delivered" in logged(target, "not delivered")


@needs_root
def test_links_in_the_submit_directory_are_not_followed(
    target: RunningPool, workdir: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (workdir / "job.out").symlink_to(victim)
    os.link(victim, workdir / "job.err")  # a hard link to a file that is not the owner's
    target.submit(
        'executable = job.sh\noutput = job.out\nerror = job.err\n+Tag = "links"\nqueue\n', "alice", workdir
    )
    details = delivery_of(target, run_one(target, "links", stdout="overwritten\n"))
    assert details["delivered"] == 0, details
    assert victim.read_text() == "keep me\n"
    assert (workdir / "job.out").is_symlink()


def test_a_subject_with_no_account_gets_its_output_in_the_spool(tmp_path: Path, workdir: Path) -> None:
    home = tmp_path / "pool"
    pool = start_pool(home, identity_map=f"TOKEN alice {JOB_ACCOUNT}\n")
    try:
        pool.submit('executable = job.sh\noutput = job.out\n+Tag = "unmapped"\nqueue\n', "bob", workdir)
        job_id = run_one(pool, "unmapped", stdout="bob's\n")
        details = delivery_of(pool, job_id)
        assert details["delivered"] == 0
        assert "bob has no local account in the identity map" in details["problems"][0]
        assert "condor_transfer_data" in details["problems"][0]
        assert not (workdir / "job.out").exists()
        fetched = pool.run("condor_transfer_data", job_id, user="bob", cwd=workdir)
        assert fetched.returncode == 0, fetched.stderr
        assert (workdir / "job.out").read_text() == "bob's\n"
    finally:
        pool.stop()


def test_a_bad_identity_map_is_refused_with_its_line(tmp_path: Path) -> None:
    home = tmp_path / "pool"
    home.mkdir()
    (home / "identity.map").write_text("# ok\nTOKEN alice alice\nKERBEROS bob bob\n")
    with pytest.raises(RuntimeError, match="exited"):
        start_pool(home)
    assert "identity.map:3" in (home / "pool.stderr").read_text()


def test_an_unprivileged_pool_writes_only_into_its_own_directories(tmp_path: Path) -> None:
    """OwnRightsWriter with the pool account's uid pretended: a directory of someone else's is refused."""
    from userpool.asowner import OwnRightsWriter, Place
    from userpool.identities import Account

    writer = OwnRightsWriter()
    writer.uid = 4242  # as if the pool ran as uid 4242; tmp_path belongs to whoever runs the tests
    source = tmp_path / "source"
    source.write_text("x")
    fd = os.open(source, os.O_RDONLY)
    try:
        mine = Account("me", 4242, 4242, ())
        assert (
            "not the pool account's own directory"
            in writer.copy(mine, Place(str(tmp_path), frozenset()), [("f", 0o644)], [fd])[0]
        )
        other = Account("other", 4343, 4343, ())
        assert (
            "cannot write as other"
            in writer.copy(other, Place(str(tmp_path), frozenset()), [("f", 0o644)], [fd])[0]
        )
    finally:
        os.close(fd)
    assert not (tmp_path / "f").exists()


# -- 2. a frontend is neither a pilot nor a user --------------------------------------------------
def test_a_frontend_cannot_mint_a_pilots_or_a_users_name(target: RunningPool, workdir: Path) -> None:
    target.submit('executable = job.sh\n+Tag = "victim-claim"\nqueue\n', "alice", workdir)
    _honest, match = claimed(target, "victim-claim", pilot_name="pA")
    frontend = target.client("rogue-fe", Scope.FRONTEND)
    minted = frontend.mint_token(TokenRequest("pA", ["pilot"], 600))
    assert minted.subject == "rogue-fe/pA"
    impostor = Client(target.url, minted.token)
    assert "another pilot" in refused(lambda: impostor.claim_sandbox(match.claim_id), 403).message
    refused(lambda: impostor.report(match.claim_id, ClaimReport("exited", exit_code=0)), 403)
    refused(lambda: impostor.put_output(match.claim_id, output_tar([tarfile.TarInfo("forged.txt")])), 403)
    assert target.job(match.job_id, "JobStatus", user="alice") == "2"  # still honest's

    as_alice = Client(target.url, frontend.mint_token(TokenRequest("alice", ["pilot"], 600)).token)
    frontend_alice = target.client("alice", Scope.FRONTEND)  # a frontend token that happens to say alice
    for caller in (as_alice, frontend_alice):
        assert (
            "scope user" in refused(lambda c=caller: c.act(ActRequest("Remove", [match.job_id])), 403).message
        )
        refused(lambda c=caller: c.act(ActRequest("Hold", owners=["alice"])), 403)
        refused(lambda c=caller: c.job_output(match.job_id), 403)
    assert target.job(match.job_id, "JobStatus", user="alice") == "2"
    assert "needs a token with scope user" in logged(target, "needs a token with scope user")


# -- 3. nothing read before the caller is known, nothing unbounded ----------------------------
def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def raw_request(pool: RunningPool, head: str, body: bytes = b"", timeout: float = 10) -> str:
    """Send ``head`` (and ``body``) as they are; the answer, headers and body, once it is whole."""
    host, port = pool.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        connection.sendall(head.encode() + body)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer.decode(errors="replace")


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_an_unauthenticated_body_is_never_read(target: RunningPool) -> None:
    pid = target.process.process.pid
    before = rss_kb(pid)
    answer = raw_request(
        target, "POST /v1/jobs/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {200 << 20}\r\n\r\n",
    )  # fmt: skip
    assert answer.startswith("HTTP/1.1 401"), answer  # answered before a byte of the body came
    big = b"[" + b"1," * (20 << 20) + b"1]"  # 40 MiB of JSON, sent whole, with no token
    response = requests.post(f"{target.url}/v1/jobs/query", data=big, timeout=60)
    assert response.status_code == 401
    assert rss_kb(pid) - before < 20_000, "the pool grew while refusing an unauthenticated body"
    assert "unauthenticated" in logged(target, "no token")


def test_bodies_past_the_limit_are_refused(target: RunningPool) -> None:
    token = target.token("alice")
    answer = raw_request(
        target, f"POST /v1/jobs/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {64 << 20}\r\n\r\n",
    )  # fmt: skip
    assert answer.startswith("HTTP/1.1 413") and "max_request_body_mb" in answer, answer

    def chunks() -> Iterator[bytes]:  # no Content-Length: a streamed body, cut off at the limit
        yield b'{"constraint": "' + b"x" * (1 << 20)
        for _ in range(10):
            yield b"x" * (1 << 20)

    response = requests.post(
        f"{target.url}/v1/jobs/query", data=chunks(), headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    assert response.status_code == 413 and "max_request_body_mb" in response.text
    assert target.client().ping().service == "updraft-pool"
    assert "max_request_body_mb" in logged(target, "max_request_body_mb")


def test_texts_only_python_takes_for_literals_are_refused(target: RunningPool, workdir: Path) -> None:
    """A string with a NUL, or digits of another script, parsed by nobody on the way in, once
    made every `condor_q -af` that listed the job fail for whoever ran it."""
    mallory = target.client("mallory")
    for text in ('"a\0b"', "\u00b2", "\u0661\u0662"):
        cluster = mallory.reserve_cluster()
        ad = {"Cmd": quote(str(workdir / "job.sh")), "Iwd": quote(str(workdir)), "Foo": text}
        assert (
            "Foo"
            in refused(lambda a=ad, c=cluster: mallory.submit(SubmitRequest(c, a, [{}], [], {})), 400).message
        )
        assert (
            "Foo"
            in refused(
                lambda c=cluster, t=text: mallory.submit(
                    SubmitRequest(c, {"Cmd": quote("/bin/true")}, [{"Foo": t}], [], {})
                ),
                400,
            ).message
        )
    cluster = mallory.reserve_cluster()
    named = {"Cmd": quote("/bin/true"), "Fo\u00e9": "1"}  # a name no ClassAd parser reads back
    refusal = refused(lambda: mallory.submit(SubmitRequest(cluster, named, [{}], [], {})), 400)
    assert "not an attribute name" in refusal.message
    pilot = ProtocolPilot(target.client("nul-pilot", Scope.PILOT), {**slot_ad("slot@nul"), "Foo": '"a\0b"'})
    refused(pilot.poll, 400)
    assert target.run("condor_q", "-allusers", "-af", "ClusterId").returncode == 0


# -- 4. one user's jobs cannot stall the pool --------------------------------------------------------
def test_doubling_references_are_refused_at_submission(target: RunningPool, workdir: Path) -> None:
    lines = "".join(f"+a{k} = a{k - 1} + a{k - 1}\n" for k in range(1, 31))
    (workdir / "bomb.sub").write_text(f"executable = job.sh\n+a0 = 1\n{lines}requirements = a30 > 0\nqueue\n")
    result = target.run("condor_submit", "bomb.sub", user="mallory", cwd=workdir)
    assert result.returncode == 1 and "max_expression_terms" in result.stderr, result.stderr
    pilot = ProtocolPilot(
        target.client("bomb-pilot", Scope.PILOT), {**slot_ad("slot@bomb"), **doubling(30, 1)}
    )
    assert "max_expression_terms" in refused(pilot.poll, 400).message  # a pilot's slot ad too
    assert "bomb-pilot" in logged(target, "max_expression_terms")


def test_a_thousand_heavy_jobs_do_not_stall_requests(tmp_path: Path) -> None:
    """Bounded: nothing waits for seconds while 1,000 costly autoclusters are matched four times
    over, and an ordinary job still matches (the p99 target is `python -m bench --only load`)."""
    pool = start_pool(tmp_path / "pool")
    try:
        report = run_heavy(pool.url, (pool.home / "keys" / "signing.key").read_bytes(), jobs=1000, shapes=4)
    finally:
        pool.stop()
    figures = report.summary()
    print(figures)
    assert report.heavy_matched == 4 and report.light_matched, figures
    assert figures["ping_max_s"] < 1.0 and figures["condor_q_max_s"] < 1.0, figures  # seconds, before


def test_an_autocluster_over_the_time_budget_is_left_out_and_said_so(tmp_path: Path) -> None:
    home = tmp_path / "pool"
    home.mkdir()
    (home / "pool.yaml").write_text("match_eval_budget_ms: 0.05\n")
    pool = start_pool(home)
    try:
        user = pool.client("slow")
        cluster = user.reserve_cluster()
        ad = {"Cmd": '"/bin/true"', **doubling(12, 7), "Requirements": "a12 >= 0"}
        user.submit(SubmitRequest(cluster, ad, [{}]))
        pilot = ProtocolPilot(pool.client("budget", Scope.PILOT), slot_ad("slot@budget"))
        assert pilot.take(wait_s=1) is None
        events = [e for e in pool.client().events(0, 10000) if e.type == "autocluster_skipped"]
        assert events and events[0].cluster_id == cluster and events[0].details["submitter"] == "slow"
        analysis = pool.run("condor_q", "-better-analyze", f"{cluster}.0", user="slow")
        assert "Matchmaking leaves this job out until" in analysis.stdout, analysis.stdout
        assert "took" in (home / "pool.log").read_text()
    finally:
        pool.stop()


# -- 6. revocations outlive what they revoke -----------------------------------------------------------
def test_a_revocation_is_kept_until_the_token_cannot_work(target: RunningPool) -> None:
    issued, expires = target.signer().issue("olga", frozenset({Scope.USER}), 300 * 86400)
    identity = target.signer().verify(issued)
    target.client().revoke_tokens(RevokeRequest(token_id=identity.token_id))
    rows = (
        __import__("sqlite3")
        .connect(target.home / "state" / "queue.db")
        .execute("SELECT expires FROM revoked_tokens WHERE jti = ?", (f"jti:{identity.token_id}",))
        .fetchall()
    )
    assert rows and rows[0][0] >= expires
    assert "revoked" in refused(Client(target.url, issued).reserve_cluster, 401).message
    ten_years = target.signer()
    ten_years.max_lifetime_s = 10 * 365 * 86400
    forever = ten_years.issue("olga", frozenset({Scope.USER}), 10 * 365 * 86400)[0]
    assert "max_token_lifetime_s" in refused(Client(target.url, forever).reserve_cluster, 401).message
    cli = target.run("updraft", "token", "create", "--home", str(target.home), "--user", "x", "--scope", "user",
                     "--lifetime", str(10 * 365 * 86400))  # fmt: skip
    assert cli.returncode == 1 and "max_token_lifetime_s" in cli.stderr


# -- 7. output tarballs, bounded in every dimension ---------------------------------------------------
def test_a_small_tar_cannot_make_thirty_thousand_directories(target: RunningPool, workdir: Path) -> None:
    target.submit('executable = job.sh\n+Tag = "dirs"\nqueue\n', "alice", workdir)
    pilot, match = claimed(target, "dirs")
    members = []
    for index in range(30_000):
        member = tarfile.TarInfo(f"d{index}")
        member.type = tarfile.DIRTYPE
        members.append(member)
    archive = output_tar(members)
    gz = archive.with_suffix(".tar.gz")
    with tarfile.open(gz, "w:gz") as packed, tarfile.open(archive) as plain:
        for member in plain:
            packed.addfile(member)
    assert gz.stat().st_size < 200 << 10
    assert "max_output_files" in refused(lambda: pilot.client.put_output(match.claim_id, gz), 413).message
    spool = target.home / "spool" / match.job_id.split(".")[0]
    assert not spool.exists() or sum(1 for _ in spool.rglob("*")) < 10

    headers = io.BytesIO()  # long names: header bytes count toward the byte limit
    with tarfile.open(fileobj=headers, mode="w", format=tarfile.PAX_FORMAT) as packed:
        for index in range(600):
            member = tarfile.TarInfo(f"{index}-" + "n" * 3000)
            packed.addfile(member, io.BytesIO(b""))
    path = workdir / "names.tar"
    path.write_bytes(headers.getvalue())
    assert (
        "max_output_sandbox_mb" in refused(lambda: pilot.client.put_output(match.claim_id, path), 413).message
    )


# -- 8. no query shape is a 500 -------------------------------------------------------------------------------
def test_history_of_thousands_of_ids(target: RunningPool, workdir: Path) -> None:
    target.submit('executable = job.sh\n+Tag = "hist"\nqueue\n', "alice", workdir)
    job_id = run_one(target, "hist")
    ids = [f"{900000 + n}.0" for n in range(3000)] + [job_id]
    result = target.run("condor_history", *ids, "-af", "ClusterId", "ProcId", user="alice")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == job_id.split(".")
    found = target.client("alice").query(QueryRequest("", ["ClusterId"], ids), history=True)
    assert len(found.ads) == 1


def test_a_frontend_gets_no_more_room_by_minting_pilot_names(target: RunningPool) -> None:
    """Each pilot token a frontend mints has a name of its choosing; all share the frontend's bound."""
    frontend = target.client("greedy-fe", Scope.FRONTEND)
    pilots = [
        Client(target.url, frontend.mint_token(TokenRequest(f"p{n}", ["pilot"], 600)).token)
        for n in range(21)
    ]
    for number, pilot in enumerate(pilots[:20]):
        pilot.advertise("Slot", [slot_ad(f"slot@greedy-{number}", START="false")])
    refusal = refused(lambda: pilots[20].advertise("Slot", [slot_ad("slot@greedy-20", START="false")]), 413)
    assert "frontend:greedy-fe" in refusal.message and "max_ads_per_author" in refusal.message
    other = target.client("other-fe", Scope.FRONTEND)  # another frontend's pilots are not held back
    Client(target.url, other.mint_token(TokenRequest("p0", ["pilot"], 600)).token).advertise(
        "Slot", [slot_ad("slot@other-0", START="false")]
    )
    pilots[0].invalidate("Slot", ["slot@greedy-0"])
    pilots[20].advertise("Slot", [slot_ad("slot@greedy-20", START="false")])  # room again


def test_a_frontends_pilot_cannot_count_as_another_frontends(target: RunningPool) -> None:
    """A pilot naming another frontend in GLIDEIN_Client would be counted by it as its own idle
    slot, and that frontend would ask for fewer glideins than its jobs need."""
    frontend = target.client("posing-fe", Scope.FRONTEND)
    pilot = Client(target.url, frontend.mint_token(TokenRequest("main", ["pilot"], 600)).token)
    posing = slot_ad("slot@posing", START="false", GLIDEIN_Client=quote("victim-fe"))
    assert (
        "may speak for that frontend only" in refused(lambda: pilot.advertise("Slot", [posing]), 403).message
    )
    poll = PollRequest(posing, [], 0.0, 0)
    assert "may speak for that frontend only" in refused(lambda: pilot.poll(poll), 403).message
    pilot.advertise("Slot", [dict(posing, GLIDEIN_Client=quote("posing-fe"))])  # its own name is fine


def test_a_components_event_cannot_fill_the_disk(target: RunningPool) -> None:
    """Component events are kept for good: their details are bounded (max_event_details_kb)."""
    pilot = target.client("event-pilot", Scope.PILOT)
    kept = pilot.record_event("pilot_validation_failed", {"check": "cvmfs", "output": "x" * 4000})
    assert kept.type == "pilot_validation_failed"
    refusal = refused(lambda: pilot.record_event("pilot_note", {"output": "x" * (1 << 20)}), 413)
    assert "max_event_details_kb" in refusal.message
    refused(
        lambda: pilot.record_event("pilot_\u0430", {}), 400
    )  # a Cyrillic letter is no word character here
