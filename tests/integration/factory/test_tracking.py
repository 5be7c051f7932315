"""Held, stale, lost and slow: the factory against sites that misbehave on demand.

The sites here are the in-memory reference adapter (``gridtype: fake``), which is the
contract every real adapter follows; the pool, the requests and the factory are real.
"""

from __future__ import annotations

import time

from factory.adapters import fake
from factory.glideins import GlideinState
from tests.support.factories import FactorySetup, cycle_until, local_entry
from tests.support.pools import RunningPool
from updraft.core import protocol
from updraft.core.protocol import Scope


def fake_entry(name: str, **overrides: object) -> dict[str, object]:
    entry = {
        "name": name,
        "gridtype": "fake",
        "attributes": {"GLIDEIN_Site": name},
        "allowed_frontends": ["fe1"],
    }
    entry.update(overrides)
    return entry


def site_jobs(entry: str) -> dict[str, fake.FakeJob]:
    return fake.SITES[entry].jobs


def test_held_glideins_are_released_by_hold_code_then_removed(setup: FactorySetup, pool: RunningPool) -> None:
    """glideinWMS since 3.6.2: a hold is unrecoverable unless its code is listed; a recoverable one
    is released after (holds so far) x min_release_time_s, until it has been held max_releases times."""
    setup.entries = [
        fake_entry(
            "H",
            options={"start_immediately": False},
            held={"recoverable_exitcodes": "2 0 4,34", "max_releases": 2, "min_release_time_s": 1},
        )
    ]
    factory = setup.factory()
    factory.cycle()
    setup.request("H", idle=2, max_glideins=2)
    cycle_until(factory, lambda: len(factory.journal.live("H")) == 2)
    recoverable, broken = sorted(site_jobs("H"))
    adapter = factory.adapters["H"]
    assert isinstance(adapter, fake.FakeAdapter)
    adapter.set_state(recoverable, "HELD", "the CE lost contact with the worker node", hold_code=34)
    adapter.set_state(broken, "HELD", "the job's proxy expired", hold_code=4)  # not listed: unrecoverable

    factory.cycle()
    factory.wait_idle()
    assert site_jobs("H")[recoverable].releases == 0  # held for less than 1 x 1 s
    assert site_jobs("H")[broken].state == GlideinState.REMOVED  # removed at once, never released
    broken_glidein = factory.journal.find(broken)
    assert broken_glidein is not None and "unrecoverable (hold code 4/0)" in broken_glidein.reason
    time.sleep(1.1)
    factory.cycle()
    factory.wait_idle()
    assert site_jobs("H")[recoverable].releases == 1
    # held again: released again, but only after 2 x 1 s
    adapter.set_state(recoverable, "HELD", "lost contact again", hold_code=34)
    factory.cycle()
    factory.wait_idle()
    time.sleep(1.1)
    factory.cycle()
    factory.wait_idle()
    assert site_jobs("H")[recoverable].releases == 1
    time.sleep(1.0)
    factory.cycle()
    factory.wait_idle()
    assert site_jobs("H")[recoverable].releases == 2
    # held a third time: more than max_releases holds, removed
    adapter.set_state(recoverable, "HELD", "lost contact a third time", hold_code=34)
    cycle_until(factory, lambda: site_jobs("H")[recoverable].state == GlideinState.REMOVED, timeout=20)
    glidein = factory.journal.find(recoverable)
    assert glidein is not None and "held 3 times (max_releases 2)" in glidein.reason


def test_stale_and_lost_glideins(setup: FactorySetup, pool: RunningPool) -> None:
    setup.entries = [
        fake_entry("Q", options={"start_immediately": False}, stale={"queued_s": 2, "missing_s": 1})
    ]
    factory = setup.factory()
    factory.cycle()
    setup.request("Q", idle=2, max_glideins=2)
    cycle_until(factory, lambda: len(site_jobs("Q")) == 2)
    setup.request("Q", idle=0, max_glideins=2)
    first, second = sorted(site_jobs("Q"))
    adapter = factory.adapters["Q"]
    assert isinstance(adapter, fake.FakeAdapter)
    adapter.set_state(second, "RUNNING")
    factory.cycle()
    factory.wait_idle()
    del site_jobs("Q")[second]  # the CE forgets a glidein without a trace
    time.sleep(2.1)
    cycle_until(factory, lambda: not factory.journal.live("Q"), timeout=20)
    stale, lost = factory.journal.find(first), factory.journal.find(second)
    assert stale is not None and stale.state == GlideinState.REMOVED and "stale: queued" in stale.reason
    assert lost is not None and lost.state == GlideinState.LOST
    assert factory.totals[("Q", "lost")] == 1


def test_a_glidein_that_vanishes_after_ending_is_judged_by_its_output(
    setup: FactorySetup, pool: RunningPool
) -> None:
    setup.entries = [fake_entry("O", stale={"missing_s": 0})]
    factory = setup.factory()
    factory.cycle()
    setup.request("O", idle=1, max_glideins=1)
    cycle_until(factory, lambda: len(site_jobs("O")) == 1)
    setup.request("O", idle=0, max_glideins=0)
    ((site_id, job),) = site_jobs("O").items()
    job.output = 'log\nUPDRAFT_PILOT_RESULT {"status": "ok", "exit_status": 0, "jobs": {"started": 3}, "lifetime_s": 60, "cpus": 1, "job_core_s": 30}\n'
    output = job.output
    del site_jobs("O")[site_id]
    site_jobs("O")["other"] = fake.FakeJob("someone-else", GlideinState.COMPLETED, "DONE", output="")

    def gone_but_output_kept() -> bool:
        return not factory.journal.live("O")

    adapter = factory.adapters["O"]
    assert isinstance(adapter, fake.FakeAdapter)
    original = adapter.fetch_output
    adapter.fetch_output = lambda s, g: fake.GlideinOutput(output) if s == site_id else original(s, g)
    cycle_until(factory, gone_but_output_kept, timeout=20)
    glidein = factory.journal.find(site_id)
    assert (
        glidein is not None
        and glidein.state == GlideinState.COMPLETED
        and glidein.record
        and glidein.record["jobs"]["started"] == 3
    )


