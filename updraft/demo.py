"""`make demo`: the whole system on one machine.

For now (issue 2) the demo shows the global queue: it starts a pool with its own home,
submits a sample cluster with condor_submit, shows it with condor_q and condor_q
-better-analyze, and stops the pool.  Pilots, factory and frontend join as they land.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from userpool.process import PoolProcess

SAMPLE = """\
# a sample cluster: ten jobs, one per input item, wanting one of three sites
executable     = analyze.sh
arguments      = --dataset $(Item) --chunk $(Process)
output         = out/$(Cluster).$(Process).out
error          = out/$(Cluster).$(Process).err
log            = demo.log
request_cpus   = 1
request_memory = 512 MB
+DESIRED_Sites = "UCSD,Nebraska,Wisconsin"
requirements   = stringListMember(TARGET.GLIDEIN_Site, DESIRED_Sites)
batch_name     = demo
queue Item in (higgs, top, susy, qcd, ewk, bphys, heavyion, forward, lumi, trigger)
"""


def run(command: list[str], env: dict[str, str], cwd: Path) -> None:
    print(f"\n$ {' '.join(command)}", flush=True)
    subprocess.run(command, env=env, cwd=cwd, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="updraft demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the pool running for exploration")
    args = parser.parse_args(argv)
    bin_dir = Path(sys.executable).parent
    work = Path(tempfile.mkdtemp(prefix="updraft-demo-"))
    (work / "out").mkdir()
    script = work / "analyze.sh"
    script.write_text('#!/bin/sh\necho "analyzing $*"\nsleep 1\n')
    script.chmod(0o755)
    (work / "demo.sub").write_text(SAMPLE)
    pool = PoolProcess(work / "home")
    print(f"Starting a pool in {pool.home} ...", flush=True)
    pool.start()
    env = pool.environment()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    try:
        print(f"Pool at {pool.url}")
        run(["condor_submit", "demo.sub"], env, work)
        run(["condor_q"], env, work)
        run(["condor_q", "-nobatch"], env, work)
        run(["condor_q", "-af", "ClusterId", "ProcId", "Args", "RequestMemory"], env, work)
        run(["condor_q", "-better-analyze", "1.0"], env, work)
        run(["updraft", "logging-info", "1.0"], env, work)
        if args.keep:
            print(
                textwrap.dedent(
                    f"""
                    The pool keeps running (pid {pool.process.pid if pool.process else "?"}). Try, in another shell:
                        export UPDRAFT_HOME={pool.home} PATH={bin_dir}:$PATH
                        condor_q -l 1.0
                    Stop it with: kill {pool.process.pid if pool.process else "?"}
                    """
                )
            )
            pool.process = None  # leave it running
            return 0
    finally:
        pool.stop()
    print("\nDemo finished; the pool was stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
