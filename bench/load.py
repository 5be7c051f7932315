"""A load driver: thousands of lightweight pilots long-polling a real pool while users submit.

Each simulated pilot is one keep-alive HTTP connection speaking the pilot protocol (the
payloads of userpool.protocol): it advertises its slot by long-polling, and when matched it
reports the job started, holds it for ``job_s``, reports it exited, and polls again.  A
submitter reserves a cluster and submits one job ``rate`` times a second.  The driver is
asyncio with a minimal HTTP/1.1 client so that 2,000 pilots cost little CPU beside the pool.

Latency is measured per request the pool should answer at once (reserve, submit, reports);
a long poll waits for work on purpose, so its wake-up is measured as submit-to-start instead.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from updraft.core import payloads, protocol
from updraft.core.protocol import Scope
from userpool.server import raise_open_files_limit
from userpool.tokens import TokenSigner


@dataclass
class LoadReport:
    pilots: int
    seconds: float
    submitted: int = 0
    started: int = 0
    completed: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # requests answered at once
    submit_to_start: list[float] = field(default_factory=list)
    requests: int = 0

    def percentile(self, values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def summary(self) -> dict[str, float]:
        return {
            "pilots": self.pilots,
            "seconds": round(self.seconds, 1),
            "submitted": self.submitted,
            "completed": self.completed,
            "errors": len(self.errors),
            "requests": self.requests,
            "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
            "latency_p50_s": round(self.percentile(self.latencies, 0.5), 4),
            "latency_p99_s": round(self.percentile(self.latencies, 0.99), 4),
            "submit_to_start_p50_s": round(self.percentile(self.submit_to_start, 0.5), 4),
            "submit_to_start_p99_s": round(self.percentile(self.submit_to_start, 0.99), 4),
        }


class Connection:
    """One keep-alive HTTP/1.1 connection: JSON in, JSON out, nothing more."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.lock = asyncio.Lock()  # one request at a time on a keep-alive connection

    async def request(self, method: str, path: str, payload: bytes = b"") -> tuple[int, object]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {self.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        self.writer.write(head.encode() + payload)
        status_line = await self.reader.readline()
        if not status_line:
            await self.close()
            raise ConnectionError("the pool closed the connection")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        return status, (json.loads(body) if body else None)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class LoadDriver:
    def __init__(
        self, url: str, signing_key: bytes, pilots: int, rate: float, seconds: float, job_s: float
    ) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.signer = TokenSigner(signing_key)
        self.pilots, self.rate, self.seconds, self.job_s = pilots, rate, seconds, job_s
        self.report = LoadReport(pilots, seconds)
        self.submitted_at: dict[str, float] = {}
        self.stop_polling = asyncio.Event()

    async def timed(
        self, connection: Connection, method: str, path: str, payload: bytes, measure: bool
    ) -> object:
        began = time.monotonic()
        try:
            status, body = await connection.request(method, path, payload)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            self.report.errors.append(f"{method} {path}: {type(exc).__name__}: {exc}")
            await connection.close()
            return None
        self.report.requests += 1
        if measure:
            self.report.latencies.append(time.monotonic() - began)
        if status >= 300:
            self.report.errors.append(f"{method} {path}: {status} {body}")
            return None
        return body

    # -- a pilot -------------------------------------------------------------------------------
    async def pilot(self, index: int) -> None:
        name = f"load-pilot-{index}"
        token = self.signer.issue(name, frozenset({Scope.PILOT}), 3600)[0]
        connection = Connection(self.host, self.port, token)
        slot = {
            "Name": protocol.quote(f"slot1@{name}"), "Cpus": "1", "Memory": "2048", "Disk": "10000000",
            "Arch": '"X86_64"', "OpSys": '"LINUX"', "HasFileTransfer": "true",
            protocol.ATTR_GLIDEIN_SITE: '"LoadSite"', "START": "true",
        }  # fmt: skip
        poll = payloads.PollRequest(slot, [], 20.0, 1).to_json()
        try:
            while not self.stop_polling.is_set():
                body = await self.timed(connection, "POST", protocol.PILOT_POLL, poll, measure=False)
                if body is None:
                    await asyncio.sleep(1.0)
                    continue
                matches = body.get("matches", []) if isinstance(body, dict) else []
                if not matches:
                    continue
                for match in matches:
                    await self.run_job(connection, match)
        finally:
            await connection.close()

    async def run_job(self, connection: Connection, match: dict[str, object]) -> None:
        job_id = str(match["job_id"])
        submitted = self.submitted_at.get(job_id)
        if submitted is not None:
            self.report.submit_to_start.append(time.monotonic() - submitted)
        report_path = protocol.CLAIM_REPORT.format(claim_id=match["claim_id"])
        if (
            await self.timed(connection, "POST", report_path, payloads.ClaimReport("started").to_json(), True)
            is None
        ):
            return
        self.report.started += 1
        await asyncio.sleep(self.job_s)
        exited = payloads.ClaimReport("exited", exit_code=0, usage={"RemoteUserCpu": self.job_s}).to_json()
        if await self.timed(connection, "POST", report_path, exited, True) is not None:
            self.report.completed += 1

    # -- the users ------------------------------------------------------------------------------
    async def submitter(self) -> None:
        token = self.signer.issue("load-user", frozenset({Scope.USER}), 3600)[0]
        connections = [Connection(self.host, self.port, token) for _ in range(8)]
        pending: set[asyncio.Task[None]] = set()
        began = time.monotonic()
        count = 0
        while time.monotonic() - began < self.seconds:
            due = began + count / self.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            connection = connections[count % len(connections)]
            task = asyncio.create_task(self.submit_one(connection))
            pending.add(task)
            task.add_done_callback(pending.discard)
            count += 1
            if len(pending) > 64:  # the pool is behind: do not pile up sockets, let it show in latency
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.wait(pending)
        for connection in connections:
            await connection.close()

    async def submit_one(self, connection: Connection) -> None:
        async with connection.lock:  # the submitter shares its connections between submissions
            body = await self.timed(connection, "POST", protocol.CLUSTERS, b"", True)
            if not isinstance(body, dict):
                return
            cluster = int(body["cluster_id"])
            ad = {"Cmd": '"/bin/true"', "RequestCpus": "1", "RequestMemory": "64", "Requirements": "true"}
            self.submitted_at[f"{cluster}.0"] = time.monotonic()
            if await self.timed(
                connection, "POST", protocol.JOBS, payloads.SubmitRequest(cluster, ad, [{}]).to_json(), True
            ):
                self.report.submitted += 1

    async def run(self, drain_s: float = 60.0) -> LoadReport:
        raise_open_files_limit()  # a connection per pilot, as the pool needs one per pilot
        pilots = []
        for index in range(
            self.pilots
        ):  # ramp up in steps: a backlog of 2,000 SYNs at once is a test of the kernel
            pilots.append(asyncio.create_task(self.pilot(index)))
            if index % 100 == 99:
                await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # every pilot is long-polling
        began = time.monotonic()
        await self.submitter()
        deadline = time.monotonic() + drain_s
        while self.report.completed < self.report.submitted and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        self.report.seconds = time.monotonic() - began
        self.stop_polling.set()
        for task in pilots:
            task.cancel()
        await asyncio.gather(*pilots, return_exceptions=True)
        return self.report


def run_load(
    url: str, signing_key: bytes, pilots: int, rate: float, seconds: float, job_s: float = 1.0
) -> LoadReport:
    return asyncio.run(LoadDriver(url, signing_key, pilots, rate, seconds, job_s).run())
