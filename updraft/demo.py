"""`make demo`: the whole system on one machine, from condor_submit to a summary.

A pool; a factory with three local entries acting as sites (UCSD, Nebraska, Wisconsin, each
with its own worker-node directories, cores and wall-clock limit); a frontend with a
sensible policy and a short overflow timeout; and a workload submitted with condor_submit:
jobs for any site, more jobs for UCSD than UCSD can run (they overflow to the other sites
and read their input from UCSD's storage through a local xrootd server), a few jobs that
fail, a small DAG (condor_submit_dag), and one worker node that fails validation.  Live progress while it runs, a summary at
the end, and every process it started is stopped (``--keep`` leaves them up).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from updraft.core import protocol
from updraft.core.client import Client
from updraft.core.payloads import QueryRequest
from updraft.core.protocol import Scope
from updraft.core.tables import render_table
from updraft.service import terminate
from userpool.process import PoolProcess
from userpool.tokens import TokenSigner

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
XROOTD_PORT = 11095
#: the local account the demo's jobs belong to when it runs as root (a root pool never writes as root)
DEMO_ACCOUNT = "nobody"
SITES = {  # name: (cores per pilot, pilots at once, wall-clock limit)
    "UCSD": (2, 1, 1800),
    "Nebraska": (2, 2, 1800),
    "Wisconsin": (1, 2, 900),
}

ANY_SITE = """\
# analysis jobs that may run at any site
executable   = analyze.sh
arguments    = $(Item) $$(GLIDEIN_Site)
output       = out/any.$(Process).out
error        = out/any.$(Process).err
log          = demo.log
batch_name   = any-site
queue Item in (higgs, top, susy, qcd, ewk, bphys, forward, lumi, trigger)
"""
UCSD_ONLY = """\
# more work for UCSD than UCSD can run: after the overflow timeout it may also run at
# Nebraska and Wisconsin, reading its input from UCSD's storage over xrootd
executable   = reco.sh
arguments    = $(Process) $$(GLIDEIN_Site)
environment  = "XRD_INPUT={xrd} LOCAL_INPUT={local}"
output       = out/ucsd.$(Process).out
error        = out/ucsd.$(Process).err
log          = demo.log
+DESIRED_Sites = "UCSD"
requirements = stringListMember(TARGET.GLIDEIN_Site, DESIRED_Sites)
batch_name   = ucsd-reco
queue 16
"""
FAILING = """\
# jobs that fail (exit code 3)
executable   = broken.sh
output       = out/broken.$(Process).out
error        = out/broken.$(Process).err
log          = demo.log
+DESIRED_Sites = "Nebraska,Wisconsin"
requirements = stringListMember(TARGET.GLIDEIN_Site, DESIRED_Sites)
batch_name   = broken
queue 3
"""
WORKFLOW = """\
# a small workflow (condor_submit_dag): prepare, two analyses side by side, then merge
JOB prepare step.sub
JOB analyze1 step.sub
JOB analyze2 step.sub
JOB merge step.sub
PARENT prepare CHILD analyze1 analyze2
PARENT analyze1 analyze2 CHILD merge
VARS ALL_NODES step="$(JOB)"
RETRY ALL_NODES 1
SCRIPT POST merge merged.sh $JOB $RETURN
"""
STEP = """\
# one step of the workflow: $(step) is the DAG node's name (VARS)
executable = step.sh
arguments  = $(step)
output     = out/workflow.$(step).out
error      = out/workflow.$(step).err
log        = demo.log
queue
"""
SCRIPTS = {
    "step.sh": '#!/bin/sh\necho "workflow step $1 ran"\nsleep 1\n',
    "merged.sh": '#!/bin/sh\necho "the workflow is merged: node $1 returned $2"\nexit $2\n',
    "analyze.sh": '#!/bin/sh\necho "analyzing $1 at $2"\nsleep 3\n',
    "reco.sh": (
        "#!/bin/sh\n# $1: chunk, $2: the site it runs at\n"
        'if [ "$2" = "UCSD" ] || [ -z "$XRD_INPUT" ]; then cp "$LOCAL_INPUT" input.dat && how="local disk";\n'
        'else xrdcp -s -f "$XRD_INPUT" input.dat && how="$XRD_INPUT"; fi\n'
        'echo "chunk $1 at $2 read \\"$(cat input.dat)\\" from $how"\nsleep 6\n'
    ),
    "broken.sh": '#!/bin/sh\necho "segmentation violation (not really)" >&2\nexit 3\n',
    # a factory validation script: the first worker node at Wisconsin is broken
    "broken-node-check.sh": (
        '#!/bin/sh\ncase "$GLIDEIN_Site" in Wisconsin) ;; *) exit 0 ;; esac\n'
        'if mkdir "{claim}" 2>/dev/null; then\n'
        '  echo "message: the node\'s scratch disk is read-only"\n  echo "metric: free_scratch_gb=0"\n  exit 1\nfi\nexit 0\n'
    ),
}


def say(text: str) -> None:
    print(text, flush=True)


class Demo:
    def __init__(self, work: Path, timeout: float) -> None:
        self.work = work
        self.timeout = timeout
        self.pool = PoolProcess(work / "home")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.xrootd = False
        self.env: dict[str, str] = {}
        self.began = time.monotonic()

    # -- setting up -------------------------------------------------------------------------------
    def start(self) -> None:
        for name, text in SCRIPTS.items():
            path = self.work / name
            path.write_text(text.replace("{claim}", str(self.work / "broken-node-claimed")))
            path.chmod(0o755)
        (self.work / "out").mkdir()
        say(f"Work directory: {self.work}")
        self._job_account()
        say("Starting the pool ...")
        self.pool.start()
        self.env = {**self.pool.environment(), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        say(f"  pool at {self.pool.url} (monitor: {self.pool.url}{protocol.MONITOR_PAGE})")
        self._storage()
        signer = TokenSigner((self.pool.home / "keys" / "signing.key").read_bytes())
        for name, scope in (("demo-factory", Scope.FACTORY), ("demo-frontend", Scope.FRONTEND)):
            (self.work / f"{name}.token").write_text(signer.issue(name, frozenset({scope}), 86400)[0])
        self._factory_config()
        self._frontend_config()
        for component in ("factory", "frontend"):
            say(f"Starting the {component} ...")
            log = open(self.work / f"{component}.log", "ab")  # noqa: SIM115 - lives with the process
            self.processes[component] = subprocess.Popen(
                [str(BIN / "updraft"), component, "run", "--config", str(self.work / f"{component}.yaml")],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def _job_account(self) -> None:
        """As root, the demo's jobs belong to ``nobody``: a root pool never writes as root.

        The identity map sends the demo's submitter to that account and the submit directory is
        given to it, as a user's own directory belongs to the user (docs/pool-operations.md).
        """
        if os.geteuid() != 0:
            return  # an unprivileged pool writes as its own account, in its own directories
        home = self.pool.home
        home.mkdir(parents=True, exist_ok=True)
        (home / "identity.map").write_text(
            f"# the demo runs as root: its jobs are the local account {DEMO_ACCOUNT}'s\nTOKEN /.*/ {DEMO_ACCOUNT}\n"
        )
        account = pwd.getpwnam(DEMO_ACCOUNT)
        for directory in (self.work, self.work / "out"):
            os.chown(directory, account.pw_uid, account.pw_gid)
        os.chmod(self.work, 0o755)
        say(f"  (root: the demo's jobs write their output as the local account {DEMO_ACCOUNT})")

    def _storage(self) -> None:
        """UCSD's storage: a real xrootd server when this machine can run one."""
        store = self.work / "xrootd"
        script = ROOT / "scripts" / "sites" / "xrootd.sh"
        if os.geteuid() == 0:
            env = {**os.environ, "UPDRAFT_XROOTD_DIR": str(store), "UPDRAFT_XROOTD_PORT": str(XROOTD_PORT)}
            store.mkdir(parents=True, exist_ok=True)
            store.chmod(0o755)
            self.work.chmod(0o755)
            result = subprocess.run([str(script), "start"], env=env, capture_output=True, text=True)
            self.xrootd = result.returncode == 0
            if not self.xrootd:
                say(
                    f"  (xrootd did not start, overflowed jobs will copy their input locally: {result.stderr.strip()})"
                )
        else:
            say("  (not root: no xrootd server; overflowed jobs copy their input locally)")
        data = store / "data" / "store" / "demo"
        data.mkdir(parents=True, exist_ok=True)
        (data / "input.dat").write_text("2.1 fb^-1 of UCSD's finest\n")
        for path in (store, store / "data", store / "data" / "store", data):
            path.chmod(0o755)
        (data / "input.dat").chmod(0o644)
        xrd = f"root://localhost:{XROOTD_PORT}//store/demo/input.dat" if self.xrootd else ""
        if self.xrootd:
            say(f"  UCSD's storage: xrootd at root://localhost:{XROOTD_PORT}//store")
        (self.work / "ucsd.sub").write_text(UCSD_ONLY.format(xrd=xrd, local=data / "input.dat"))
        (self.work / "any.sub").write_text(ANY_SITE)
        (self.work / "broken.sub").write_text(FAILING)
        (self.work / "workflow.dag").write_text(WORKFLOW)
        (self.work / "step.sub").write_text(STEP)

    def _factory_config(self) -> None:
        entries = []
        for site, (cores, pilots, walltime) in SITES.items():
            entries.append({
                "name": f"{site}_local", "gridtype": "local",
                "attributes": {protocol.ATTR_GLIDEIN_SITE: site, protocol.ATTR_GLIDEIN_CPUS: cores, protocol.ATTR_GLIDEIN_MAX_WALLTIME: walltime,
                               protocol.ATTR_GLIDEIN_SUPPORTED_VOS: "CMS,OSG"},
                "allowed_frontends": ["demo-frontend"],
                "limits": {"max_glideins": pilots + 1, "max_idle": 2, "max_held": 2},
                "options": {"max_running": pilots},
            })  # fmt: skip
        config = {
            "name": "demo-factory",
            "pool": {"url": self.pool.url, "token_file": str(self.work / "demo-factory.token")},
            "state_dir": str(self.work / "factory"),
            "staging": {"dir": str(self.work / "factory" / "staging"), "host": "127.0.0.1", "port": 0},
            "cycle_s": 2,
            "pilot": {"idle_timeout_s": 8, "tail_timeout_s": 5, "min_disk_gb": 0.05, "poll_wait_s": 2.0, "failure_hold_s": 10},
            "custom_checks": [{"path": str(self.work / "broken-node-check.sh"), "type": "WN_Resource"}],
            "entries": entries,
        }  # fmt: skip
        (self.work / "factory.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def _frontend_config(self) -> None:
        config = {
            "name": "demo-frontend",
            "pool": {"url": self.pool.url, "token_file": str(self.work / "demo-frontend.token")},
            "state_dir": str(self.work / "frontend"),
            "cycle_s": 3,
            "metrics_port": 0,
            "groups": [
                {
                    "name": "cms", "job_constraint": "DESIRED_Sites isnt undefined",
                    "match_expr": "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)",
                    "ramp_up_attenuation": 1, "removal": {"policy": "IDLE", "wait_cycles": 3},
                    "overflow": {"after": 20, "sites": {"UCSD": ["Nebraska", "Wisconsin"]}, "max_per_home_site": 6},
                },
                {
                    "name": "anywhere", "job_constraint": "DESIRED_Sites is undefined", "match_expr": "true",
                    "ramp_up_attenuation": 1, "removal": {"policy": "IDLE", "wait_cycles": 3},
                },
            ],
        }  # fmt: skip
        (self.work / "frontend.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    # -- running ----------------------------------------------------------------------------------
    def submit(self) -> int:
        total = 0
        for name in ("any.sub", "ucsd.sub", "broken.sub"):
            say(f"\n$ condor_submit {name}")
            out = subprocess.run(
                [str(BIN / "condor_submit"), name],
                env=self.env,
                cwd=self.work,
                capture_output=True,
                text=True,
                check=True,
            )
            say(out.stdout.strip())
            total += int(out.stdout.split(" job(s) submitted")[0].split()[-1])
        say("\n$ condor_submit_dag workflow.dag")
        out = subprocess.run(
            [str(BIN / "condor_submit_dag"), "workflow.dag"], env=self.env, cwd=self.work, capture_output=True,
            text=True, check=True,
        )  # fmt: skip
        say(next(line for line in out.stdout.splitlines() if "submitted to cluster" in line))
        return total + 1 + WORKFLOW.count("\nJOB ")  # the DAG job and its nodes

    def client(self) -> Client:
        return self.pool.client()

    def watch(self, total: int) -> bool:
        client = self.client()
        say("\n  time | pilots per site (running/failed validation) | jobs idle/running/done | overflowed")
        last = ""
        while time.monotonic() - self.began < self.timeout:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise SystemExit(
                        f"the {name} exited with {process.returncode}; see {self.work / (name + '.log')}"
                    )
            queue = client.query(QueryRequest("", [], [], [], 0, True, True)).totals or {}
            finished = len(client.query(QueryRequest("", ["ProcId"]), history=True).ads)
            slots = Counter(
                _site(ad)
                for ad in client.query_ads(protocol.AdType.Slot.value, "", [protocol.ATTR_GLIDEIN_SITE])
            )
            failed = Counter(
                _site(ad)
                for ad in client.query_ads(
                    protocol.AdType.PilotFailure.value, "", [protocol.ATTR_GLIDEIN_SITE]
                )
            )
            overflowed = len(client.query(QueryRequest("Overflowed =?= true", ["ProcId"])).ads) + len(
                client.query(QueryRequest("Overflowed =?= true", ["ProcId"]), history=True).ads
            )
            pilots = "  ".join(f"{site} {slots[site]}/{failed[site]}" for site in SITES)
            line = f"{pilots} | {queue.get('idle', 0):>2}/{queue.get('running', 0):>2}/{finished:>2} | {overflowed}"
            if line != last:
                say(f"{time.monotonic() - self.began:5.0f}s | {line}")
                last = line
            if finished >= total:
                return True
            time.sleep(1.0)
        say(f"the demo's {self.timeout:.0f} s are up before every job finished")
        return False

    def wait_for_pilots(self, timeout: float = 60.0) -> None:
        """Pilots leave by themselves once idle; their final records reach the factory as they end."""
        say("\nAll jobs are done; waiting for the pilots to leave when idle ...")
        client = self.client()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and client.query_ads(
            protocol.AdType.Slot.value, "", [protocol.ATTR_GLIDEIN_SITE]
        ):
            time.sleep(1.0)
        time.sleep(5.0)  # a factory cycle or two to collect what they printed

    # -- the end ------------------------------------------------------------------------------------
    def summary(self, total: int) -> None:
        client = self.client()
        history = client.query(
            QueryRequest("", ["ClusterId", "ProcId", "JobBatchName", protocol.ATTR_MATCH_SITE, "ExitCode", protocol.ATTR_OVERFLOWED, protocol.ATTR_DESIRED_SITES_ORIG]),
            history=True,
        ).ads  # fmt: skip
        per_site: dict[str, Counter[str]] = {}
        for ad in history:
            site = str(protocol.parse_literal(ad.get(protocol.ATTR_MATCH_SITE, '"?"')))
            batch = str(protocol.parse_literal(ad.get("JobBatchName", '"?"')))
            row = per_site.setdefault(site, Counter())
            row[batch] += 1
            row["failed"] += 1 if ad.get("ExitCode", "0") not in ("0", "undefined") else 0
            row["overflowed"] += 1 if ad.get(protocol.ATTR_OVERFLOWED) == "true" else 0
        batches = ["any-site", "ucsd-reco", "broken"]
        rows = [[site, *(per_site.get(site, Counter())[b] for b in batches), per_site.get(site, Counter())["overflowed"], per_site.get(site, Counter())["failed"]] for site in SITES]  # fmt: skip
        say("\nJobs per site")
        say(render_table(["SITE", *batches, "OVERFLOWED", "EXIT != 0"], rows, right=(1, 2, 3, 4, 5)))
        analysis = subprocess.run(
            [str(BIN / "updraft"), "factory", "analyze", "--json", "--config", str(self.work / "factory.yaml")],
            env=self.env, capture_output=True, text=True,
        )  # fmt: skip
        say("\nPilots per entry (from the factory's journal and the pilots' final records)")
        try:
            entries = json.loads(analysis.stdout)
        except ValueError:
            entries = []
            say(f"  (updraft factory analyze failed: {analysis.stderr.strip()})")
        rows = []
        core_hours = used = 0.0
        failures = 0
        for entry in entries:
            core_hours += entry["core_hours"]
            used += entry["used_core_hours"]
            failures += sum(entry["validation_failures"].values())
            efficiency = f"{entry['efficiency']:.0%}" if entry["efficiency"] is not None else "-"
            rows.append(
                [
                    entry["entry"],
                    entry["submitted"],
                    entry["jobs"],
                    ", ".join(f"{k} {v}" for k, v in entry["validation_failures"].items()) or "-",
                    efficiency,
                ]
            )
        say(
            render_table(
                ["ENTRY", "GLIDEINS", "JOBS", "VALIDATION FAILURES", "EFFICIENCY"], rows, right=(1, 2, 4)
            )
        )
        overflowed = sum(1 for ad in history if ad.get(protocol.ATTR_OVERFLOWED) == "true")
        say(
            f"\n{len(history)}/{total} jobs done, {overflowed} overflowed from UCSD, {failures} node(s) failed validation, "
            f"pilot efficiency {used / core_hours:.0%} "
            if core_hours
            else f"\n{len(history)}/{total} jobs done "
        )
        say(
            f"wall time {time.monotonic() - self.began:.0f} s; monitor: {self.pool.url}{protocol.MONITOR_PAGE}"
        )
        dags = client.query(QueryRequest("JobUniverse == 7", ["ClusterId", "ExitCode"]), history=True).ads
        for ad in dags:
            merged = self.work / "workflow.dag.dagman.out"
            said = (
                [line for line in merged.read_text().splitlines() if "is merged" in line]
                if merged.exists()
                else []
            )
            say(f"workflow.dag (DAG job {ad['ClusterId']}): exit code {ad.get('ExitCode', '?')}"
                f"{'; ' + said[-1].split(' ', 2)[-1].strip() if said else ''}")  # fmt: skip
        outputs = sorted((self.work / "out").glob("ucsd.*.out"), key=lambda f: "root://" not in f.read_text())
        for path in outputs[:2]:
            say(f"  {path.name}: {path.read_text().strip()}")

    def stop(self) -> None:
        for name in ("frontend", "factory"):  # the factory drains: it removes its glideins at the sites
            process = self.processes.get(name)
            if process is not None:
                terminate(process, 60)
        self.pool.stop()
        if self.xrootd:
            env = {
                **os.environ,
                "UPDRAFT_XROOTD_DIR": str(self.work / "xrootd"),
                "UPDRAFT_XROOTD_PORT": str(XROOTD_PORT),
            }
            subprocess.run(
                [str(ROOT / "scripts" / "sites" / "xrootd.sh"), "stop"], env=env, capture_output=True
            )


def _site(ad: dict[str, str]) -> str:
    try:
        return str(protocol.parse_literal(ad.get(protocol.ATTR_GLIDEIN_SITE, '"?"')))
    except ValueError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m updraft.demo", description=__doc__)
    parser.add_argument(
        "--keep", action="store_true", help="leave everything running for exploration (Ctrl-C stops it)"
    )
    parser.add_argument("--work", help="the work directory (default: a new temporary one)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="updraft-demo-"))
    if args.work and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    demo = Demo(work, args.timeout)
    ok = False
    try:
        demo.start()
        total = demo.submit()
        ok = demo.watch(total)
        if ok:
            demo.wait_for_pilots()
        demo.summary(total)
        if args.keep:
            say(
                f"\nEverything keeps running. In another shell:\n"
                f"    export UPDRAFT_HOME={demo.pool.home} PATH={BIN}:$PATH\n"
                f"    condor_q; condor_history; updraft frontend explain --config {work / 'frontend.yaml'}\n"
                f"Press Ctrl-C to stop."
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    finally:
        say("\nStopping the frontend, the factory (removing its glideins) and the pool ...")
        demo.stop()
        say("Every process the demo started has stopped.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
