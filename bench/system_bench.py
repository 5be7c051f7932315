"""The whole system (issue 6): 10,000 short jobs over 2 local sites and 20 pilots.

A pool, a factory with two local entries of ten one-core pilots each, and a frontend, every
one its own process as operators run them.  Twenty warm-up jobs bring the pilots up; then
the batch is submitted with condor_submit and timed from submission to the last completion
against the ideal (total work / slots).  Then, on the same warm (idle) pilots, jobs are
submitted one at a time for the submit-to-start latency.  Times are the pool's event times.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import BIN, Result, result, say
from updraft.core import payloads, protocol
from updraft.core.protocol import Scope
from updraft.service import terminate
from userpool.process import PoolProcess
from userpool.tokens import TokenSigner

SITES = ("Alpha", "Beta")
PILOTS_PER_SITE = 10


class LocalSystem:
    """Pool, factory and frontend on this machine, stopped (glideins included) on exit."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.pool = PoolProcess(work / "home", ["--synchronous", "NORMAL"])
        self.processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> LocalSystem:
        self.pool.start()
        signer = TokenSigner((self.pool.home / "keys" / "signing.key").read_bytes())
        for name, scope in (("bench-factory", Scope.FACTORY), ("bench-frontend", Scope.FRONTEND)):
            (self.work / f"{name}.token").write_text(signer.issue(name, frozenset({scope}), 86400)[0])
        pilot = {"idle_timeout_s": 300, "tail_timeout_s": 300, "min_disk_gb": 0.05, "poll_wait_s": 20.0}
        entries = [
            {
                "name": f"{site}_local", "gridtype": "local",
                "attributes": {"GLIDEIN_Site": site, "GLIDEIN_CPUS": 1, "GLIDEIN_Max_Walltime": 7200},
                "allowed_frontends": ["bench-frontend"],
                "limits": {"max_glideins": PILOTS_PER_SITE, "max_idle": PILOTS_PER_SITE},
                "pacing": {"cluster_size": PILOTS_PER_SITE, "max_per_cycle": PILOTS_PER_SITE},
                "options": {"max_running": PILOTS_PER_SITE},
            }
            for site in SITES
        ]  # fmt: skip
        self._config("factory", {"state_dir": "factory", "cycle_s": 2, "pilot": pilot, "entries": entries})
        group = {"name": "all", "job_constraint": "true", "match_expr": "true", "ramp_up_attenuation": 1}
        self._config("frontend", {"state_dir": "frontend", "cycle_s": 2, "groups": [group]})
        for component in ("factory", "frontend"):
            log = open(self.work / f"{component}.log", "ab")
            command = [
                str(BIN / "updraft"),
                component,
                "run",
                "--config",
                str(self.work / f"{component}.yaml"),
            ]
            if component == "factory":  # it removes its glideins when it stops: no pilot outlives the bench
                command.append("--drain-on-exit")
            self.processes.append(
                subprocess.Popen(command, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
            )
        return self

    def _config(self, component: str, settings: dict[str, object]) -> None:
        name = f"bench-{component}"
        config = {"name": name, "pool": {"url": self.pool.url, "token_file": f"{name}.token"}, **settings}
        (self.work / f"{component}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def env(self) -> dict[str, str]:
        return {**self.pool.environment(), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    def submit(self, text: str) -> int:
        (self.work / "job.sub").write_text(text)
        out = subprocess.run(
            [str(BIN / "condor_submit"), "job.sub"],
            env=self.env(),
            cwd=self.work,
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout.strip().split()[-1].rstrip("."))

    def events(self, kinds: set[str], after: int = 0) -> list[payloads.Event]:
        client, out = self.pool.client(), []
        while batch := client.events(after, 10000):
            out += [e for e in batch if e.type in kinds]
            after = batch[-1].id
        return out

    def wait(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[1]} exited; see {self.work}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}; see {self.work}")
            time.sleep(0.5)

    def __exit__(self, exc_type: object, *exc: object) -> None:
        for process in reversed(self.processes):  # the factory drains: it removes its glideins
            terminate(process, 90)
        self.pool.stop()
        if exc_type is None:  # kept after a failure: the errors say "see <work>"
            shutil.rmtree(self.work, ignore_errors=True)


def _submit_and_start(system: LocalSystem, cluster: int, after: int) -> list[payloads.Event]:
    return [e for e in system.events({"submit", "execute"}, after) if e.cluster_id == cluster]


def _job(count: int, seconds: float, tag: str) -> str:
    return (
        f"executable = /bin/sleep\ntransfer_executable = false\narguments = {seconds}\n"
        f'+BenchTag = "{tag}"\nrequest_memory = 64\nqueue {count}\n'
    )


def run(quick: bool = False) -> list[Result]:
    jobs, job_s, samples = (1000, 1.0, 30) if quick else (10_000, 1.0, 100)
    slots = len(SITES) * PILOTS_PER_SITE
    work = Path(tempfile.mkdtemp(prefix="updraft-system-bench-"))
    results: list[Result] = []
    with LocalSystem(work) as system:
        say(f"system: bringing up {slots} pilots at {len(SITES)} local sites")
        system.submit(_job(slots, 2, "warmup"))
        client = system.pool.client()
        system.wait(
            lambda: len(client.query_ads(protocol.AdType.Slot.value, "", ["Name"])) >= slots,
            300,
            f"{slots} pilots",
        )
        system.wait(
            lambda: not client.query(payloads.QueryRequest("", ["ProcId"])).ads, 120, "the warm-up jobs"
        )

        say(f"system: {jobs} jobs of {job_s} s over {slots} pilots")
        submitted = time.time()
        cluster = system.submit(_job(jobs, job_s, "batch"))

        def done() -> bool:
            return len(client.query(payloads.QueryRequest(f"ClusterId == {cluster}", ["ProcId"])).ads) == 0

        system.wait(done, jobs * job_s / slots * 4 + 300, "the batch")
        ends = [e.time for e in system.events({"complete"}) if e.cluster_id == cluster]
        makespan = max(ends) - submitted
        ideal = jobs * job_s / slots
        results.append(
            result(
                f"{jobs} jobs of {job_s} s, {len(SITES)} sites, {slots} pilots: makespan / ideal",
                makespan / ideal, "x", "<= 1.1",
                notes={"makespan_s": round(makespan, 1), "ideal_s": ideal, "completed": len(ends)},
            )
        )  # fmt: skip
        say(f"system: makespan {makespan:.1f} s, ideal {ideal:.1f} s, {len(ends)} completions")

        say(f"system: submit-to-start on warm pilots, {samples} jobs one at a time")
        latencies = []
        seen = max((e.id for e in system.events({"complete"})), default=0)  # read only what is new
        for _ in range(samples):
            one = system.submit(_job(1, 0, "latency"))
            system.wait(
                lambda one=one, seen=seen: len(_submit_and_start(system, one, seen)) >= 2, 60, f"job {one}"
            )
            events = _submit_and_start(system, one, seen)
            times = {e.type: e.time for e in events}
            latencies.append(times["execute"] - times["submit"])
            seen = max(e.id for e in events)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    results.append(
        result(
            "submit-to-start on warm pilots (whole system), p50", statistics.median(latencies), "s", "<= 0.5"
        )
    )
    results.append(result("submit-to-start on warm pilots (whole system), p99", p99, "s", "<= 2"))
    return results
