"""One contract, every real site type: submit, find by tag, status, output, cancel, cleanup.

The same tests run on each adapter against its real site (local processes, a real Slurm
cluster, ...).  A site that cannot run here skips with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from factory.adapters.base import GlideinSpec, SiteAdapter, SiteStatus, Submitted
from factory.adapters.gram import stop_gass_servers
from factory.errors import SiteUnavailable
from factory.glideins import TERMINAL, GlideinState
from tests.support.sites import make_adapter, make_entry

SCRIPT = """#!/bin/sh
echo "glidein {glidein_id} starting in $(pwd)"
echo "token: $(cat pilot.token)"
sleep {sleep_s}
echo 'UPDRAFT_PILOT_RESULT {{"status": "ok", "exit_status": 0, "glidein": "{glidein_id}", "jobs": {{"started": 0}}}}'
"""


def spec(glidein_id: str, sleep_s: float = 0.5) -> GlideinSpec:
    return GlideinSpec(
        glidein_id=glidein_id,
        tag=f"updraft_contract_{glidein_id}",
        startup_script=SCRIPT.format(glidein_id=glidein_id, sleep_s=sleep_s),
        files={"pilot.token": f"token-of-{glidein_id}\n".encode()},
        environment={"GLIDEIN_Entry_Name": "contract"},
        cpus=1,
        memory_mb=100,
        walltime_s=300,
    )


def answered(ask: Callable[[], Any], tries: int = 5) -> Any:
    """A site call asked again while the site says it cannot answer now (as the next cycle would)."""
    for attempt in range(tries):
        try:
            return ask()
        except SiteUnavailable:
            if attempt == tries - 1:
                raise
            time.sleep(1)
    return None


def until(
    adapter: SiteAdapter,
    site_ids: list[str],
    done: Callable[[dict[str, SiteStatus]], bool],
    timeout: float = 60,
) -> dict[str, SiteStatus]:
    deadline = time.monotonic() + timeout
    while True:
        answer = adapter.status(site_ids)
        if done(answer):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"site answered {answer} after {timeout} s")
        time.sleep(0.3)


@pytest.fixture(params=["local", "slurm", "slurm-over-ssh", "gram", "arc", "cream"])
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SiteAdapter]:
    kind = request.param
    if kind == "local":
        entry = make_entry("contract", "local")
    elif kind == "slurm-over-ssh":  # the same cluster, its commands run on a login host over SSH
        settings = site_settings("slurm", request.getfixturevalue("slurm_site"))
        settings["options"] |= ssh_options(request.getfixturevalue("ssh_site"))  # type: ignore[operator]
        entry = make_entry("contract", "slurm", **settings)
    else:
        values = request.getfixturevalue(f"{kind}_site")
        entry = make_entry("contract", kind, **site_settings(kind, values))
    made = make_adapter(entry, tmp_path / "entry")
    submitted: list[str] = []
    submit = made.submit

    def recording(glideins):
        outcomes = submit(glideins)
        submitted.extend(o.site_id for o in outcomes if isinstance(o, Submitted))
        return outcomes

    made.submit = recording
    yield made
    if submitted:
        made.cancel(submitted)
    close = getattr(made, "close", None)
    if close:
        close()
    stop_gass_servers([tmp_path / "entry"])


def ssh_options(values: dict[str, str]) -> dict[str, object]:
    """A batch entry's options for the login host scripts/sites/sshd.sh started."""
    return {
        "ssh": values["SSH_TARGET"],
        "ssh_port": int(values["SSH_PORT"]),
        "ssh_key": values["SSH_KEY"],
        "ssh_known_hosts": values["SSH_KNOWN_HOSTS"],
        "remote_dir": "updraft-contract",
    }


def site_settings(kind: str, values: dict[str, str]) -> dict[str, object]:
    if kind == "slurm":
        return {"options": {"slurm_conf": values["SLURM_CONF"]}, "gatekeeper": "debug"}
    if kind == "gram":
        options = {
            "proxy": values["X509_USER_PROXY"],
            "cert_dir": values["X509_CERT_DIR"],
            "port_range": values["GLOBUS_TCP_PORT_RANGE"],
        }
        return {"options": options, "gatekeeper": values["GRAM_CONTACT"]}
    if kind == "arc":
        options = {"proxy": values["X509_USER_PROXY"], "ca": values["ARC_CA"], "queue": values["ARC_QUEUE"]}
        return {"options": options, "gatekeeper": values["ARC_URL"]}
    if kind == "cream":
        options = {"proxy": values["X509_USER_PROXY"], "ca": values["CREAM_CA"], "lease_s": 600}
        return {"options": options, "gatekeeper": values["CREAM_URL"]}
    raise ValueError(kind)