def test_a_slow_site_holds_up_no_other_entry(setup: FactorySetup, pool: RunningPool) -> None:
    setup.entries = [
        fake_entry("Slow", options={"status_delay_s": 3}),
        local_entry("Quick", f"{setup.name}-Quick", options={"paused": True}),
    ]
    factory = setup.factory(status_timeout_s=0.5)
    factory.cycle()
    setup.request("Slow", idle=1, max_glideins=1)
    setup.request("Quick", idle=2, max_glideins=2)
    began = time.monotonic()
    for _ in range(3):
        factory.cycle()
    assert time.monotonic() - began < 3.0  # no cycle waited for the slow site
    assert len(factory.journal.live("Quick")) == 2
    assert "still running" in factory.health["Slow"].last_error


def test_an_unreachable_site_is_reported_and_retried(setup: FactorySetup, pool: RunningPool) -> None:
    setup.entries = [fake_entry("U")]
    factory = setup.factory()
    factory.cycle()
    factory.wait_idle()
    assert factory.health["U"].reconciled
    entry = factory.entries["U"]
    entry.adapter_options.unavailable = True  # the CE goes away
    setup.request("U", idle=2, max_glideins=2)
    factory.cycle()
    factory.wait_idle()
    # the submission failed in doubt: the glideins wait for reconcile, nothing is resubmitted meanwhile
    health = factory.health["U"]
    assert health.backoff_until > time.time()
    assert "submission failed" in health.submit_problem
    in_doubt = factory.journal.live("U")
    assert len(in_doubt) == 2 and all(g.state == GlideinState.UNSUBMITTED for g in in_doubt)
    time.sleep(2.1)  # submit_grace_s
    factory.cycle()
    factory.wait_idle()
    assert "does not answer" in health.last_error  # the status poll failed too: nothing decided
    entry.adapter_options.unavailable = False
    cycle_until(
        factory, lambda: not [g for g in factory.journal.live("U") if g.state == GlideinState.UNSUBMITTED]
    )
    failed = [g for g in factory.journal.recent(0, "U") if g.state == GlideinState.FAILED]
    assert len(failed) == 2 and all("never reached the site" in g.reason for g in failed)


def test_refused_submissions_fail_at_once_and_back_off(setup: FactorySetup, pool: RunningPool) -> None:
    setup.entries = [fake_entry("N", options={"refuse": True})]
    factory = setup.factory()
    factory.cycle()
    setup.request("N", idle=3, max_glideins=3)
    factory.cycle()
    factory.wait_idle()
    failed = factory.journal.recent(0, "N")
    assert failed and all(g.state == GlideinState.FAILED and "refused" in g.reason for g in failed)
    assert len(failed) == 3 or len(failed) == factory.entries["N"].pacing.cluster_size
    factory.cycle()
    factory.wait_idle()
    assert len(factory.journal.recent(0, "N")) == len(failed)  # backing off: nothing new
    assert any("backing off" in why for why in factory.health["N"].reasons["fe1.main"])


def test_removal_takes_idle_pilots_first_and_busy_ones_only_when_asked(
    setup: FactorySetup, pool: RunningPool
) -> None:
    """ALL with no demand left: the glidein whose pilot runs a job stays unless the request says otherwise."""
    setup.entries = [fake_entry("B")]
    factory = setup.factory()
    factory.cycle()
    setup.request("B", idle=3, max_glideins=3)
    cycle_until(
        factory, lambda: len([g for g in factory.journal.live("B") if g.state == GlideinState.RUNNING]) == 3
    )
    busy, idle, unregistered = sorted(factory.journal.live("B"), key=lambda g: g.glidein_id)
    pilot = pool.client(f"fe1/main/{busy.glidein_id}", Scope.PILOT)
    slots = [
        {
            "Name": protocol.literal(f"slot1@{glidein.glidein_id}"),
            protocol.ATTR_GLIDEIN_FACTORY: protocol.literal(setup.name),
            protocol.ATTR_GLIDEIN_ENTRY: protocol.literal("B"),
            protocol.ATTR_GLIDEIN_ID: protocol.literal(glidein.glidein_id),
            "State": protocol.literal(state),
        }
        for glidein, state in ((busy, "Claimed"), (idle, "Unclaimed"))
    ]
    pilot.advertise(protocol.AdType.Slot.value, slots)
    setup.request("B", idle=0, max_glideins=1, remove="ALL")  # one job still runs there
    factory.cycle()
    factory.wait_idle()
    removing = {g.glidein_id for g in factory.journal.live("B") if g.remove_requested}
    assert removing == {idle.glidein_id, unregistered.glidein_id}  # excess 2: the idle pilot, the silent one
    setup.request("B", idle=0, max_glideins=0, remove="ALL")
    factory.cycle()
    factory.wait_idle()
    assert not factory.journal.get(busy.glidein_id).remove_requested  # never a busy one unasked
    setup.request("B", idle=0, max_glideins=0, remove="ALL", remove_busy=True)
    factory.cycle()
    factory.wait_idle()
    assert factory.journal.get(busy.glidein_id).remove_requested
