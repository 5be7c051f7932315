"""Heavy expressions: jobs whose Requirements are as costly as the pool accepts, and the requests
that must not wait for their matchmaking.

One user queues ``jobs`` jobs, each an autocluster of its own whose Requirements refer down a
chain of doubling attributes (``a1 = a0 + a0`` ...) to just under ``max_expression_terms``.
Pilots then poll with slot shapes the pool has not seen, so every autocluster is evaluated
again for each; meanwhile one client times ``/v1/ping`` and a small condor_q query, and a
pilot of another kind asks for an ordinary job.  Used by the bench (the latency target) and
by tests/reliability (a bounded run: nothing waits for seconds, normal jobs still match).
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field

import requests

from updraft.core.client import Client
from updraft.core.payloads import PollRequest, QueryRequest, SubmitRequest
from updraft.core.protocol import Scope, quote
from userpool.tokens import TokenSigner

#: 12 levels of doubling: ~12,000 terms, under the default budget of 20,000
LEVELS = 12


def doubling(levels: int, seed: int) -> dict[str, str]:
    """``a0 = seed``, then ``a<k> = a<k-1> + a<k-1>``: ``a<levels>`` stands for 2**levels terms."""
    ad = {"a0": str(seed)}
    for level in range(1, levels + 1):
        ad[f"a{level}"] = f"a{level - 1} + a{level - 1}"
    return ad


def _slot(name: str, memory_mb: int, **extra: str) -> dict[str, str]:
    return {
        "Name": quote(name), "Cpus": "1", "Memory": str(memory_mb), "Disk": "10000000", "Arch": '"X86_64"',
        "OpSys": '"LINUX"', "GLIDEIN_Site": '"HeavySite"', "START": "true", **extra,
    }  # fmt: skip


@dataclass
class HeavyReport:
    jobs: int
    shapes: int
    pings: list[float] = field(default_factory=list)
    queries: list[float] = field(default_factory=list)
    heavy_matched: int = 0
    light_matched: bool = False
    seconds: float = 0.0

    @staticmethod
    def p99(samples: list[float]) -> float:
        if len(samples) < 2:
            return (samples or [0.0])[0]
        return statistics.quantiles(samples, n=100, method="inclusive")[98]

    def summary(self) -> dict[str, object]:
        return {
            "jobs": self.jobs,
            "new_shapes": self.shapes,
            "pings": len(self.pings),
            "ping_p99_s": round(self.p99(self.pings), 4),
            "ping_max_s": round(max(self.pings, default=0.0), 4),
            "condor_q_p99_s": round(self.p99(self.queries), 4),
            "condor_q_max_s": round(max(self.queries, default=0.0), 4),
            "heavy_matched": self.heavy_matched,
            "light_matched": self.light_matched,
            "seconds": round(self.seconds, 1),
        }


def run_heavy(url: str, signing_key: bytes, jobs: int = 1000, shapes: int = 4) -> HeavyReport:
    signer = TokenSigner(signing_key)

    def client(subject: str, scope: Scope) -> Client:
        return Client(url, signer.issue(subject, frozenset({scope}), 3600)[0])

    user = client("heavy", Scope.USER)
    for index in range(jobs):
        ad = {"Cmd": '"/bin/true"', **doubling(LEVELS, index)}
        ad["Requirements"] = f"a{LEVELS} >= 0 && TARGET.Heavy =?= true"
        user.submit(SubmitRequest(user.reserve_cluster(), ad, [{}]))
    light = client("light", Scope.USER)
    light.submit(SubmitRequest(light.reserve_cluster(), {"Cmd": '"/bin/true"', "Tag": '"light"'}, [{}] * 3))
    report = HeavyReport(jobs, shapes)
    stop = threading.Event()

    def measure() -> None:
        session = requests.Session()
        reader = client("reader", Scope.USER)
        while not stop.is_set():
            started = time.perf_counter()
            session.get(f"{url}/v1/ping", timeout=60)
            report.pings.append(time.perf_counter() - started)
            started = time.perf_counter()
            reader.query(QueryRequest('Tag == "light"', ["ClusterId"]))
            report.queries.append(time.perf_counter() - started)
            time.sleep(0.005)

    thread = threading.Thread(target=measure, daemon=True)
    began = time.perf_counter()
    thread.start()
    try:
        for index in range(shapes):  # each a slot shape the pool has not seen: every autocluster again
            pilot = client(f"heavy-pilot-{index}", Scope.PILOT)
            slot = _slot(f"slot@heavy{index}", 3000 + index, Heavy="true")
            report.heavy_matched += len(pilot.poll(PollRequest(slot, [], 30, 1)).matches)
        pilot = client("light-pilot", Scope.PILOT)
        slot = _slot("slot@light", 2048, START='TARGET.Tag =?= "light"')
        report.light_matched = bool(pilot.poll(PollRequest(slot, [], 30, 1)).matches)
    finally:
        stop.set()
        thread.join()
    report.seconds = time.perf_counter() - began
    return report
