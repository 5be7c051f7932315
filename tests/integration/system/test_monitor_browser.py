"""The real-time monitor in a real browser (Debian's chromium, driven by Playwright) against a running system.

A pool, a factory with four local entries (one whose worker nodes fail validation, one
paused that jobs overflow from, whose queued glideins its "site admin" holds one of, one in
downtime) and a frontend run real jobs of two users, some failing; the page must show the
sites with their pilots, the entries as the factory sees them (queued, held, downtime, last
failure, wasted pilot time), what became of the jobs (completed, failed, their rate), the
users and groups, the overflow flow, the events (a job's id opens its events) and the charts,
and then follow the event stream live.  The screenshot is kept in artifacts/monitor.png.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.factories import FactorySetup, cycle_until, local_entry
from tests.support.frontends import FrontendSetup, group
from tests.support.pools import RunningPool, start_pool

ROOT = Path(__file__).parents[3]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium: scripts/bootstrap.sh --test installs Debian's"
)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    """The monitor samples every second here, so the charts fill within the test."""
    running = start_pool(tmp_path_factory.mktemp("pool"), ["--monitor-interval", "1"])
    yield running
    running.stop()


def test_the_monitor_shows_sites_pilots_overflow_events_and_charts_and_stays_live(
    factory_setup: FactorySetup, frontend_setup: FrontendSetup, pool: RunningPool, workdir: Path
) -> None:
    fe = frontend_setup.name
    factory_setup.entries = [
        local_entry("Run_local", "Run", allowed_frontends=[fe], attributes={"GLIDEIN_Site": "Run", "GLIDEIN_CPUS": 2, "GLIDEIN_Max_Walltime": 600}),
        local_entry("Broken_local", "Broken", allowed_frontends=[fe], software_paths=["/nonexistent/cvmfs/vo.example.org"]),
        local_entry("Home_local", "Home", allowed_frontends=[fe], options={"paused": True},
                    held={"recoverable": ["site admin"], "min_release_time_s": 3600}),
        local_entry("Down_local", "Down", allowed_frontends=[fe]),
    ]  # fmt: skip
    factory = factory_setup.factory()
    added = factory_setup.cli(
        "downtime", "add", "--entry", "Down_local", "--duration", "1h", "--comment", "disk swap"
    )
    assert added.returncode == 0, added.stderr
    factory.cycle()
    frontend_setup.groups = [group(overflow={"after": 1, "sites": {"Home": ["Run"]}})]
    frontend = frontend_setup.frontend()
    (workdir / "work.sh").write_text("#!/bin/sh\nsleep 2\necho done at $1\n")
    (workdir / "work.sh").chmod(0o755)
    common = "executable = work.sh\narguments = $$(GLIDEIN_Site)\nrequirements = stringListMember(GLIDEIN_Site, DESIRED_Sites)\n"
    pool.submit(common + '+DESIRED_Sites = "Run,Broken"\nqueue 4\n', "uma", workdir)
    pool.submit(common + '+DESIRED_Sites = "Home"\nqueue 2\n', "uma", workdir, name="home.sub")
    (workdir / "fail.sh").write_text("#!/bin/sh\nexit 3\n")
    (workdir / "fail.sh").chmod(0o755)
    failing = common.replace("work.sh", "fail.sh") + "accounting_group = group_physics\n"
    pool.submit(failing + '+DESIRED_Sites = "Run"\nqueue 2\n', "ben", workdir, name="fail.sub")
    client = pool.client("admin")

    def worked() -> bool:
        frontend.cycle()
        history = client.query_ads("pilotfailure", 'GLIDEIN_Site == "Broken"')
        done = pool.run("condor_history", "-af", "ProcId", user="uma").lines
        failed = pool.run("condor_history", "-af", "ProcId", user="ben").lines
        return bool(history) and len(done) >= 4 and len(failed) >= 2

    cycle_until(factory, worked, timeout=120)
    frontend.cycle()
    home = [g for g in factory_setup.journal().live("Home_local") if g.site_id]
    assert len(home) >= 2, "Home's paused queue keeps its glideins queued"
    (factory.adapters["Home_local"].root() / home[0].site_id / "held").write_text("held by the site admin\n")
    factory.cycle()

    ARTIFACTS.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            offline: list[str] = []
            page.on("request", lambda r: offline.append(r.url) if not r.url.startswith(pool.url) else None)
            page.goto(f"{pool.url}/monitor")
            page.wait_for_selector("body[data-loaded=true]", timeout=15000)
            page.wait_for_selector("#status.live", timeout=15000)
            # every site with its pilots; the broken one shows its failed validation
            for site in ("Run", "Broken", "Home"):
                assert page.locator(f'#sites tr[data-site="{site}"]').count() == 1, site
            failed = page.locator('#sites tr[data-site="Broken"] td[data-field=pilots_failed]').inner_text()
            assert int(failed) >= 1
            # the overflow flow from home to overflow site, and the events behind it
            page.wait_for_selector('#overflow .flow[data-home="Home"][data-site="Run"]', timeout=15000)
            events = page.locator("#events").inner_text()
            assert "overflowed" in events and "finished" in events and "pilot failed validation" in events
            # the factories' side: queued and held glideins, the downtime and why
            home_row = '#entries tr[data-entry="Home_local"]'
            page.wait_for_selector(home_row, timeout=15000)
            assert int(page.locator(f"{home_row} td[data-field=held]").inner_text()) == 1
            assert int(page.locator(f"{home_row} td[data-field=queued]").inner_text()) >= 1
            assert (
                page.locator('#entries tr[data-entry="Down_local"] td[data-field=downtime]').inner_text()
                == "disk swap"
            )
            # outcomes, and the people behind them
            assert int(page.locator("[data-total=jobs-failed] b").inner_text()) >= 2
            assert int(page.locator("[data-total=jobs-completed] b").inner_text()) >= 6
            assert int(page.locator('#users tr[data-user="uma"] td[data-field=completed]').inner_text()) >= 4
            assert int(page.locator('#users tr[data-user="ben"] td[data-field=failed]').inner_text()) >= 2
            assert (
                int(page.locator('#groups tr[data-group="group_physics"] td[data-field=failed]').inner_text())
                >= 2
            )
            page.wait_for_selector('#chart-ended path[data-series="completed"]', timeout=15000)
            # charts drawn from the pool's samples
            page.wait_for_selector('#chart-jobs path[data-series="jobs_running"]', timeout=15000)
            assert page.locator('#chart-pilots path[data-series="pilots_busy"]').count() == 1
            # live: a new submission shows up through the event stream, without a reload
            cluster = pool.submit(
                common + '+DESIRED_Sites = "Run"\nqueue 1\n', "uma", workdir, name="late.sub"
            )
            page.wait_for_selector(
                f'#events li[data-type="submit"]:has-text("job {cluster} submitted")', timeout=15000
            )
            assert page.locator("[data-total=sites] b").inner_text() == "4"
            # a job's id opens its events (its logging-info, as the monitor shows events)
            page.locator(f'#events a[data-job="{cluster}"]').first.click()
            page.wait_for_selector("#job-panel.open #job-events li[data-type=submit]", timeout=15000)
            # long event lines wrap inside the panel instead of being cut at its edge
            wrap = page.evaluate("getComputedStyle(document.querySelector('#events li')).whiteSpace")
            assert wrap == "normal"
            time.sleep(0.5)
            page.screenshot(path=str(ARTIFACTS / "monitor.png"), full_page=True)
            assert not offline, f"the page reached beyond the pool: {offline}"
        finally:
            browser.close()
    assert (ARTIFACTS / "monitor.png").stat().st_size > 10_000
