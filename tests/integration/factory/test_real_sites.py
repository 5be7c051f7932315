"""The whole factory path through real batch systems: request -> glidein at the site -> pilot -> user job."""

from __future__ import annotations

from pathlib import Path

from tests.support.factories import QUICK_PILOT, FactorySetup, cycle_until
from tests.support.pools import RunningPool


def run_one_job_through(
    setup: FactorySetup, pool: RunningPool, workdir: Path, entry: dict[str, object], site: str
) -> None:
    setup.entries = [entry]
    factory = setup.factory()
    factory.cycle()
    (workdir / "where.sh").write_text("#!/bin/sh\necho ran at $1\n")
    (workdir / "where.sh").chmod(0o755)
    cluster = pool.submit(
        f'executable = where.sh\narguments = $$(GLIDEIN_Site)\noutput = where.out\nrequirements = GLIDEIN_Site == "{site}"\nqueue\n',
        "uma", workdir,
    )  # fmt: skip
    setup.request(str(entry["name"]), idle=1, max_glideins=1)
    cycle_until(
        factory, lambda: pool.job(f"{cluster}.0", "JobStatus", user="uma", history=True) == "4", timeout=120
    )
    assert (workdir / "where.out").read_text().strip() == f"ran at {site}"
    setup.request(str(entry["name"]), idle=0, max_glideins=0)
    ended = cycle_until(
        factory, lambda: [g for g in factory.journal.recent(0, str(entry["name"])) if g.cleaned], timeout=120
    )
    record = ended[0].record
    assert record is not None and record["status"] == "ok" and record["jobs"]["started"] == 1


def test_slurm_entry_runs_a_users_job(
    setup: FactorySetup, pool: RunningPool, workdir: Path, slurm_site: dict[str, str]
) -> None:
    site = f"{setup.name}-Slurm"
    entry = {
        "name": "Slurm_debug",
        "gridtype": "slurm",
        "gatekeeper": "debug",
        "attributes": {
            "GLIDEIN_Site": site,
            "GLIDEIN_CPUS": 1,
            "GLIDEIN_MaxMemMBs": 500,
            "GLIDEIN_Max_Walltime": 600,
        },
        "submit_extras": "--comment=updraft-{{ GLIDEIN_Site }}",
        "allowed_frontends": ["fe1"],
        "pilot": dict(QUICK_PILOT),
        "options": {"slurm_conf": slurm_site["SLURM_CONF"]},
    }
    run_one_job_through(setup, pool, workdir, entry, site)
