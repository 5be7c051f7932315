"""The policy simulator: conservation of jobs, the real request code, overflow, inputs, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from frontend.config import ConfigError, load_frontend_config
from frontend.policy import decide
from frontend.simulate import simulate
from frontend.simulate_inputs import load_sites, load_workload
from frontend.simulate_report import Report
from updraft.core.errors import UpdraftError

REPO = Path(__file__).parents[3]
BIN = Path(sys.executable).parent

FRONTEND = """\
name: fe1
groups:
  - name: main
    job_constraint: DESIRED_Sites isnt undefined
    match_expr: stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)
    ramp_up_attenuation: 1
    removal: {policy: IDLE, wait_cycles: 2}
"""
SITES = """\
sites:
  - {name: A, cores: 160, pilot_cores: 4, queue_wait_s: 2m, walltime_s: 6h}
  - {name: B, cores: 256, pilot_cores: 8, queue_wait_s: 5m, validation_failure_rate: 0.1}
generate: {count: 3, prefix: G, cores: [100, 300], like: {pilot_cores: 2}}
"""
WORKLOAD = """\
batches:
  - {name: a-only, count: 2000, runtime_s: 20m, desired_sites: [A], arrival: {over: 1h}}
  - {name: spread, count: 3000, runtime_s: 30m, runtime: uniform, desired_sites: {random: 2, choices: 4}, arrival: {start: 30m, over: 1h}}
  - {name: wide, count: 40, cores: 4, runtime_s: 1h, runtime: fixed, desired_sites: [A, B], allow_overflow: false}
