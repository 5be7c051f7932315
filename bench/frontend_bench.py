"""Frontend benchmarks (issue 5): one cycle over 1,000,000 idle jobs and 1,000 entries; the simulator.

The cycle is the live one: a real pool holding the jobs and the factories' ads, the
frontend's parallel queries (the pool's job summary), matching, the request math and the
advertising of 1,000 glideclient and glideresource ads with sealed pilot tokens.  There is
no anchor: glideinWMS's frontend cannot run here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from bench.common import ROOT, Result, result, say, timer
from frontend.config import load_frontend_config
from frontend.loop import Frontend
from updraft.core import payloads, protocol
from updraft.core.sealed import KEY_TYPE, KeyPair
from userpool.process import PoolProcess


def entry_ads(count: int, keys: KeyPair, factories: int = 4) -> list[dict[str, str]]:
    """Glidefactory ads as real factories write them: 1,000 entries over a few factories."""
    ads = []
    for index in range(count):
        factory = f"factory{index % factories}"
        name = f"Entry{index:04d}"
        ads.append({
            protocol.ATTR_NAME: protocol.literal(f"{name}@{factory}"), protocol.ATTR_FACTORY_NAME: protocol.literal(factory),
            protocol.ATTR_ENTRY_NAME: protocol.literal(name), protocol.ATTR_GLIDEIN_SITE: protocol.literal(f"Site{index // 2:03d}"),
            protocol.ATTR_IN_DOWNTIME: "false", protocol.ATTR_ALLOWED_FRONTENDS: protocol.literal("*"),
            protocol.ATTR_PUBKEY_ID: protocol.literal(keys.key_id), protocol.ATTR_PUBKEY_TYPE: protocol.literal(KEY_TYPE),
            protocol.ATTR_PUBKEY_VALUE: protocol.literal(keys.public_pem), "GLIDEIN_CPUS": str(8 if index % 3 else 1),
            "GLIDEIN_Supported_VOs": protocol.literal("CMS,OSG" if index % 5 else "OSG"), protocol.ATTR_LIFETIME: "3600",
        })  # fmt: skip
    return ads


def cycle(work: Path, jobs: int, entries: int) -> list[Result]:
    with PoolProcess(work / "pool", ["--synchronous", "NORMAL"]) as pool:
        client = pool.client()
        clusters = 200
        per_cluster = jobs // clusters
        say(f"frontend: filling the queue with {per_cluster * clusters:,} idle jobs in {clusters} clusters")
        for index in range(clusters):
            sites = ",".join(f"Site{(index * 7 + k) % (entries // 2):03d}" for k in range(1 + index % 4))
            ad = {
                "Cmd": '"/bin/sleep"', "Args": '"60"', "Owner": protocol.literal(f"user{index % 20}"),
                "RequestCpus": str(1 if index % 10 else 4), protocol.ATTR_DESIRED_SITES: protocol.literal(sites),
            }  # fmt: skip
            client.submit(payloads.SubmitRequest(client.reserve_cluster(), ad, [{}] * per_cluster))
        keys = KeyPair.load_or_create(work / "factory.key")
        client.advertise(protocol.AdType.GlideFactory.value, entry_ads(entries, keys), 3600)
        token = client.mint_token(payloads.TokenRequest("fe-bench", ["frontend"], 86400)).token
        (work / "fe.token").write_text(token)
        config = {
            "name": "fe-bench",
            "pool": {"url": pool.url, "token_file": str(work / "fe.token")},
            "state_dir": str(work / "state"),
            "query_timeout_s": 60,
            "groups": [{
                "name": "cms", "job_constraint": "DESIRED_Sites isnt undefined",
                "factory_constraint": 'stringListMember("CMS", GLIDEIN_Supported_VOs)',
                "match_expr": "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)",
                "overflow": {"after": "6h", "sites": "any"},
            }],
        }  # fmt: skip
        (work / "frontend.yaml").write_text(yaml.safe_dump(config))
        frontend = Frontend(load_frontend_config(work / "frontend.yaml"))
        frontend.start()
        try:
            say(f"frontend: one cycle over {jobs:,} idle jobs and {entries:,} entries (cold, then warm)")
            with timer() as cold:
                records = frontend.cycle()
            with timer() as warm:
                frontend.cycle()
            advertised = len(
                client.query_ads(
                    protocol.AdType.GlideClient.value, 'FrontendName == "fe-bench"', [protocol.ATTR_NAME]
                )
            )
        finally:
            frontend.stop()
        record = records["cms"]
        assert record.complete, record.errors
        usable = len(record.entries)
        idle = sum(r.counts.idle_jobs for r in record.entries.values())
        requested = sum(r.decision.idle for r in record.entries.values())
    assert advertised == usable, (advertised, usable, record.errors)
    notes = {
        "entries_usable": usable, "idle_jobs_counted_pilot_units": round(idle), "requested_idle": requested,
        "match_evaluations": record.match_evaluations, "glideclient_ads": advertised,
    }  # fmt: skip
    return [
        result(
            f"frontend cycle, {jobs:,} idle jobs x {entries:,} entries (cold)",
            cold[0],
            "s",
            "<= 5",
            notes=notes,
        ),
        result(f"frontend cycle, {jobs:,} idle jobs x {entries:,} entries (warm)", warm[0], "s", "<= 5"),
    ]


def simulation(quick: bool) -> list[Result]:
    from frontend.simulate import simulate
    from frontend.simulate_inputs import load_sites, load_workload

    config = load_frontend_config(ROOT / "config" / "simulate" / "frontend-eager.yaml")
    sites = load_sites(ROOT / "config" / "simulate" / "sites.yaml")
    workload = load_workload(ROOT / "config" / "simulate" / "workload.yaml")
    hours = 24.0
    if quick:
        for batch in workload.batches:
            batch.count //= 10
        hours = 6.0
    jobs = sum(b.count for b in workload.batches)
    say(
        f"frontend: simulating {hours:g} h of {jobs:,} jobs on {sum(s.cores for s in sites):,} cores at {len(sites)} sites"
    )
    report = simulate(config, sites, workload, hours=hours, cycle_s=60, seed=1)
    return [
        result(
            f"frontend simulate: {jobs:,} jobs, {sum(s.cores for s in sites):,} cores, {len(sites)} sites, {hours:g} h",
            report.wall_s, "s", "<= 300",
            notes={"jobs_done": report.jobs_done, "events": report.events, "wait_p50_s": report.wait_s.get("p50"), "efficiency": round(report.efficiency, 3)},
        )
    ]  # fmt: skip


def run(quick: bool = False) -> list[Result]:
    work = Path(tempfile.mkdtemp(prefix="updraft-bench-frontend-"))
    results = cycle(work, 100_000 if quick else 1_000_000, 1000)
    return results + simulation(quick)
