"""Overflow after a timeout, with the real pool and factory, and the xrootd read of an overflowed job."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.factories import FactorySetup, cycle_until, local_entry
from tests.support.frontends import FrontendSetup, group
from tests.support.pools import RunningPool
from tests.support.sites import running_site


@pytest.fixture(scope="session")
def xrootd() -> Iterator[dict[str, str]]:
    yield from running_site("xrootd", "xrootd")


def two_sites(factory_setup: FactorySetup, frontend: str, home_paused: bool = True) -> tuple[str, str]:
    home, other = f"{factory_setup.name}-Home", f"{factory_setup.name}-Other"
    factory_setup.entries = [
        local_entry("Home_local", home, allowed_frontends=[frontend], options={"paused": home_paused}),
        local_entry("Other_local", other, allowed_frontends=[frontend]),
    ]
    return home, other


def jobs_at(workdir: Path, home: str, count: int, extra: str = "", arguments: str = "") -> str:
    (workdir / "read.sh").write_text(
        "#!/bin/sh\n# $1: where it runs, $2: its home site, $3: its input at the home site's storage\n"
        'if [ "$1" = "$2" ]; then echo "local at $1"; exit 0; fi\n'
        'xrdcp -s -f "$3" input.dat && echo "read $(cat input.dat) from $3 at $1"\n'
    )
    (workdir / "read.sh").chmod(0o755)
    return (
        f"executable = read.sh\narguments = {arguments or '$$(GLIDEIN_Site) ' + home}\n"
        f'output = out.$(Cluster).$(Process)\n+DESIRED_Sites = "{home}"\n'
        f"requirements = stringListMember(GLIDEIN_Site, DESIRED_Sites)\n{extra}queue {count}\n"
    )


def test_jobs_idle_past_the_timeout_widen_to_the_overflow_sites_within_the_bound(
    factory_setup: FactorySetup, frontend_setup: FrontendSetup, pool: RunningPool, workdir: Path
) -> None:
    home, other = two_sites(factory_setup, frontend_setup.name)
    factory = factory_setup.factory()
    factory.cycle()
    frontend_setup.groups = [group(overflow={"after": 2, "sites": {home: [other]}, "max_per_home_site": 2})]
    frontend = frontend_setup.frontend()
    cluster = pool.submit(jobs_at(workdir, home, 3), "uma", workdir)
    kept = pool.submit(jobs_at(workdir, home, 1, "+AllowOverflow = False\n"), "uma", workdir, name="kept.sub")
    crab = pool.submit(
        jobs_at(workdir, home, 1, '+CMS_ALLOW_OVERFLOW = "False"\n'), "uma", workdir, name="crab.sub"
    )
    key = f"Other_local@{factory_setup.name}"

    records = frontend.cycle()  # too early: nothing moves
    assert records["main"].overflow is not None and not records["main"].overflow.widened
    assert records["main"].entries[key].counts.idle_jobs == 0
    time.sleep(2.5)
    records = frontend.cycle()
    report = records["main"].overflow
    assert report is not None
    assert report.widened == {f"{home},{other}": 2} and report.held_back == {home: 1}
    assert report.overflowing == {home: 2}
    states = pool.run(
        "condor_q", cluster, "-af", "Overflowed", "DESIRED_Sites", "DESIRED_Sites_Orig", user="uma"
    ).lines
    assert sorted(states) == sorted([f"true {home},{other} {home}"] * 2 + [f"undefined {home} undefined"])
    assert pool.job(f"{kept}.0", "DESIRED_Sites", "Overflowed", user="uma") == f"{home} undefined"
    assert pool.job(f"{crab}.0", "DESIRED_Sites", "Overflowed", user="uma") == f"{home} undefined"
    # CMS's own record of the route, for monitoring built on its names
    routed = pool.run(
        "condor_q", cluster, "-constraint", "Overflowed =?= true", "-af", "DESIRED_SITES_Diff", "RouteType",
        "HasBeenOverflowRouted", user="uma",
    ).lines  # fmt: skip
    assert routed == [f"{other} overflow true"] * 2
    # the widened jobs now ask for pilots at the overflow site, through the ordinary matching:
    # each matches both sites, so each counts one half at each
    assert records["main"].entries[key].counts.idle_jobs == 1.0
    assert records["main"].entries[key].decision.idle == 1
    events = [
        e
        for e in pool.client("uma").events(0, 10000)
        if e.type == "frontend_overflow" and e.details["home"] == home
    ]
    assert [e.details["jobs"] for e in events] == [2] and events[0].details["to"] == other
    assert events[0].source == f"frontend:{frontend_setup.name}"
    # the bound holds on the next cycles too, while the overflowed jobs have not finished
    time.sleep(0.5)
    again = frontend.cycle()["main"].overflow
    assert again is not None and not again.widened and again.held_back == {home: 1}


def test_an_overflowed_job_reads_its_input_from_the_home_sites_xrootd(
    xrootd: dict[str, str],
    factory_setup: FactorySetup,
    frontend_setup: FrontendSetup,
    pool: RunningPool,
    workdir: Path,
) -> None:
    home, other = two_sites(factory_setup, frontend_setup.name)
    name = f"input-{uuid.uuid4().hex[:8]}.dat"
    stored = Path(xrootd["XROOTD_STORE"]) / name
    stored.write_text("payload-42\n")
    stored.chmod(0o644)
    url = f"{xrootd['XROOTD_URL']}/store/{name}"
    try:
        factory = factory_setup.factory()
        factory.cycle()
        frontend_setup.groups = [group(overflow={"after": 1, "sites": "any"})]
        frontend = frontend_setup.frontend()
        cluster = pool.submit(
            jobs_at(workdir, home, 1, arguments=f"$$(GLIDEIN_Site) {home} {url}"), "uma", workdir
        )
        time.sleep(1.5)

        def done() -> bool:
            frontend.cycle()
            return pool.job(f"{cluster}.0", "JobStatus", user="uma", history=True) == "4"

        cycle_until(factory, done, timeout=90)
        assert (workdir / f"out.{cluster}.0").read_text().strip() == f"read payload-42 from {url} at {other}"
        assert (
            pool.job(f"{cluster}.0", "DESIRED_Sites_Orig", "OverflowHomeSites", user="uma", history=True)
            == f"{home} {home}"
        )
    finally:
        stored.unlink(missing_ok=True)
