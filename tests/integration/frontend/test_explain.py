"""`updraft frontend explain` and `check`: what operators read, from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.factories import FactorySetup, local_entry
from tests.support.frontends import BIN, FrontendSetup, group
from tests.support.pools import RunningPool

REPO = Path(__file__).parents[3]


def test_explain_a_job_names_the_entries_it_matches_and_the_clause_that_refuses_the_others(
    factory_setup: FactorySetup, frontend_setup: FrontendSetup, pool: RunningPool, workdir: Path
) -> None:
    a, b = f"{factory_setup.name}-A", f"{factory_setup.name}-B"
    factory_setup.entries = [
        local_entry("A_local", a, allowed_frontends=[frontend_setup.name], options={"paused": True}),
        local_entry("B_local", b, allowed_frontends=[frontend_setup.name], options={"paused": True}),
    ]
    factory_setup.factory().cycle()
    frontend_setup.groups = [group(), group("other", job_constraint='Owner == "nobody"')]
    frontend_setup.write()
    (workdir / "x.sh").write_text("#!/bin/sh\ntrue\n")
    cluster = pool.submit(
        f'executable = x.sh\n+DESIRED_Sites = "{a}"\nrequest_cpus = 1\nqueue\n', "uma", workdir
    )

    shown = frontend_setup.cli("explain", "--job", f"{cluster}.0")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert f'job {cluster}.0: status Idle, 1 core(s), DESIRED_Sites "{a}"' in out
    assert "group main: matches 1 entry, counts 1/1 to each" in out
    assert f"  yes  A_local@{factory_setup.name} ({a})" in out
    assert (
        f"  no   B_local@{factory_setup.name} ({b}): stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites) is not true"
        f'  [MY.DESIRED_Sites = "{a}", TARGET.GLIDEIN_Site = "{b}"]'
    ) in out
    assert "group other: not for this group" in out

    # no frontend has run yet: explain says so, and --dry-run computes a cycle without advertising
    missing = frontend_setup.cli("explain")
    assert missing.returncode == 1 and "no cycle recorded yet" in missing.stderr
    dry = frontend_setup.cli("explain", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    entries = json.loads(dry.stdout)["groups"]["main"]["entries"]
    decision = entries[f"A_local@{factory_setup.name}"]["decision"]
    assert decision["idle"] == 1
    # the shape scripts read, and what the glideinWMS semantics added
    assert {"idle", "max_run", "remove", "limits", "curbs"} <= set(decision)
    assert {"margin", "remove_busy", "down", "headroom", "removal", "steps"} <= set(decision)
    assert set(decision["removal"]) == {"idle0", "glideempty", "glidetotal0"}
    assert "TotalGlideinsPerEntry" in decision["headroom"] and "IdleGlideinsGlobal" in decision["headroom"]
    assert entries[f"B_local@{factory_setup.name}"]["counts"]["idle_jobs"] == 0
    fe = pool.client(frontend_setup.name)
    assert not fe.query_ads(
        "glideclient", f'FrontendName == "{frontend_setup.name}"'
    )  # a dry run asks nothing

    unknown = frontend_setup.cli("explain", "--dry-run", "--group", "nope")
    assert unknown.returncode != 0 and "no group 'nope' (groups: main, other)" in unknown.stderr
    bad_job = frontend_setup.cli("explain", "--job", "99999.0")
    assert bad_job.returncode != 0 and "job 99999.0 is not in the queue" in bad_job.stderr


def test_check_accepts_the_example_and_names_the_line_of_a_bad_file(
    tmp_path: Path, frontend_setup: FrontendSetup
) -> None:
    good = frontend_setup.cli("check", str(REPO / "config" / "frontend.yaml"))
    assert (
        good.returncode == 0
        and "OK: frontend demo-frontend, 2 group(s): cms (matches on DESIRED_Sites)" in good.stdout
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngroups:\n  - name: g\n    match_expr: 'TARGET.GLIDEIN_Site =='\n")
    refused = frontend_setup.cli("check", str(bad))
    assert (
        refused.returncode == 1
        and f"{bad}:4: groups[0].match_expr: not a valid ClassAd expression" in refused.stderr
    )
    assert BIN.exists()


def test_explain_with_no_entry_says_why(
    frontend_setup: FrontendSetup, pool: RunningPool, workdir: Path
) -> None:
    """No factory lets this frontend in: explain says how many jobs wait and which factories it saw."""
    frontend_setup.groups = [group()]
    frontend_setup.write()
    pool.submit('executable = job.sh\n+DESIRED_Sites = "Nowhere"\nqueue 3\n', "nina", workdir)
    shown = frontend_setup.cli("explain", "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert (
        f"idle jobs; no factory advertises an entry that allows {frontend_setup.name}; factories seen:"
        in shown.stdout
    )


def test_reconfig_says_which_settings_wait_for_a_restart(frontend_setup: FrontendSetup) -> None:
    frontend_setup.groups = [group()]
    frontend = frontend_setup.frontend()
    frontend_setup.write(metrics_port=0, cycle_s=5)
    assert frontend.reconfig()
    assert frontend.restart_needed == ["metrics_port"]  # cycle_s took effect; the socket did not move
    assert frontend.status()["restart_needed"] == ["metrics_port"]


def test_explain_a_job_tells_its_whole_situation(
    factory_setup: FactorySetup, frontend_setup: FrontendSetup, pool: RunningPool, workdir: Path
) -> None:
    """The request at each matching entry and what capped it, the factory's side, the overflow clock."""
    a, b = f"{factory_setup.name}-A", f"{factory_setup.name}-B"
    factory_setup.entries = [
        local_entry("A_local", a, allowed_frontends=[frontend_setup.name], options={"paused": True},
                    limits={"max_glideins": 10, "max_idle": 1}),
        local_entry("B_local", b, allowed_frontends=[frontend_setup.name], options={"paused": True}),
    ]  # fmt: skip
    factory = factory_setup.factory()
    factory.cycle()
    frontend_setup.groups = [group(overflow={"after": "1h", "sites": {a: [b]}})]
    frontend = frontend_setup.frontend()
    (workdir / "x.sh").write_text("#!/bin/sh\ntrue\n")
    cluster = pool.submit(f'executable = x.sh\n+DESIRED_Sites = "{a}"\nqueue 3\n', "uma", workdir)
    frontend.cycle()
    factory.cycle()
    factory.wait_idle()
    factory.cycle()  # its glidefactoryclient ad now says what it held back
    factory.wait_idle()

    shown = frontend_setup.cli("explain", "--job", f"{cluster}.0")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert f"  yes  A_local@{factory_setup.name} ({a})" in out
    assert "    frontend: asks 3 idle, max run" in out
    assert "    seen: 3 idle jobs counted here" in out
    assert "    factory: 1 queued, 0 running, 0 held for this group; held back: " in out and "max_idle" in out
    assert "  overflow: eligible in 60 min (60 min on the queued clock (QDate))" in out
