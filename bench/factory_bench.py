"""Factory benchmarks (issue 4): submission rate to real sites against the sites' own clients.

- GRAM5: the gram adapter (two-phase request + commit, through its ctypes helpers) against
  raw `globusrun -b`, both 4 in parallel, to the same gatekeeper in the same run.
  Target: the adapter at >= 0.9x of the raw rate.
- Slurm: the slurm adapter against a raw sbatch loop, same cluster, same run.

Both sites are started by scripts/sites/*.sh and need root; without it the suite says so
and reports nothing.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import ROOT, Result, result, say
from factory.adapters import ADAPTERS
from factory.adapters.base import GlideinSpec, SiteAdapter, Submitted
from factory.adapters.gram import stop_gass_servers
from factory.config import build_entry

SCRIPTS = ROOT / "scripts" / "sites"
QUICK_SCRIPT = "#!/bin/sh\nexit 0\n"


def _site(name: str) -> dict[str, str]:
    done = subprocess.run([str(SCRIPTS / f"{name}.sh"), "start"], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{name}.sh start: {done.stderr.strip()[-500:]}")
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def _adapter(
    name: str, gridtype: str, options: dict[str, object], gatekeeper: str, work: Path
) -> SiteAdapter:
    entry = build_entry(
        {
            "name": name,
            "gridtype": gridtype,
            "gatekeeper": gatekeeper,
            "allowed_frontends": ["*"],
            "options": options,
        }
    )
    work.mkdir(parents=True, exist_ok=True)
    return ADAPTERS[gridtype](entry, "bench", work)


def against(name: str, ours: float, raw: float, label: str, count: int) -> Result:
    """Our rate, with the raw client's rate from the same run as the anchor; target >= 0.9x."""
    return result(
        name,
        ours,
        "jobs/s",
        f">= {0.9 * raw:.2f}",
        anchor=round(raw, 3),
        anchor_label=label,
        notes={"ratio": round(ours / raw, 3), "jobs": count},
    )


def _specs(count: int, prefix: str) -> list[GlideinSpec]:
    return [
        GlideinSpec(
            f"{prefix}{i}", f"updraft_bench_{prefix}{i}", QUICK_SCRIPT, {"pilot.token": b"t\n"}, {}, 1, 0, 300
        )
        for i in range(count)
    ]


def gram(count: int, work: Path) -> list[Result]:
    values = _site("gram")
    env = {
        **os.environ,
        **{
            k: values[k]
            for k in ("X509_CERT_DIR", "X509_USER_PROXY", "GLOBUS_HOSTNAME", "GLOBUS_TCP_PORT_RANGE")
        },
    }
    contact = values["GRAM_CONTACT"]
    # raw: globusrun -b, 4 at a time (the site notes' baseline)
    say(f"raw globusrun -b x{count}, 4 in parallel")
    command = f"globusrun -b -q -r {shlex.quote(contact)} '&(executable=/bin/true)'"

    def raw_one(_: int) -> bool:
        return (
            subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, timeout=120).returncode
            == 0
        )

    subprocess.run(
        ["/bin/sh", "-c", command], env=env, capture_output=True, timeout=120
    )  # warm the job manager
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        raw_ok = sum(pool.map(raw_one, range(count)))
    raw_rate = raw_ok / (time.perf_counter() - began)
    # the adapter: submit (two-phase) + commit, 4 helpers
    options = {
        "proxy": values["X509_USER_PROXY"],
        "cert_dir": values["X509_CERT_DIR"],
        "port_range": values["GLOBUS_TCP_PORT_RANGE"],
        "parallel": 4,
    }
    adapter = _adapter("bench_gram", "gram", options, contact, work / "gram")
    try:
        adapter.submit(_specs(1, "warm"))  # helpers started, GASS server up
        say(f"gram adapter x{count} (request + commit), 4 helpers")
        began = time.perf_counter()
        outcomes = adapter.submit(_specs(count, "g"))
        recorded = {o.site_id: f"g{i}" for i, o in enumerate(outcomes) if isinstance(o, Submitted)}
        adapter.commit(recorded)
        ours = len(recorded) / (time.perf_counter() - began)
    finally:
        adapter.close()
        stop_gass_servers([work / "gram"])
    return [
        against(
            "factory gram submissions (adapter, 2-phase)",
            ours,
            raw_rate,
            "raw globusrun -b, 4 parallel",
            count,
        )
    ]


def slurm(count: int, work: Path) -> list[Result]:
    values = _site("slurm")
    env = {**os.environ, "SLURM_CONF": values["SLURM_CONF"]}
    script = work / "raw.sh"
    script.write_text(QUICK_SCRIPT)
    say(f"raw sbatch x{count}")
    began = time.perf_counter()
    for i in range(count):
        subprocess.run(
            ["sbatch", "--parsable", f"--job-name=raw{i}", f"--output={work}/raw-%j.out", str(script)],
            env=env,
            capture_output=True,
            check=True,
        )
    raw_rate = count / (time.perf_counter() - began)
    adapter = _adapter("bench_slurm", "slurm", {"slurm_conf": values["SLURM_CONF"]}, "debug", work / "slurm")
    say(f"slurm adapter x{count}")
    began = time.perf_counter()
    outcomes = adapter.submit(_specs(count, "s"))
    ours = sum(isinstance(o, Submitted) for o in outcomes) / (time.perf_counter() - began)
    subprocess.run(
        [
            "scancel",
            "--name",
            ",".join([f"raw{i}" for i in range(count)] + [f"updraft_bench_s{i}" for i in range(count)]),
        ],
        env=env,
        capture_output=True,
    )
    return [against("factory slurm submissions (adapter)", ours, raw_rate, "raw sbatch loop", count)]


def run(quick: bool) -> list[Result]:
    if os.geteuid() != 0:
        say("factory benchmarks need root (real Slurm and GRAM5 sites): skipped")
        return []
    count = 10 if quick else 40
    out: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="updraft-factory-bench-") as directory:
        work = Path(directory)
        out += gram(count, work)
        out += slurm(count, work)
    return out
