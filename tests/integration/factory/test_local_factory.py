"""The factory with local entries against a real pool: requests in, glideins out, jobs run.

Glideins are real local processes running the real startup script and the real pilot,
which fetches its bundle from the factory's staging server and serves the pool.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

from factory.glideins import GlideinState
from tests.support.factories import QUICK_PILOT, FactorySetup, cycle_until, local_entry, wait_for
from tests.support.pools import RunningPool
from updraft.core import protocol
from updraft.core.protocol import Scope


def live_states(setup: FactorySetup, entry: str) -> dict[str, int]:
    journal = setup.journal()
    try:
        counts: dict[str, int] = {}
        for (name, _client), states in journal.counts(entry).items():
            if name == entry:
                for state, n in states.items():
                    counts[state] = counts.get(state, 0) + n
        return counts
    finally:
        journal.close()


def test_glideins_start_pilots_that_run_the_users_job(
    setup: FactorySetup, pool: RunningPool, workdir: Path
) -> None:
    site = f"{setup.name}-A"
    setup.entries = [local_entry("A_local", site)]
    factory = setup.factory()
    factory.cycle()
    ads = pool.client("fe1", Scope.FRONTEND).query_ads("glidefactory", f'FactoryName == "{setup.name}"')
    assert [protocol.parse_literal(a["GLIDEIN_Site"]) for a in ads] == [site]
    assert protocol.parse_literal(ads[0][protocol.ATTR_IN_DOWNTIME]) is False

    (workdir / "hello.sh").write_text("#!/bin/sh\necho hello from $1\n")
    (workdir / "hello.sh").chmod(0o755)
    cluster = pool.submit(
        f'executable = hello.sh\narguments = $$(GLIDEIN_Site)\noutput = hello.out\nrequirements = GLIDEIN_Site == "{site}"\nqueue\n',
        "uma", workdir,
    )  # fmt: skip
    setup.request("A_local", idle=1, max_glideins=2)
    cycle_until(
        factory, lambda: pool.job(f"{cluster}.0", "JobStatus", user="uma", history=True) == "4", timeout=90
    )
    assert (workdir / "hello.out").read_text().strip() == f"hello from {site}"
    # an operator holds a slot name from condor_status (or the job's LastRemoteHost): it finds the glidein
    slot = pool.job(f"{cluster}.0", "LastRemoteHost", user="uma", history=True)
    shown = setup.cli("logs", slot)
    assert shown.returncode == 0, shown.stderr
    assert "entry        A_local" in shown.stdout

    # the factory's client ad tells the frontend what it has
    client_ads = pool.client("fe1", Scope.FRONTEND).query_ads(
        "glidefactoryclient", f'ReqFactory == "{setup.name}"'
    )
    assert client_ads and protocol.parse_literal(client_ads[0][protocol.ATTR_CLIENT_NAME]) == "fe1.main"

    # the glideins end by themselves (tail timeout); their output and final record are kept
    setup.request("A_local", idle=0, max_glideins=0)
    cycle_until(factory, lambda: not factory.journal.live("A_local"), timeout=90)
    ended = factory.journal.recent(0, "A_local")
    assert ended and all(g.cleaned and g.record for g in ended)
    served = [g for g in ended if g.record and g.record["jobs"]["started"]]
    assert len(served) == 1 and served[0].record["status"] == "ok"
    assert "UPDRAFT_PILOT_RESULT" in (setup.state_dir / "outputs" / f"{served[0].glidein_id}.out").read_text()
    listed = json.loads(setup.cli("glideins", "--entry", "A_local", "--state", "completed", "--json").stdout)
    assert served[0].glidein_id in {g["glidein_id"] for g in listed}
    assert setup.cli("logs", slot).returncode == 0  # ended: found by its final record
    table = setup.cli("glideins", "--frontend", "fe1")
    assert table.returncode == 0 and served[0].glidein_id in table.stdout


def test_token_travels_as_a_private_file_never_on_a_command_line(
    setup: FactorySetup, pool: RunningPool
) -> None:
    setup.entries = [local_entry("T_local", f"{setup.name}-T")]
    factory = setup.factory()
    factory.cycle()
    token = pool.token("fe1", Scope.PILOT, bindings={"frontend": "fe1", "test": "token-file"})
    setup.request("T_local", idle=1, max_glideins=1, token=token)
    glidein = cycle_until(factory, lambda: next(iter(factory.journal.live("T_local")), None))
    node = setup.state_dir / "entries" / "T_local" / glidein.tag
    token_file = node / "pilot.token"
    assert token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token not in (node / "glidein_startup.sh").read_text()
    # while the pilot runs, no process has the token in its arguments
    wait_for(lambda: (node / "pid").exists(), what="the glidein to start")
    commands = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "pilot.pyz" in commands or "glidein_startup" in commands
    assert token not in commands


def test_limits_and_pacing_cap_submissions_and_say_why(setup: FactorySetup, pool: RunningPool) -> None:
    setup.entries = [
        local_entry(
            "L_local", f"{setup.name}-L", limits={"max_idle": 3}, pacing={"cluster_size": 1, "max_per_cycle": 2},
            options={"paused": True},
        )
    ]  # fmt: skip
    factory = setup.factory()
    factory.cycle()
    setup.request("L_local", idle=10, max_glideins=10)
    factory.cycle()
    factory.wait_idle()
    assert live_states(setup, "L_local") == {"queued": 2}
    assert "submission pace (2 per request per cycle)" in factory.health["L_local"].reasons["fe1.main"]
    factory.cycle()
    factory.wait_idle()
    assert live_states(setup, "L_local") == {"queued": 3}
    assert "entry max_idle (3)" in factory.health["L_local"].reasons["fe1.main"]
    factory.cycle()
    factory.wait_idle()
    assert live_states(setup, "L_local") == {"queued": 3}  # stays at the limit

    # the per-frontend limit, from the factory-wide defaults
    setup.entries[0]["limits"] = {"max_idle": 0}
    setup.write(frontend_limits={"fe1": {"max_glideins": 4}})
    assert factory.reconfig()
    factory.cycle()
    factory.wait_idle()
    assert live_states(setup, "L_local") == {"queued": 4}
    assert "frontend max_glideins (4)" in factory.health["L_local"].reasons["fe1.main"]


def test_excess_is_removed_only_as_the_request_says(setup: FactorySetup, pool: RunningPool) -> None:
    setup.entries = [local_entry("R_local", f"{setup.name}-R", options={"paused": True})]
    factory = setup.factory()
    factory.cycle()
    setup.request("R_local", idle=4, max_glideins=4)
    cycle_until(factory, lambda: live_states(setup, "R_local").get("queued") == 4)

    setup.request("R_local", idle=1, max_glideins=4, remove="NO")
    factory.cycle()
    factory.wait_idle()
    assert live_states(setup, "R_local") == {"queued": 4}

    setup.request("R_local", idle=1, max_glideins=4, remove="IDLE", margin=1)
    cycle_until(factory, lambda: live_states(setup, "R_local") == {"queued": 2})
    removed = [g for g in factory.journal.recent(0, "R_local") if g.state == GlideinState.REMOVED]
    assert len(removed) == 2 and all("excess" in g.reason for g in removed)
    assert factory.totals[("R_local", "removed")] == 2


def test_downtimes_stop_new_submissions(setup: FactorySetup, pool: RunningPool) -> None:
    setup.entries = [local_entry("D_local", f"{setup.name}-D", options={"paused": True})]
    factory = setup.factory()
    factory.cycle()
    result = setup.cli("downtime", "add", "--entry", "D_local", "--duration", "1h", "--comment", "disk swap")
    assert result.returncode == 0, result.stderr
    downtime_id = result.stdout.split()[1].rstrip(":")
    setup.request("D_local", idle=2, max_glideins=2)
    factory.cycle()
    factory.wait_idle()
    assert live_states(setup, "D_local") == {}
    assert any("in downtime" in why for why in factory.health["D_local"].reasons["fe1.main"])
    ads = pool.client("fe1", Scope.FRONTEND).query_ads("glidefactory", f'FactoryName == "{setup.name}"')
    assert protocol.parse_literal(ads[0][protocol.ATTR_IN_DOWNTIME]) is True

    listing = setup.cli("downtime", "list", "--json")
    assert listing.returncode == 0 and '"disk swap"' in listing.stdout
    assert setup.cli("downtime", "end", downtime_id).returncode == 0
    # a window already over, and a frontend nobody names, are pointed out
    ended = setup.cli(
        "downtime", "add", "--entry", "D_local", "--start", "2020-01-01 08:00", "--end", "2020-01-01 12:00"
    )
    assert ended.returncode != 0 and "that window has already ended" in ended.stderr
    typo = setup.cli("downtime", "add", "--frontend", "fe11", "--duration", "1m")
    assert typo.returncode == 0 and "warning: no entry names frontend 'fe11'" in typo.stderr
    assert "(did you mean 'fe1'?)" in typo.stderr
    setup.cli("downtime", "end", typo.stdout.split()[1].rstrip(":"))
    # a frontend downtime stops only that frontend's requests
    added = setup.cli("downtime", "add", "--frontend", "fe1")
    assert added.returncode == 0 and "warning" not in added.stderr
    factory.cycle()
    factory.wait_idle()
    assert live_states(setup, "D_local") == {}
    frontend_downtime = setup.cli("downtime", "list", "--json")
    for line in frontend_downtime.stdout.split('"id": ')[1:]:
        setup.cli("downtime", "end", line.split(",")[0])
    cycle_until(factory, lambda: live_states(setup, "D_local") == {"queued": 2})


def test_only_allowed_frontends_speaking_for_themselves_are_served(
    setup: FactorySetup, pool: RunningPool
) -> None:
    setup.entries = [local_entry("F_local", f"{setup.name}-F", options={"paused": True})]
    factory = setup.factory()
    factory.cycle()
    setup.request("F_local", idle=1, max_glideins=1, frontend="fe1", group="forged", author="fe2")
    setup.request("F_local", idle=1, max_glideins=1, frontend="fe3", group="main")
    factory.cycle()
    factory.wait_idle()
    assert live_states(setup, "F_local") == {}
    reasons = {r.name: r.why for r in factory.rejected}
    assert "frontend:fe2" in reasons[f"F_local@{setup.name}@fe1.forged"]
    assert "may not use entry" in reasons[f"F_local@{setup.name}@fe3.main"]


def test_a_tampered_pilot_stops_the_glidein_with_a_corruption_error(
    setup: FactorySetup, pool: RunningPool
) -> None:
    setup.entries = [local_entry("C_local", f"{setup.name}-C")]
    factory = setup.factory()
    factory.cycle()
    assert factory.pilot is not None
    staged = setup.directory / "staging" / factory.pilot.name
    os.chmod(staged, 0o644)
    with open(staged, "ab") as handle:
        handle.write(b"# tampered\n")
    setup.request("C_local", idle=1, max_glideins=1)
    ended = cycle_until(factory, lambda: [g for g in factory.journal.recent(0, "C_local") if g.cleaned])
    glidein = ended[0]
    assert glidein.state == GlideinState.FAILED
    assert glidein.record and glidein.record["status"] == "validation_failed"
    assert glidein.record["checks"][0]["failure_type"] == "Corruption"
    logs = setup.cli("logs", glidein.glidein_id)
    assert logs.returncode == 0 and "Corruption" in logs.stdout and "does not match its sha256" in logs.stdout
    analysis = setup.cli("analyze", "--json")
    assert '"Corruption": 1' in analysis.stdout
    setup.request("C_local", idle=0, max_glideins=0)


def test_glideins_carry_the_pool_s_ca_and_verify_a_tls_pool(tmp_path: Path, workdir: Path) -> None:
    """With --tls the factory ships the pool's CA in each glidein, as it ships the token."""
    from tests.support.factories import FactorySetup
    from tests.support.pools import start_pool

    tls_pool = start_pool(tmp_path / "tls-pool", ["--tls"])
    setup = FactorySetup(tls_pool, tmp_path / "factory", name="fac-tls")
    try:
        ca = str(tls_pool.home / "tls" / "ca.pem")
        setup.entries = [local_entry("T_local", "fac-tls-T")]
        factory = setup.factory(pool={"url": tls_pool.url, "token_file": "factory.token", "ca_file": ca})
        factory.cycle()
        (workdir / "hello.sh").write_text("#!/bin/sh\necho hello over TLS\n")
        (workdir / "hello.sh").chmod(0o755)
        cluster = tls_pool.submit(
            'executable = hello.sh\noutput = hello.out\nrequirements = GLIDEIN_Site == "fac-tls-T"\nqueue\n',
            "uma", workdir,
        )  # fmt: skip
        setup.request("T_local", idle=1, max_glideins=1)
        cycle_until(
            factory,
            lambda: tls_pool.job(f"{cluster}.0", "JobStatus", user="uma", history=True) == "4",
            timeout=90,
        )
        assert (workdir / "hello.out").read_text().strip() == "hello over TLS"
    finally:
        setup.stop()
        tls_pool.stop()


