"""The whole factory path through real batch systems: request -> glidein at the site -> pilot -> user job."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from factory.adapters.gram import stop_gass_servers
from tests.support.factories import QUICK_PILOT, FactorySetup, cycle_until, wait_for
from tests.support.pools import RunningPool
from tests.support.sites import run_site_script


def site_entry(
    name: str, gridtype: str, gatekeeper: str, site: str, options: dict[str, object], **overrides: object
) -> dict[str, object]:
    """An entry at a real site for fe1, with quick pilots."""
    entry: dict[str, object] = {
        "name": name,
        "gridtype": gridtype,
        "gatekeeper": gatekeeper,
        "attributes": {
            "GLIDEIN_Site": site,
            "GLIDEIN_CPUS": 1,
            "GLIDEIN_MaxMemMBs": 500,
            "GLIDEIN_Max_Walltime": 600,
        },
        "allowed_frontends": ["fe1"],
        "pilot": dict(QUICK_PILOT),
        "options": options,
    }
    entry.update(overrides)
    return entry


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
    entry = site_entry(
        "Slurm_debug", "slurm", "debug", site, {"slurm_conf": slurm_site["SLURM_CONF"]},
        submit_extras="--comment=updraft-{{ GLIDEIN_Site }}",
    )  # fmt: skip
    run_one_job_through(setup, pool, workdir, entry, site)


def gram_entry(
    site: str, values: dict[str, str], proxy: str | None = None, **overrides: object
) -> dict[str, object]:
    options = {
        "proxy": proxy or values["X509_USER_PROXY"],
        "cert_dir": values["X509_CERT_DIR"],
        "port_range": values["GLOBUS_TCP_PORT_RANGE"],
    }
    return site_entry("GRAM_fork", "gram", values["GRAM_CONTACT"], site, options, **overrides)


def test_gram_entry_runs_a_users_job(
    setup: FactorySetup, pool: RunningPool, workdir: Path, gram_site: dict[str, str]
) -> None:
    site = f"{setup.name}-GRAM"
    try:
        run_one_job_through(setup, pool, workdir, gram_entry(site, gram_site), site)
    finally:
        stop_gass_servers(setup.state_dir.glob("entries/*"))


def test_gram_proxy_renewal_reaches_the_job_manager(
    setup: FactorySetup, pool: RunningPool, gram_site: dict[str, str]
) -> None:
    proxy = setup.copy_proxy(gram_site["X509_USER_PROXY"])
    site = f"{setup.name}-GRAMcred"
    pilot = dict(QUICK_PILOT, idle_timeout_s=120)
    setup.entries = [gram_entry(site, gram_site, str(proxy), pilot=pilot)]
    factory = setup.factory(credential={"proxy": str(proxy)})
    try:
        factory.cycle()
        glidein = setup.one_running(factory, "GRAM_fork")
        first = glidein.credential
        assert first  # the proxy it was submitted with
        renewed = run_site_script("gram", "proxy", "24:00")
        proxy.write_bytes(Path(renewed["X509_USER_PROXY"]).read_bytes())
        cycle_until(
            factory, lambda: factory.journal.get(glidein.glidein_id).credential not in ("", first), timeout=60
        )
        assert factory.totals[("GRAM_fork", "credential_renewed")] >= 1
        assert not factory.health["GRAM_fork"].credential_failures
    finally:
        factory.drain(60)
        stop_gass_servers(setup.state_dir.glob("entries/*"))


@pytest.mark.parametrize("point", ["factory.after_site_submit", "factory.before_commit"])
def test_gram_two_phase_commit_survives_a_crash(
    setup: FactorySetup, pool: RunningPool, gram_site: dict[str, str], point: str
) -> None:
    """Crash after GRAM took the request but before the journal had it: the request is never committed
    and expires.  Crash after the journal had it but before the commit: the restarted factory commits it."""
    site = f"{setup.name}-GRAM2pc"
    # a glidein with no job to run: it ends (and leaves its record) soon after it starts
    pilot = dict(QUICK_PILOT, idle_timeout_s=2)
    entry = gram_entry(site, gram_site, pacing={"cluster_size": 1, "max_per_cycle": 1}, pilot=pilot)
    entry["options"] = {**entry["options"], "two_phase_s": 6}
    setup.entries = [entry]
    setup.write()
    try:
        crashing = setup.spawn(UPDRAFT_FAILPOINTS=f"{point}=exit@1")
        setup.wait_started()
        setup.request("GRAM_fork", idle=1, max_glideins=1)
        assert crashing.wait(timeout=60) == 137, setup.log()
        journal = setup.journal()
        (row,) = journal.recent(0, "GRAM_fork")
        journal.close()
        if point == "factory.after_site_submit":
            assert row.state.value == "unsubmitted" and row.site_id is None
            time.sleep(7)  # the job manager drops the uncommitted request
        else:
            assert row.state.value == "queued" and row.site_id
        setup.spawn()

        def ended_rows() -> list:
            journal = setup.journal()
            try:
                rows = journal.recent(0, "GRAM_fork")
                return rows if any(g.record for g in rows) else []
            finally:
                journal.close()

        rows = wait_for(ended_rows, timeout=120, what="a glidein to run and end")
        ran = [g for g in rows if g.record]
        assert len(ran) == 1
        if point == "factory.after_site_submit":  # the uncommitted request never ran; a new glidein did
            first = next(g for g in rows if g.glidein_id == row.glidein_id)
            assert first.state.value == "failed" and "never reached the site" in first.reason
            assert (
                not (setup.state_dir / "entries" / "GRAM_fork" / row.glidein_id / "stdout").exists()
                or first.record is None
            )
            assert ran[0].glidein_id != row.glidein_id
        else:  # the very glidein of the crash ran, committed by the restarted factory
            assert ran[0].glidein_id == row.glidein_id
            # no duplicate: any other glidein is the standing request's next one, made after it ended
            assert all(g.created >= (ran[0].ended or 0) for g in rows if g.glidein_id != row.glidein_id), rows
    finally:
        stop_gass_servers(setup.state_dir.glob("entries/*"))


def arc_entry(
    site: str, values: dict[str, str], proxy: str | None = None, **overrides: object
) -> dict[str, object]:
    options = {
        "proxy": proxy or values["X509_USER_PROXY"],
        "ca": values["ARC_CA"],
        "queue": values["ARC_QUEUE"],
    }
    return site_entry("ARC_slurm", "arc", values["ARC_URL"], site, options, **overrides)


def test_arc_entry_runs_a_users_job(
    setup: FactorySetup, pool: RunningPool, workdir: Path, arc_site: dict[str, str]
) -> None:
    site = f"{setup.name}-ARC"
    run_one_job_through(setup, pool, workdir, arc_entry(site, arc_site), site)


def test_arc_delegation_is_renewed_with_the_proxy(
    setup: FactorySetup, pool: RunningPool, arc_site: dict[str, str]
) -> None:
    proxy = setup.copy_proxy(arc_site["X509_USER_PROXY"])
    site = f"{setup.name}-ARCcred"
    setup.entries = [arc_entry(site, arc_site, str(proxy), pilot=dict(QUICK_PILOT, idle_timeout_s=120))]
    factory = setup.factory(credential={"proxy": str(proxy)})
    try:
        factory.cycle()
        glidein = setup.one_running(factory, "ARC_slurm")
        adapter = factory.adapters["ARC_slurm"]
        delegation_id = adapter.delegation()
        before = adapter.request("POST", f"/delegations/{delegation_id}", params={"action": "get"}).text
        renewed = run_site_script("arc", "proxy", "24h")
        proxy.write_bytes(Path(renewed["X509_USER_PROXY"]).read_bytes())
        cycle_until(
            factory,
            lambda: factory.journal.get(glidein.glidein_id).credential != glidein.credential,
            timeout=60,
        )
        after = adapter.request("POST", f"/delegations/{delegation_id}", params={"action": "get"}).text
        assert before != after  # the CE holds a new delegated proxy for the running glidein
        assert not factory.health["ARC_slurm"].credential_failures
    finally:
        factory.drain(60)


def cream_entry(
    site: str, values: dict[str, str], proxy: str | None = None, **overrides: object
) -> dict[str, object]:
    options = {"proxy": proxy or values["X509_USER_PROXY"], "ca": values["CREAM_CA"]}
    overrides.setdefault("submit_extras", 'VirtualOrganisation = "{{ GLIDEIN_Site }}"')
    return site_entry("CREAM_standin", "cream", values["CREAM_URL"], site, options, **overrides)


def test_cream_entry_runs_a_users_job(
    setup: FactorySetup, pool: RunningPool, workdir: Path, cream_site: dict[str, str]
) -> None:
    site = f"{setup.name}-CREAM"
    run_one_job_through(setup, pool, workdir, cream_entry(site, cream_site), site)


def test_cream_lease_expiry_removes_the_jobs_of_a_silent_factory(
    setup: FactorySetup, pool: RunningPool, cream_site: dict[str, str]
) -> None:
    site = f"{setup.name}-CREAMlease"
    entry = cream_entry(site, cream_site, pilot=dict(QUICK_PILOT, idle_timeout_s=300))
    entry["options"] = {**entry["options"], "lease_s": 4}
    entry["stale"] = {"missing_s": 0}
    setup.entries = [entry]
    factory = setup.factory()
    factory.cycle()
    glidein = setup.one_running(factory, "CREAM_standin")
    setup.request("CREAM_standin", idle=0, max_glideins=0)
    time.sleep(6)  # the factory is silent: nobody renews the lease, the CE cancels and purges the job
    adapter = factory.adapters["CREAM_standin"]
    assert adapter.status([glidein.site_id]) == {}
    cycle_until(factory, lambda: factory.journal.get(glidein.glidein_id).state.value == "lost", timeout=30)


def test_cream_held_glideins_are_resumed_and_proxies_renewed(
    setup: FactorySetup, pool: RunningPool, cream_site: dict[str, str]
) -> None:
    from tests.support.proxies import GridCredentials

    proxy = setup.copy_proxy(cream_site["X509_USER_PROXY"])
    site = f"{setup.name}-CREAMheld"
    setup.entries = [
        cream_entry(
            site,
            cream_site,
            str(proxy),
            pilot=dict(QUICK_PILOT, idle_timeout_s=120),
            held={"recoverable": [""], "min_release_time_s": 0},  # CREAM gives no hold code: any reason
        )
    ]
    factory = setup.factory(credential={"proxy": str(proxy)})
    try:
        factory.cycle()
        glidein = setup.one_running(factory, "CREAM_standin", native="REALLY-RUNNING")
        adapter = factory.adapters["CREAM_standin"]
        adapter.jobs("JobSuspend", [glidein.site_id])  # the site's admin holds it
        cycle_until(factory, lambda: factory.journal.get(glidein.glidein_id).releases == 1, timeout=30)
        assert adapter.status([glidein.site_id])[glidein.site_id].native == "REALLY-RUNNING"
        # the factory's proxy is renewed: the CE replaces the running job's delegated proxy
        job_proxy = next(Path(cream_site["GRID_DIR"]).parent.glob(f"ce/jobs/{glidein.site_id}/user.proxy"))
        before = job_proxy.read_bytes()
        GridCredentials(Path(cream_site["GRID_DIR"]), "").new_proxy(24, proxy)
        cycle_until(factory, lambda: job_proxy.read_bytes() != before, timeout=30)
        assert not factory.health["CREAM_standin"].credential_failures
    finally:
        factory.drain(60)
