"""The frontend against a real pool and a real factory: requests, tokens, limits, removal, missing data."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from factory.glideins import GlideinState
from factory.loop import Factory
from frontend.policy import EntryCounts
from tests.support.factories import FactorySetup, cycle_until, local_entry, wait_for
from tests.support.frontends import FrontendSetup, both_cycle, group
from tests.support.pools import RunningPool
from updraft.core import protocol
from updraft.core.client import token_claims
from updraft.core.protocol import Scope
from updraft.core.sealed import open_sealed


def sites(factory_setup: FactorySetup, frontend: str, *names: str, **overrides: object) -> None:
    factory_setup.entries = [
        local_entry(f"{n}_local", f"{factory_setup.name}-{n}", allowed_frontends=[frontend], **overrides)
        for n in names
    ]


def paused_site(factory_setup: FactorySetup, frontend: str) -> Factory:
    """One entry, A_local, whose glideins stay queued: the requests are all there is to see."""
    sites(factory_setup, frontend, "A", options={"paused": True})
    factory = factory_setup.factory()
    factory.cycle()
    return factory


def job_file(workdir: Path, desired: str, count: int, extra: str = "") -> str:
    (workdir / "work.sh").write_text("#!/bin/sh\nsleep 1\necho ran at $1\n")
    (workdir / "work.sh").chmod(0o755)
    return (
        f'executable = work.sh\narguments = $$(GLIDEIN_Site)\noutput = out.$(Cluster).$(Process)\n+DESIRED_Sites = "{desired}"\n'
        f"requirements = stringListMember(GLIDEIN_Site, DESIRED_Sites)\n{extra}queue {count}\n"
    )


def test_requests_go_where_the_jobs_want_to_run_and_the_jobs_run(
    factory_setup: FactorySetup, frontend_setup: FrontendSetup, pool: RunningPool, workdir: Path
) -> None:
    sites(factory_setup, frontend_setup.name, "A", "B")
    factory = factory_setup.factory()
    factory.cycle()
    frontend = frontend_setup.frontend(metrics_port=0)
    site_a = f"{factory_setup.name}-A"
    cluster = pool.submit(job_file(workdir, site_a, 3), "uma", workdir)
    records = frontend.cycle()["main"]
    a, b = records.entries[f"A_local@{factory_setup.name}"], records.entries[f"B_local@{factory_setup.name}"]
    assert (a.counts.idle_jobs, a.decision.idle, a.decision.max_run) == (3, 3, int(3 * 1.15 + 1))
    assert (b.counts.idle_jobs, b.decision.idle) == (0, 0)

    # the request reached the factory with a pilot token that only that factory can open
    fe_client = pool.client(frontend_setup.name, Scope.FRONTEND)
    (ad,) = fe_client.query_ads(
        "glideclient", f'ReqEntry == "A_local" && FrontendName == "{frontend_setup.name}"'
    )
    assert protocol.parse_literal(ad[protocol.ATTR_REQ_IDLE]) == 3
    token = open_sealed(
        factory.keys.open_key(str(protocol.parse_literal(ad[protocol.ATTR_REQ_ENC_KEY]))),
        str(protocol.parse_literal(ad[protocol.ENC_PARAM_PREFIX + "Token"])),
    )
    claims = token_claims(token)
    assert claims["scope"] == "pilot" and claims["bnd"] == {"frontend": frontend_setup.name, "group": "main"}
    assert claims["exp"] - claims["iat"] <= 6 * 3600

    def done() -> bool:
        frontend.cycle()
        return pool.job(cluster, "JobStatus", user="uma", history=True).split() == ["4", "4", "4"]

    cycle_until(factory, done, timeout=90)
    assert {(workdir / f"out.{cluster}.{i}").read_text().strip() for i in range(3)} == {f"ran at {site_a}"}
    assert all(g.entry == "A_local" for g in factory.journal.recent(0))
    # the frontend's view, for monitoring
    (resource,) = fe_client.query_ads(
        "glideresource", f'ReqEntry == "A_local" && FrontendName == "{frontend_setup.name}"'
    )
    assert "GlideClientMonitorRequestedIdle" in resource and "GlideClientMonitorLimitsTriggered" in resource
    # and for Prometheus
    assert frontend.metrics_server is not None
    with urllib.request.urlopen(frontend.metrics_server.url, timeout=10) as answer:
        text = answer.read().decode()
    assert (
        f'updraft_frontend_requested_idle{{group="main",entry="A_local@{factory_setup.name}",site="{site_a}"}}'
        in text
    )
    assert "updraft_frontend_cycles_total" in text


def test_limits_from_the_config_cap_the_request_and_say_so(
    factory_setup: FactorySetup, frontend_setup: FrontendSetup, pool: RunningPool, workdir: Path
) -> None:
    paused_site(factory_setup, frontend_setup.name)
    frontend_setup.groups = [
        group(
            limits={"running_glideins_per_entry": {"max": 4}, "idle_slots_per_entry": {"max": 100, "curb": 3}}
        )
    ]
    frontend = frontend_setup.frontend()
    pool.submit(job_file(workdir, f"{factory_setup.name}-A", 10), "uma", workdir)
    both_cycle(frontend, factory_setup)
    record = frontend.cycle()["main"].entries[f"A_local@{factory_setup.name}"]
    assert record.counts.glideins_queued == 4  # asked for 10, the per-entry head-room gave 4
    # as in glideinWMS, the frontend counts registered slots (none yet): it asks for the same 4,
    # and the factory, which subtracts what it has queued, sends no more
    assert record.decision.idle == 4 and record.decision.headroom["TotalGlideinsPerEntry"] == 4
    both_cycle(frontend, factory_setup)
    assert frontend.cycle()["main"].entries[f"A_local@{factory_setup.name}"].counts.glideins_queued == 4
    listing = frontend_setup.cli("explain", "--entry", "A_local")
    assert listing.returncode == 0, listing.stderr
    # the room left is named by the knob that sets it (glideinWMS's name beside it), and the
    # request's own cap is said apart: idle_slots_per_entry is not idle_glideins_per_entry
    assert "headroom: running_glideins_per_entry.max 4 (TotalGlideinsPerEntry)" in listing.stdout
    assert "idle_slots_per_entry.max 100 (IdleGlideinsPerEntry)" in listing.stdout
    assert "the request itself: at most idle_glideins_per_entry.max 100 (reserve 5)" in listing.stdout


def test_an_entry_advertised_in_a_factorys_name_by_another_is_asked_for_nothing(
    factory_setup: FactorySetup, frontend_setup: FrontendSetup, pool: RunningPool, workdir: Path
) -> None:
    """Any factory token may advertise a glidefactory ad naming another factory, with a key of its
    own: a frontend that believed it would seal its pilot token to that key."""
    paused_site(factory_setup, frontend_setup.name)
    fac = factory_setup.name
    reader = pool.client(frontend_setup.name, Scope.FRONTEND)
    (real,) = reader.query_ads(protocol.AdType.GlideFactory.value, f"FactoryName == {protocol.quote(fac)}")
    forged = dict(real, Name=protocol.quote(f"Z_local@{fac}"), EntryName=protocol.quote("Z_local"))
    assert (
        pool.client("rogue-factory", Scope.FACTORY).advertise(protocol.AdType.GlideFactory.value, [forged])
        == 1
    )
    pool.submit(job_file(workdir, f"{fac}-A", 2), "uma", workdir)
    frontend = frontend_setup.frontend()
    entries = frontend.cycle()["main"].entries
    assert f"A_local@{fac}" in entries and f"Z_local@{fac}" not in entries
    assert "updraft_frontend_forged_factory_ads 1" in frontend.metrics()
    asked = reader.query_ads(protocol.AdType.GlideClient.value, f"ReqFactory == {protocol.quote(fac)}")
    assert {protocol.ad_value(ad, protocol.ATTR_REQ_ENTRY) for ad in asked} == {"A_local"}


def test_removal_needs_quiet_cycles_with_complete_data(
    factory_setup: FactorySetup, frontend_setup: FrontendSetup, pool: RunningPool, workdir: Path
) -> None:
    factory = paused_site(factory_setup, frontend_setup.name)
    frontend_setup.groups = [group(removal={"policy": "IDLE", "wait_cycles": 2})]
    frontend = frontend_setup.frontend()
    cluster = pool.submit(job_file(workdir, f"{factory_setup.name}-A", 3), "uma", workdir)
    both_cycle(frontend, factory_setup)
    assert len(factory.journal.live("A_local")) == 3
    assert pool.run("condor_rm", cluster, user="uma").returncode == 0  # the demand goes away

    key = f"A_local@{factory_setup.name}"
    frontend.cycle()
    assert frontend.records["main"].entries[key].quiet_cycles == 1
    # the pool stops answering: no data is not "no demand"
    pool.kill()
    records = frontend.cycle()
    assert not records["main"].complete and records["main"].entries[key].quiet_cycles == 1
    assert records["main"].entries[key].decision.remove == "NO"
    pool.process.start()  # wait for it, as restart() does
    factory.cycle()
    factory.wait_idle()
    records = frontend.cycle()
    assert records["main"].complete and records["main"].entries[key].decision.remove == "IDLE"
    cycle_until(factory, lambda: not factory.journal.live("A_local"), timeout=30)
    assert all(g.state == GlideinState.REMOVED for g in factory.journal.recent(0, "A_local"))


def test_counts_are_proportional_and_multicore_aware(
    factory_setup: FactorySetup, frontend_setup: FrontendSetup, pool: RunningPool, workdir: Path
) -> None:
    factory_setup.entries = [
        local_entry("One_local", f"{factory_setup.name}-One", allowed_frontends=[frontend_setup.name], options={"paused": True}),
        local_entry(
            "Four_local", f"{factory_setup.name}-Four", allowed_frontends=[frontend_setup.name], options={"paused": True},
            attributes={"GLIDEIN_Site": f"{factory_setup.name}-Four", "GLIDEIN_CPUS": 4, "GLIDEIN_Max_Walltime": 600},
        ),
    ]  # fmt: skip
    factory_setup.factory().cycle()
    frontend = frontend_setup.frontend()
    both_sites = f"{factory_setup.name}-One,{factory_setup.name}-Four"
    pool.submit(job_file(workdir, both_sites, 8), "uma", workdir)  # 1-core jobs, two entries: 4 to each
    pool.submit(
        job_file(workdir, both_sites, 2, "request_cpus = 2\n"), "uma", workdir, name="big.sub"
    )  # too big for One
    entries = frontend.cycle()["main"].entries
    one, four = (
        entries[f"One_local@{factory_setup.name}"].counts,
        entries[f"Four_local@{factory_setup.name}"].counts,
    )
    assert one.idle_jobs == 4.0  # 8 jobs / 2 entries, 1 core on 1-core pilots
    assert four.idle_jobs == 4 * (1 / 4) + 2 * (
        2 / 4
    )  # 4 one-core jobs on 4-core pilots, and both 2-core jobs
    assert isinstance(one, EntryCounts)


def test_frontend_process_reloads_on_sighup_and_refuses_a_bad_file(
    factory_setup: FactorySetup, frontend_setup: FrontendSetup, pool: RunningPool
) -> None:
    paused_site(factory_setup, frontend_setup.name)
    frontend_setup.write()
    frontend_setup.spawn()
    wait_for(lambda: (frontend_setup.state_dir / "explain.json").exists(), timeout=30, what="the first cycle")
    good = frontend_setup.config_path.read_text()
    frontend_setup.config_path.write_text(good.replace("ramp_up_attenuation: 1", "ramp_up_atenuation: 1"))
    refused = frontend_setup.cli("reconfig")
    assert (
        refused.returncode == 1
        and "frontend.yaml:" in refused.stderr
        and "did you mean 'ramp_up_attenuation'" in refused.stderr
    )
    frontend_setup.config_path.write_text(good.replace("ramp_up_attenuation: 1", "ramp_up_attenuation: 2"))
    applied = frontend_setup.cli("reconfig")
    assert applied.returncode == 0 and "reloaded" in applied.stdout
    time.sleep(1.5)
    assert frontend_setup.processes[0].poll() is None