def test_the_staging_port_survives_a_restart(setup: FactorySetup, pool: RunningPool) -> None:
    """Glideins still queued fetch the pilot from the URL in their script: a restart keeps it."""
    setup.entries = [local_entry("S_local", f"{setup.name}-S", options={"paused": True})]
    first = setup.factory()
    url = first.staging_url
    first.stop()
    setup.factories.remove(first)
    again = setup.factory()
    assert again.staging_url == url


def test_a_site_failing_validation_shows_as_failing_while_its_pilots_hold_their_slots(
    setup: FactorySetup, pool: RunningPool
) -> None:
    """A failed pilot keeps its batch slot (failure_hold_s): the entry says so within a cycle, not 20 min later."""
    pilot = {**QUICK_PILOT, "min_disk_gb": 100000, "failure_hold_s": 300}
    setup.entries = [local_entry("V_local", f"{setup.name}-V", pilot=pilot)]
    factory = setup.factory()
    factory.cycle()
    setup.request("V_local", idle=1, max_glideins=1)

    def failing() -> list[dict[str, Any]]:
        done = setup.cli("entries", "--json")
        rows = [r for r in json.loads(done.stdout) if r["entry"] == "V_local" and r["state"] == "failing"]
        return rows

    (row,) = cycle_until(factory, failing, timeout=90)
    assert row["running"] == 1 and row["failing_now"] == 1
    assert "failing validation now" in row["failing"] and "disk" in row["failing"].lower()
    table = setup.cli("entries").stdout
    assert "failing" in table and "pilot(s) failing validation now" in table
    analysis = json.loads(setup.cli("analyze", "--json").stdout)
    (entry,) = [a for a in analysis if a["entry"] == "V_local"]
    assert entry["failing_now"] and sum(entry["failing_now"].values()) == 1
    assert 'updraft_factory_validation_failing{entry="V_local"' in factory.metrics()
    assert not [g for g in factory.journal.recent(0, "V_local") if g.record]  # none has ended yet
    setup.request("V_local", idle=0, max_glideins=0)
