"""Job notifications (issue 17): mail through a real SMTP server on loopback (aiosmtpd, STARTTLS
with a CA of the test's own), the pool's webhook, and ``updraft events --follow --job``.

A relay or an endpoint that is down delays no job and loses nothing: the messages and events
arrive once it is back.
"""

from __future__ import annotations

import email
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.accounts import give_to_job_account
from tests.support.factories import wait_for
from tests.support.pilots import ProtocolPilot, slot_ad
from tests.support.pools import BIN, RunningPool, start_pool
from updraft.core.protocol import Scope
from userpool.tlsutil import ensure_certificates

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")


def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    return give_to_job_account(work)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Inbox:
    """aiosmtpd's handler: keeps each message the relay takes."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        content = envelope.content  # type: ignore[attr-defined]
        raw = content if isinstance(content, bytes) else content.encode()
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), email.message_from_bytes(raw)))  # type: ignore[attr-defined]
        return "250 OK"


def smtp_server(directory: Path, port: int, inbox: Inbox) -> object:
    _ca, cert, key = ensure_certificates(directory, ["127.0.0.1", "localhost"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    controller = aiosmtpd_controller.Controller(
        inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    return controller


@pytest.fixture()
def mail_pool(tmp_path: Path) -> Iterator[tuple[RunningPool, Path, int]]:
    port = free_port()
    ca, _cert, _key = ensure_certificates(tmp_path / "smtp-tls", ["127.0.0.1", "localhost"])
    home = tmp_path / "pool"
    home.mkdir()
    (home / "pool.yaml").write_text(
        "mail:\n  smtp_host: 127.0.0.1\n"
        f"  smtp_port: {port}\n  starttls: true\n  ca_file: {ca}\n  email_domain: example.org\n"
        "  from_address: updraft@example.org\n  admin: admin@example.org\n"
    )
    pool = start_pool(home)
    yield pool, tmp_path, port
    pool.stop()


def run_job(pool: RunningPool, work: Path, text: str, exit_code: int = 0, name: str = "job.sub") -> str:
    cluster = pool.submit(text, "alice", work, name)
    pilot = ProtocolPilot(pool.client("pilot", Scope.PILOT), slot_ad("slot1@w1"))
    match = wait_for(lambda: pilot.take(0.5), 30, what=f"job {cluster}")
    pilot.finish(match, exit_code)
    return cluster


def test_mail_is_sent_as_htcondor_sends_it_and_waits_out_a_relay_that_is_down(
    mail_pool, tmp_path: Path
) -> None:
    pool, _tmp, port = mail_pool
    work = workdir(tmp_path)
    base = "executable = /bin/true\narguments = one two\n"
    # the relay is down: the jobs end anyway, at once
    complete = run_job(pool, work, base + "notification = Complete\nnotify_user = bob@example.net\nqueue\n")
    quiet = run_job(pool, work, base + "notification = Error\nqueue\n", 0, "quiet.sub")
    failed = run_job(pool, work, base + "notification = Error\nqueue\n", 3, "failed.sub")
    never = run_job(pool, work, base + "queue\n", 3, "never.sub")
    for cluster in (complete, quiet, failed, never):
        wait_for(lambda cluster=cluster: pool.job(f"{cluster}.0", "ExitCode", history=True), 10)
    held = pool.submit(base + "notification = Always\nqueue\n", "alice", work, "held.sub")
    assert pool.run("condor_hold", held, "-reason", "not now", user="alice").returncode == 0
    inbox = Inbox()
    relay = smtp_server(tmp_path / "smtp-tls", port, inbox)  # the relay comes back: nothing was lost
    try:
        wait_for(lambda: len(inbox.messages) >= 3, 30, what="three messages")
        time.sleep(1.0)
    finally:
        relay.stop()  # type: ignore[attr-defined]
    by_subject = {message["Subject"]: (sender, to, message) for sender, to, message in inbox.messages}
    assert set(by_subject) == {
        f"[HTCondor] Condor Job {complete}.0", f"[HTCondor] Condor Job {failed}.0",
        f"[HTCondor] Condor Job {held}.0 put on hold",
    }  # fmt: skip
    sender, to, message = by_subject[f"[HTCondor] Condor Job {complete}.0"]
    body = message.get_payload().replace("\r\n", "\n")
    assert sender == "updraft@example.org" and to == ["bob@example.net"]
    assert f"Condor job {complete}.0\n\t/bin/true one two\nexited normally with status 0\n" in body
    assert "This is an automated email from the HTCondor system" in body and "Submitted at:" in body
    assert (
        "Completed at:" in body
        and "Email address of the local HTCondor administrator: admin@example.org" in body
    )
    _sender, to, message = by_subject[f"[HTCondor] Condor Job {failed}.0"]
    assert to == ["alice@example.org"] and "exited normally with status 3" in message.get_payload()
    hold_body = (
        by_subject[f"[HTCondor] Condor Job {held}.0 put on hold"][2].get_payload().replace("\r\n", "\n")
    )
    assert "is being put on hold." in hold_body and "not now" in hold_body


class Endpoint(BaseHTTPRequestHandler):
    received: list[dict[str, object]] = []
    auth: list[str] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        type(self).auth.append(self.headers.get("Authorization", ""))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_webhook_gets_every_event_in_order_even_after_being_down(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "pool"
    home.mkdir()
    (home / "hook.token").write_text("s3cret\n")
    (home / "pool.yaml").write_text(
        f"webhook:\n  url: http://127.0.0.1:{port}/events\n  token_file: hook.token\n"
    )
    pool = start_pool(home)
    work = workdir(tmp_path)
    Endpoint.received, Endpoint.auth = [], []
    try:
        started = time.monotonic()
        cluster = int(run_job(pool, work, "executable = /bin/true\nqueue\n"))
        wait_for(lambda: pool.job(f"{cluster}.0", "ExitCode", history=True), 10)
        assert time.monotonic() - started < 10  # a dead endpoint delays no job
        server = ThreadingHTTPServer(("127.0.0.1", port), Endpoint)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            wait_for(
                lambda: any(
                    e["type"] == "complete" and e["cluster_id"] == cluster for e in Endpoint.received
                ),
                30,
            )
        finally:
            server.shutdown()
    finally:
        pool.stop()
    mine = [e for e in Endpoint.received if e["cluster_id"] == cluster]
    assert [e["type"] for e in mine][:2] == ["submit", "match"] and mine[-1]["type"] in (
        "complete",
        "output_delivered",
    )
    ids = [int(str(e["id"])) for e in Endpoint.received]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert set(Endpoint.auth) == {"Bearer s3cret"}


def test_updraft_events_follows_one_job_until_it_ends(tmp_path: Path) -> None:
    pool = start_pool(tmp_path / "pool")
    work = workdir(tmp_path)
    try:
        cluster = pool.submit("executable = /bin/true\nqueue\n", "alice", work)
        follower = subprocess.Popen(
            [str(BIN / "updraft"), "events", "--follow", "--job", f"{cluster}.0"],
            env=pool.env("alice"), stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.0)
        pilot = ProtocolPilot(pool.client("pilot", Scope.PILOT), slot_ad("slot1@w1"))
        match = wait_for(lambda: pilot.take(0.5), 30)
        pilot.finish(match, 0)
        out, _ = follower.communicate(timeout=30)
    finally:
        pool.stop()
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["type"] for e in events]
    assert (
        follower.returncode == 0 and kinds[0] == "submit" and kinds[-1] == "complete" and "execute" in kinds
    )
    assert {e["cluster_id"] for e in events} == {int(cluster)}