"""


def inputs(
    tmp_path: Path, frontend: str = FRONTEND, sites: str = SITES, workload: str = WORKLOAD
) -> tuple[Path, Path, Path]:
    paths = tmp_path / "fe.yaml", tmp_path / "sites.yaml", tmp_path / "work.yaml"
    for path, text in zip(paths, (frontend, sites, workload), strict=True):
        path.write_text(text)
    return paths


def run(tmp_path: Path, hours: float = 8, **texts: str) -> Report:
    fe, sites, work = inputs(tmp_path, **texts)
    return simulate(
        load_frontend_config(fe),
        load_sites(sites),
        load_workload(work),
        hours=hours,
        cycle_s=60,
        seed=3,  # any seed; this one gives B (10 % failing validation) its share of failures
    )


def test_every_job_is_accounted_for_and_pilots_come_and_go(tmp_path: Path) -> None:
    report = run(tmp_path)
    last = report.samples[-1]
    assert report.jobs == 5040
    assert last.jobs_idle + last.jobs_running + last.jobs_done == report.jobs  # no job lost or made up
    assert report.jobs_done > 4900 and report.jobs_never_started == 0
    assert 0 <= report.wait_s["p50"] <= report.wait_s["p90"] <= report.wait_s["p99"] <= report.wait_s["max"]
    assert report.pilots_failed > 0 and report.pilots_started > report.pilots_failed
    assert 0 < report.busy_hours <= report.pilot_hours and 0 < report.efficiency < 1
    assert max(s.pilots_running for s in report.samples) > 10 and last.requested_idle == 0
    assert report.to_dict()["timeline"][0]["time"] == 0.0


def test_same_seed_same_answer(tmp_path: Path) -> None:
    first, second = run(tmp_path, hours=3), run(tmp_path, hours=3)
    assert first.to_dict() | {"wall_s": 0} == second.to_dict() | {"wall_s": 0}


def test_the_frontends_own_limits_drive_the_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return decide(*args, **kwargs)

    monkeypatch.setattr("frontend.planner.decide", counting)  # the planner's own decide is what runs
    capped = FRONTEND + "    limits: {idle_glideins_per_entry: {max: 2, reserve: 0}}\n"
    report = run(tmp_path, hours=2, frontend=capped)
    assert calls and report.max_requested_idle <= 2 * 5  # five entries, at most two each
    assert run(tmp_path, hours=2).max_requested_idle > 10


def test_overflow_widens_after_the_timeout_within_the_bound(tmp_path: Path) -> None:
    overflowing = FRONTEND + "    overflow: {after: 30m, sites: {A: [B]}, max_per_home_site: 300}\n"
    report = run(tmp_path, hours=6, frontend=overflowing)
    assert report.overflowed_jobs > 0 and set(report.overflowed_by_home) == {"A"}
    assert max(s.overflowed for s in report.samples) <= 300
    assert all(s.overflowed == 0 for s in report.samples if s.time < 1800)
    assert run(tmp_path, hours=6).overflowed_jobs == 0


@pytest.mark.parametrize(
    "which, text, message",
    [
        (
            "sites",
            "sites:\n  - {name: A, cores: lots}\n",
            "sites.yaml:2: sites[0].cores: expected a whole number",
        ),
        (
            "sites",
            "sites:\n  - {name: A, cores: 4, queue_wait_s: soon}\n",
            "sites.yaml:2: sites[0].queue_wait_s",
        ),
        ("sites", "sites: []\n", "no sites"),
        (
            "sites",
            "generate: {count: 2, like: {pilot_cores: 0}}\n",
            "sites.yaml:1: generate.like.pilot_cores: must be at least 1",
        ),
        ("sites", "sites:\n  - {name: A, cores: 4}\n  - {name: A, cores: 8}\n", "site names repeat: ['A']"),
        (
            "workload",
            "batches:\n  - {name: x, count: 5, runtime: normal}\n",
            "work.yaml:2: batches[0].runtime: exponential, fixed or uniform",
        ),
        ("workload", "batches:\n  - {name: x, count: 5, desired_sites: A}\n", "batches[0].desired_sites"),
        ("workload", "batches:\n  - {name: x, count: 5, arival: {}}\n", "did you mean 'arrival'"),
    ],
)
def test_bad_inputs_name_the_file_line_and_field(tmp_path: Path, which: str, text: str, message: str) -> None:
    _fe, sites, work = inputs(tmp_path, **{which: text})
    with pytest.raises(ConfigError) as caught:
        load_sites(sites)
        load_workload(work)
    assert message in str(caught.value)


def test_a_batch_no_group_takes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UpdraftError, match="batch free: no group of the frontend takes its jobs"):
        run(tmp_path, workload="batches:\n  - {name: free, count: 5}\n")


def test_cli_compare_and_json(tmp_path: Path) -> None:
    fe, sites, work = inputs(tmp_path)
    eager = tmp_path / "eager.yaml"
    eager.write_text(
        FRONTEND.replace(
            "ramp_up_attenuation: 1",
            "ramp_up_attenuation: 1\n    limits: {idle_glideins_per_entry: {max: 1}}",
        )
    )
    base = [
        str(BIN / "updraft"),
        "frontend",
        "simulate",
        "--config",
        str(fe),
        "--sites",
        str(sites),
        "--workload",
        str(work),
        "--hours",
        "2",
    ]
    shown = subprocess.run([*base, "--compare", str(eager)], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert (
        "fe.yaml" in shown.stdout
        and "eager.yaml" in shown.stdout
        and "job wait p50 / p90 / p99 / max" in shown.stdout
    )
    assert "simulated 1/2 h" in shown.stderr  # progress goes to stderr
    data = json.loads(
        subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=120, check=True).stdout
    )
    assert data["config"]["jobs"] == 5040 and data["config"]["timeline"]


def test_the_shipped_examples_load() -> None:
    sites = load_sites(REPO / "config" / "simulate" / "sites.yaml")
    assert len(sites) == 100 and 450_000 <= sum(s.cores for s in sites) <= 550_000
    workload = load_workload(REPO / "config" / "simulate" / "workload.yaml")
    assert sum(b.count for b in workload.batches) == 1_000_000
    load_frontend_config(REPO / "config" / "simulate" / "frontend-eager.yaml")
