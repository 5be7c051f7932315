"""The factory as operators run it: its own process, killed -9, restarted, reconfigured, inspected."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest
import yaml

from factory.glideins import GlideinState
from tests.support.factories import FactorySetup, local_entry, wait_for
from tests.support.pools import RunningPool


def at_site(setup: FactorySetup, entry: str) -> set[str]:
    """Tags of the glideins the (local) site has: one directory each."""
    return {
        p.name
        for p in (setup.state_dir / "entries" / entry).glob("updraft_*")
        if not (p / "cancelled").exists()
    }


def journal_rows(setup: FactorySetup, entry: str) -> list:
    journal = setup.journal()
    try:
        return journal.recent(0, entry)
    finally:
        journal.close()


def no_duplicates_and_none_forgotten(setup: FactorySetup, entry: str, wanted: int) -> None:
    rows = journal_rows(setup, entry)
    live_tags = {
        g.tag for g in rows if g.state in (GlideinState.QUEUED, GlideinState.RUNNING, GlideinState.HELD)
    }
    assert at_site(setup, entry) == live_tags, "the site and the journal disagree"
    assert len(live_tags) == wanted, f"{len(live_tags)} glideins at the site for {wanted} requested"
    assert len({g.tag for g in rows}) == len(rows)


@pytest.mark.parametrize("point", ["factory.after_site_submit", "factory.before_site_submit"])
def test_kill_during_submission_neither_duplicates_nor_forgets(
    setup: FactorySetup, pool: RunningPool, point: str
) -> None:
    setup.entries = [
        local_entry(
            "K_local",
            f"{setup.name}-K",
            options={"paused": True},
            pacing={"cluster_size": 1, "max_per_cycle": 10},
        )
    ]
    setup.write()
    crashing = setup.spawn(UPDRAFT_FAILPOINTS=f"{point}=exit@3")
    setup.wait_started()
    setup.request("K_local", idle=5, max_glideins=5)
    assert crashing.wait(timeout=60) == 137, setup.log()
    in_doubt = [g for g in journal_rows(setup, "K_local") if g.state == GlideinState.UNSUBMITTED]
    assert len(in_doubt) == 1  # the crash left exactly the glidein being sent in doubt
    on_the_site = in_doubt[0].tag in at_site(setup, "K_local")
    assert on_the_site == (point == "factory.after_site_submit")

    setup.spawn()
    wait_for(
        lambda: (
            len(at_site(setup, "K_local")) >= 5
            and not [g for g in journal_rows(setup, "K_local") if g.state == GlideinState.UNSUBMITTED]
        ),
        timeout=60,
        what="reconcile and the rest of the submission",
    )
    time.sleep(2)  # a few more cycles: nothing more may be submitted
    no_duplicates_and_none_forgotten(setup, "K_local", 5)
    settled = next(g for g in journal_rows(setup, "K_local") if g.tag == in_doubt[0].tag)
    assert settled.state == (GlideinState.QUEUED if on_the_site else GlideinState.FAILED)


def test_random_kill_9_during_a_run(setup: FactorySetup, pool: RunningPool) -> None:
    setup.entries = [
        local_entry(
            "R_local",
            f"{setup.name}-R",
            options={"paused": True},
            pacing={"cluster_size": 1, "max_per_cycle": 3},
        )
    ]
    setup.write()
    process = setup.spawn()
    setup.wait_started()
    setup.request("R_local", idle=8, max_glideins=8)
    rng = random.Random(7)
    for _ in range(4):
        time.sleep(rng.uniform(0.3, 1.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        process = setup.spawn()
    wait_for(lambda: len(at_site(setup, "R_local")) >= 8, timeout=60, what="eight glideins")
    wait_for(
        lambda: not [g for g in journal_rows(setup, "R_local") if g.state == GlideinState.UNSUBMITTED],
        timeout=30,
        what="reconcile",
    )
    time.sleep(2)
    no_duplicates_and_none_forgotten(setup, "R_local", 8)


@pytest.mark.parametrize("policy", ["adopt", "cancel"])
def test_glideins_the_journal_does_not_know_are_adopted_or_cancelled(
    setup: FactorySetup, pool: RunningPool, policy: str
) -> None:
    setup.entries = [local_entry("A_local", f"{setup.name}-A", options={"paused": True})]
    setup.write(unknown_glideins=policy)
    process = setup.spawn()
    setup.wait_started()
    setup.request("A_local", idle=2, max_glideins=2)
    wait_for(lambda: len(at_site(setup, "A_local")) == 2, what="two glideins")
    process.send_signal(signal.SIGKILL)
    process.wait()
    tags = at_site(setup, "A_local")
    for name in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"):
        (setup.state_dir / name).unlink(missing_ok=True)  # the journal is lost
    setup.request("A_local", idle=0, max_glideins=2)
    setup.spawn()
    if policy == "adopt":
        wait_for(lambda: {g.tag for g in journal_rows(setup, "A_local")} == tags, what="adoption")
        assert at_site(setup, "A_local") == tags
        assert all("adopted" in g.reason for g in journal_rows(setup, "A_local"))
    else:
        wait_for(lambda: not at_site(setup, "A_local"), what="cancellation")
        wait_for(
            lambda: all(g.state == GlideinState.REMOVED for g in journal_rows(setup, "A_local")),
            what="removed in the journal",
        )


def test_reconfig_valid_invalid_and_an_entry_removed(setup: FactorySetup, pool: RunningPool) -> None:
    setup.entries = [
        local_entry("Keep_local", f"{setup.name}-Keep", options={"paused": True}),
        local_entry("Gone_local", f"{setup.name}-Gone", options={"paused": True}),
    ]
    setup.write()
    setup.spawn()
    setup.wait_started()
    setup.request("Keep_local", idle=1, max_glideins=1)
    setup.request("Gone_local", idle=2, max_glideins=2)
    wait_for(
        lambda: len(at_site(setup, "Gone_local")) == 2 and len(at_site(setup, "Keep_local")) == 1,
        what="glideins",
    )

    # invalid: refused by the command, the running config stays
    good = setup.config_path.read_text()
    setup.config_path.write_text(good.replace("cycle_s: 1", "cycle_s: 1\nstatus_timout_s: 3"))
    refused = setup.cli("reconfig")
    assert refused.returncode == 1
    assert "factory.yaml:" in refused.stderr and "did you mean 'status_timeout_s'" in refused.stderr
    # SIGHUP with the invalid file: the factory refuses it too and says so
    pid = int((setup.state_dir / "factory.pid").read_text())
    import os

    before = time.time()
    os.kill(pid, signal.SIGHUP)
    wait_for(
        lambda: json.loads((setup.state_dir / "status.json").read_text()).get("config_error_at", 0) > before,
        what="refusal",
    )
    status = json.loads((setup.state_dir / "status.json").read_text())
    assert "status_timout_s" in status["config_error"]

    # valid, with one entry removed: its glideins are tracked until they end, nobody touches them
    config = yaml.safe_load(good)
    config["entries"] = [e for e in config["entries"] if e["name"] != "Gone_local"]
    setup.config_path.write_text(yaml.safe_dump(config))
    applied = setup.cli("reconfig")
    assert applied.returncode == 0, applied.stderr
    assert "reloaded" in applied.stdout
    time.sleep(2)
    assert len(at_site(setup, "Gone_local")) == 2
    rows = {r["entry"]: r for r in json.loads(setup.cli("entries", "--json").stdout)}
    assert rows["Gone_local"]["state"] == "retired" and rows["Gone_local"]["idle"] == 2
    assert rows["Keep_local"]["state"] == "ok"
    table = setup.cli("entries").stdout
    assert table.splitlines()[0].split()[:4] == ["ENTRY", "SITE", "TYPE", "STATE"]
    # the glideins of the removed entry end (here: removed at the site by hand); then it is forgotten
    for node in (setup.state_dir / "entries" / "Gone_local").glob("updraft_*"):
        (node / "queued").unlink()
        (node / "exit_code").write_text("0\n")
    wait_for(
        lambda: "Gone_local" not in json.loads((setup.state_dir / "status.json").read_text())["entries"],
        what="retirement",
    )
    assert all(g.state == GlideinState.COMPLETED for g in journal_rows(setup, "Gone_local"))


def test_check_command(tmp_path: Path) -> None:
    import subprocess

    from tests.support.processes import BIN

    path = tmp_path / "f.yaml"
    path.write_text("name: f\nentries:\n  - name: e\n    gridtype: slurmm\n    allowed_frontends: ['*']\n")
    result = subprocess.run(
        [str(BIN / "updraft"), "factory", "check", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert (
        f"{path}:4: entries[0].gridtype: unknown gridtype 'slurmm' (did you mean 'slurm'?)" in result.stderr
    )
    assert "(known: local, slurm, gram, arc, cream, condor)" in result.stderr  # never the tests' own 'fake'
    ok = subprocess.run(
        [str(BIN / "updraft"), "factory", "check", "config/factory.yaml"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[3],
    )
    assert ok.returncode == 0 and "OK" in ok.stdout
