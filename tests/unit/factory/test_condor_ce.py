"""The HTCondor-CE adapter against its contract (a schedd stand-in: no HTCondor daemons here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.adapters.base import GlideinSpec, Submitted
from factory.adapters.condor_ce import CondorCEAdapter
from factory.errors import SiteUnavailable
from factory.glideins import GlideinState
from tests.support.schedd_standin import ScheddStandin
from tests.support.sites import make_adapter, make_entry


def spec(glidein_id: str) -> GlideinSpec:
    return GlideinSpec(
        glidein_id, f"updraft_contract_{glidein_id}", "#!/bin/sh\necho hi\n", {"pilot.token": b"secret-token\n"},
        {"GLIDEIN_Entry_Name": "CE1"}, cpus=8, memory_mb=16000, walltime_s=7200,
    )  # fmt: skip


@pytest.fixture
def adapter(tmp_path: Path) -> tuple[CondorCEAdapter, ScheddStandin]:
    entry = make_entry(
        "CE1", "condor", {"proxy": "/tmp/factory.proxy"}, gatekeeper="ce.example.org",
        submit_extras="+DESIRED_Queue = \"{{ GLIDEIN_Site }}\"", attributes={"GLIDEIN_Site": "Site1"},
    )  # fmt: skip
    made = make_adapter(entry, tmp_path / "entry")
    assert isinstance(made, CondorCEAdapter)
    schedd = ScheddStandin()
    made._schedd = schedd
    return made, schedd


def test_submission_is_a_grid_universe_job_with_the_token_as_a_file(
    adapter: tuple[CondorCEAdapter, ScheddStandin],
) -> None:
    made, schedd = adapter
    outcomes = made.submit([spec("g1"), spec("g2")])
    assert outcomes == [Submitted("1.0"), Submitted("2.0")]
    description = schedd.submitted[0]
    assert description["universe"] == "grid"
    assert description["grid_resource"] == "condor ce.example.org ce.example.org:9619"
    assert description["x509userproxy"] == "/tmp/factory.proxy"
    assert description["MY.UpdraftTag"] == '"updraft_contract_g1"'  # htcondor2.Submit spells +Attr MY.Attr
    assert (
        description["MY.xcount"] == "8"
        and description["MY.maxMemory"] == "16000"
        and description["MY.maxWallTime"] == "120"
    )
    assert description["MY.DESIRED_Queue"] == '"Site1"'  # submit_extras, rendered from the entry's attributes
    token_file = Path(description["transfer_input_files"])
    assert token_file.name == "pilot.token" and token_file.read_bytes() == b"secret-token\n"
    assert not any("secret-token" in value for value in description.values())  # never on a command line
    assert made.find(["updraft_contract_g2", "updraft_contract_nope"]) == {"updraft_contract_g2": "2.0"}


def test_states_are_mapped_from_the_schedd(adapter: tuple[CondorCEAdapter, ScheddStandin]) -> None:
    made, schedd = adapter
    made.submit([spec(f"g{i}") for i in range(5)])
    schedd.set("2.0", JobStatus=2, GridJobStatus="RUNNING")
    schedd.set("3.0", JobStatus=5, HoldReason="Error connecting to schedd ce.example.org")
    schedd.set("4.0", JobStatus=4, ExitCode=0)
    schedd.set("5.0", JobStatus=4, ExitCode=1)
    answer = made.status(["1.0", "2.0", "3.0", "4.0", "5.0", "99.0"])
    assert {k: v.state for k, v in answer.items()} == {
        "1.0": GlideinState.QUEUED, "2.0": GlideinState.RUNNING, "3.0": GlideinState.HELD, "4.0": GlideinState.COMPLETED, "5.0": GlideinState.FAILED,
    }  # fmt: skip
    assert answer["2.0"].native == "RUNNING (RUNNING)"
    assert "Error connecting" in answer["3.0"].reason


def test_remove_release_and_proxy_refresh_go_to_the_schedd(
    adapter: tuple[CondorCEAdapter, ScheddStandin], tmp_path: Path
) -> None:
    made, schedd = adapter
    made.submit([spec("g1"), spec("g2")])
    schedd.set("2.0", JobStatus=5, HoldReason="held")
    assert made.release(["2.0"]) == {"2.0": True}
    assert made.cancel(["1.0"]) == {"1.0": True}
    assert schedd.actions == [("Release", ["2.0"]), ("Remove", ["1.0"])]
    assert made.status(["1.0", "2.0"])["1.0"].state == GlideinState.REMOVED
    assert made.renew_credential(["2.0"], tmp_path / "new.proxy") == {"2.0": True}
    assert schedd.refreshed == [(2, 0, str(tmp_path / "new.proxy"))]


def test_an_unreachable_schedd_is_an_unavailable_site(adapter: tuple[CondorCEAdapter, ScheddStandin]) -> None:
    made, schedd = adapter
    schedd.down = True
    with pytest.raises(SiteUnavailable):
        made.status(["1.0"])
    assert made.submit([spec("g1")])[0].__class__.__name__ == "Retry"
