"""What the pool shows without a token, and connections that try to hold it.

The monitor, its JSON and stream, ``/metrics`` and the API document are open by default,
as HTCondor's READ level is; ``monitor.public: false`` closes them to anyone without a
valid token, and owners' free-text reasons are never shown there unless asked for.
Connections that never finish a request, or one client holding too many, are closed.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.reliability.test_security import logged
from tests.support.pools import RunningPool, start_pool

OPEN_WHEN_PUBLIC = ["/monitor", "/v1/monitor", "/metrics", "/openapi.json", "/docs"]


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    home = tmp_path_factory.mktemp("closed") / "pool"
    home.mkdir()
    (home / "pool.yaml").write_text(
        "monitor:\n  public: false\nheader_timeout_s: 1\nbody_idle_timeout_s: 1\nmax_connections_per_client: 30\n"
    )
    running = start_pool(home)
    yield running
    running.stop()


def test_the_monitor_can_require_a_token(closed: RunningPool) -> None:
    for path in OPEN_WHEN_PUBLIC:
        assert requests.get(closed.url + path, timeout=10).status_code == 401, path
        answer = requests.get(
            closed.url + path, headers={"Authorization": f"Bearer {closed.token('anyone')}"}, timeout=10
        )
        assert answer.status_code == 200, path
    assert requests.get(closed.url + "/v1/ping", timeout=10).status_code == 200  # health checks stay open
    assert "/metrics" in logged(closed, "GET /metrics")


def test_the_monitor_is_open_by_default_and_keeps_owners_words_out(pool: RunningPool, workdir: Path) -> None:
    for path in OPEN_WHEN_PUBLIC:
        assert requests.get(pool.url + path, timeout=10).status_code == 200, path
    cluster = pool.submit("executable = job.sh\nqueue\n", "wanda", workdir)
    assert (
        pool.run("condor_hold", cluster, "-reason", "my secret project codename", user="wanda").returncode
        == 0
    )
    snapshot = requests.get(pool.url + "/v1/monitor", timeout=10).json()
    holds = [e for e in snapshot["events"] if e["type"] == "hold" and e["job"].startswith(f"{cluster}.")]
    assert holds and "reason" not in holds[0]["details"]
    assert "codename" not in str(snapshot)


def open_connections(pool: RunningPool, count: int) -> list[socket.socket]:
    host, port = pool.url.removeprefix("http://").split(":")
    return [socket.create_connection((host, int(port)), timeout=5) for _ in range(count)]


def closed_by_server(connection: socket.socket, within: float) -> bool:
    connection.settimeout(within)
    try:
        return connection.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_connections_that_send_nothing_are_closed(closed: RunningPool) -> None:
    idle = open_connections(closed, 10)
    slow = open_connections(closed, 1)[0]
    slow.sendall(b"GET /v1/ping HTTP/1.1\r\nHost: x\r\n")  # headers that never end
    try:
        assert all(closed_by_server(c, 5) for c in [*idle, slow])
    finally:
        for connection in [*idle, slow]:
            connection.close()
    assert "no complete request" in logged(closed, "no complete request") or logged(closed, "not complete")


def test_a_client_cannot_hold_more_than_its_share(closed: RunningPool) -> None:
    held = open_connections(closed, 30)
    try:
        extra = open_connections(closed, 1)[0]
        assert closed_by_server(extra, 2)
        extra.close()
        assert "max_connections_per_client" in logged(closed, "max_connections_per_client")
    finally:
        for connection in held:
            connection.close()
    time.sleep(0.3)
    assert requests.get(closed.url + "/v1/ping", timeout=10).status_code == 200  # room again once they go


def test_a_stalled_body_is_cut_off(closed: RunningPool) -> None:
    connection = open_connections(closed, 1)[0]
    token = closed.token("sloth")
    connection.sendall(
        f"POST /v1/jobs/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode()
    )
    try:
        deadline = time.monotonic() + 5
        gone = False
        while time.monotonic() < deadline and not gone:
            try:
                gone = connection.recv(4096) == b""
            except (ConnectionResetError, TimeoutError):
                gone = True
        assert gone, "a request body that stopped arriving kept its connection"
    finally:
        connection.close()
