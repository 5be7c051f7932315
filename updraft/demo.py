"""`make demo`: the whole system on one machine.

Today: a pool, pilots at three local "sites" started directly (the factory and frontend
will start them once they land), and a sample workload submitted with condor_submit.  It
shows live progress, a summary, and stops everything it started (``--keep`` leaves it up).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from pilot.build import build
from userpool.process import PoolProcess
from userpool.protocol import QueryRequest, Scope
from userpool.tokens import TokenSigner

SITES = {"UCSD": 2, "Nebraska": 2, "Wisconsin": 1}

SAMPLE = """\
# ten short analysis jobs that may run at any of the three sites
executable     = analyze.sh
arguments      = --dataset $(Item) --chunk $(Process) --site $$(GLIDEIN_Site)
output         = out/$(Cluster).$(Process).out
error          = out/$(Cluster).$(Process).err
log            = demo.log
request_cpus   = 1
request_memory = 256 MB
+DESIRED_Sites = "UCSD,Nebraska,Wisconsin"
requirements   = stringListMember(TARGET.GLIDEIN_Site, DESIRED_Sites)
batch_name     = demo
queue Item in (higgs, top, susy, qcd, ewk, bphys, heavyion, forward, lumi, trigger)
"""


def run(command: list[str], env: dict[str, str], cwd: Path) -> None:
    print(f"\n$ {' '.join(command)}", flush=True)
    subprocess.run(command, env=env, cwd=cwd, check=True)


def start_pilots(pool: PoolProcess, work: Path) -> list[subprocess.Popen[bytes]]:
    bundle = work / "updraft-pilot.pyz"
    build(bundle)
    token = work / "pilot.token"
    signer = TokenSigner((pool.home / "keys" / "signing.key").read_bytes())
    token.write_text(signer.issue("demo-pilots", frozenset({Scope.PILOT}), 86400)[0])
    pilots = []
    for site, cpus in SITES.items():
        node = work / "sites" / site
        node.mkdir(parents=True)
        config = {
            "pool": pool.url, "token_file": str(token), "site": site, "entry": f"{site}_local", "factory": "demo",
            "cpus": str(cpus), "work_dir": str(node), "tail_timeout_s": 5, "idle_timeout_s": 120, "lifetime_s": 3600,
        }  # fmt: skip
        (node / "pilot.json").write_text(json.dumps(config))
        log = open(node / "pilot.log", "wb")  # noqa: SIM115 - lives with the pilot
        pilots.append(
            subprocess.Popen(
                [sys.executable, str(bundle), "--config", str(node / "pilot.json")], stdout=log, stderr=log
            )
        )
    return pilots


def progress(pool: PoolProcess, until_done: float = 180.0) -> None:
    client = pool.client()
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < until_done:
        totals = client.query(QueryRequest("", [], [], [], 0, True, True)).totals or {}
        slots = client.query_ads("Machine", "", ["GLIDEIN_Site", "JobsRunning"])
        per_site: dict[str, int] = {}
        for ad in slots:
            per_site[ad.get("GLIDEIN_Site", '"?"').strip('"')] = (
                per_site.get(ad.get("GLIDEIN_Site", '"?"').strip('"'), 0) + 1
            )
        line = (
            f"  {time.monotonic() - started:5.1f} s  idle {totals.get('idle', 0):>2}  running {totals.get('running', 0):>2}"
            f"  held {totals.get('held', 0):>2}  pilots: "
            + ", ".join(f"{site} {n}" for site, n in sorted(per_site.items()))
        )
        if line.split("s ", 1)[1] != last:
            print(line, flush=True)
            last = line.split("s ", 1)[1]
        if totals.get("idle", 0) + totals.get("running", 0) + totals.get("suspended", 0) == 0:
            return
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="updraft demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the pool running for exploration")
    args = parser.parse_args(argv)
    bin_dir = Path(sys.executable).parent
    work = Path(tempfile.mkdtemp(prefix="updraft-demo-"))
    (work / "out").mkdir()
    script = work / "analyze.sh"
    script.write_text('#!/bin/sh\necho "analyzing $*"\nsleep 2\n')
    script.chmod(0o755)
    (work / "demo.sub").write_text(SAMPLE)
    pool = PoolProcess(work / "home")
    print(f"Starting a pool in {pool.home} ...", flush=True)
    pool.start()
    env = pool.environment()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    pilots: list[subprocess.Popen[bytes]] = []
    began = time.monotonic()
    try:
        print(f"Pool at {pool.url}")
        run(["condor_submit", "demo.sub"], env, work)
        run(["condor_q"], env, work)
        print(
            f"\nStarting pilots at {', '.join(f'{s} ({c} cores)' for s, c in SITES.items())} ...", flush=True
        )
        pilots = start_pilots(pool, work)
        progress(pool)
        run(
            [
                "condor_history",
                "-limit",
                "10",
                "-af",
                "ClusterId",
                "ProcId",
                "MATCH_EXP_JOB_GLIDEIN_Site",
                "ExitCode",
            ],
            env,
            work,
        )
        run(["updraft", "logging-info", "1.0"], env, work)
        print(f"\nOutputs are in {work / 'out'}:")
        for path in sorted((work / "out").glob("*.out"))[:3]:
            print("  " + path.read_text().strip())
        print(f"\nDone in {time.monotonic() - began:.1f} s.")
        if args.keep:
            print(
                textwrap.dedent(
                    f"""
                    The pool keeps running. Try, in another shell:
                        export UPDRAFT_HOME={pool.home} PATH={bin_dir}:$PATH
                        condor_submit {work / "demo.sub"}; condor_q; condor_status
                    """
                )
            )
            pool.process = None
            return 0
    finally:
        for pilot in pilots:
            if pilot.poll() is None:
                pilot.terminate()
        for pilot in pilots:
            try:
                pilot.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pilot.kill()
        pool.stop()
    print("Every process the demo started has stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