def test_submit_find_run_output_cleanup(adapter: SiteAdapter) -> None:
    outcomes = adapter.submit([spec("g1"), spec("g2")])
    assert all(isinstance(o, Submitted) for o in outcomes), outcomes
    site_ids = [o.site_id for o in outcomes]
    assert len(set(site_ids)) == 2
    if adapter.finds_by_tag:  # a restarted factory finds its glideins by tag, and only those asked for
        assert adapter.find(["updraft_contract_g1", "updraft_contract_nope"]) == {
            "updraft_contract_g1": site_ids[0]
        }
        assert {"updraft_contract_g1", "updraft_contract_g2"} <= set(answered(adapter.list_tagged))
    else:  # two-phase: nothing runs before the commit that follows the journal's record
        time.sleep(1)
        assert all(s.state == GlideinState.QUEUED for s in adapter.status(site_ids).values())
    adapter.commit(dict(zip(site_ids, ("g1", "g2"), strict=True)))
    adapter.commit(dict(zip(site_ids, ("g1", "g2"), strict=True)))  # committing twice is harmless
    first = adapter.status(site_ids)
    assert set(first) == set(site_ids) and all(
        s.state in (GlideinState.QUEUED, GlideinState.RUNNING, GlideinState.COMPLETED) for s in first.values()
    )
    assert all(s.native for s in first.values())  # the site's own words, for operators
    final = until(adapter, site_ids, lambda a: all(a.get(i) and a[i].state in TERMINAL for i in site_ids))
    assert all(s.state == GlideinState.COMPLETED for s in final.values()), final
    for glidein_id, site_id in zip(("g1", "g2"), site_ids, strict=True):
        output = adapter.fetch_output(site_id, glidein_id)
        assert output is not None and f"token: token-of-{glidein_id}" in output.stdout
        assert output.stdout.rstrip().endswith("}") and "UPDRAFT_PILOT_RESULT" in output.stdout
    adapter.cleanup(site_ids)
    for glidein_id in ("g1", "g2"):
        adapter.forget(glidein_id)


def test_cancel_a_running_glidein(adapter: SiteAdapter) -> None:
    (outcome,) = adapter.submit([spec("long", sleep_s=120)])
    assert isinstance(outcome, Submitted)
    adapter.commit({outcome.site_id: "long"})
    until(
        adapter,
        [outcome.site_id],
        lambda a: a.get(outcome.site_id) is not None and a[outcome.site_id].state == GlideinState.RUNNING,
    )
    assert adapter.cancel([outcome.site_id]) == {outcome.site_id: True}
    final = until(
        adapter,
        [outcome.site_id],
        lambda a: outcome.site_id not in a or a[outcome.site_id].state in TERMINAL,
        timeout=30,
    )
    if outcome.site_id in final:
        assert final[outcome.site_id].state == GlideinState.REMOVED, final


def unknown_id(adapter: SiteAdapter) -> str:
    """An id the site has never issued, in the site's own format."""
    if adapter.kind == "cream":
        return "CREAM0000000000"
    if adapter.kind != "gram":
        return "999999"
    (outcome,) = adapter.submit([spec("known", sleep_s=0)])  # a live job manager, then a job it never had
    assert isinstance(outcome, Submitted)
    adapter.commit({outcome.site_id: "known"})
    head, job, tail = outcome.site_id.rstrip("/").rsplit("/", 2)[0], "1234567890", ""
    return f"{head}/{job}/{outcome.site_id.rstrip('/').rsplit('/', 1)[1]}/{tail}"


def test_unknown_ids_are_absent_not_errors(adapter: SiteAdapter) -> None:
    assert adapter.status([unknown_id(adapter)]) == {}
    assert adapter.find(["updraft_contract_never"]) == {}
