"""Pilot pieces with no pool: resources, the state table, START, check output, the final record."""

from pathlib import Path

import pytest

from pilot import resources
from pilot.checks.vo import parse_check_output
from pilot.slot import ALLOWED, PILOT_STATES, TERMINAL, PilotState, attribute_text, start_expression
from updraft.core.errors import IllegalTransition
from updraft.core.pilotrecord import parse_result, write_result


def test_resources_from_the_batch_slot(tmp_path: Path) -> None:
    found = resources.detect(
        "auto", 0, 0, tmp_path, {"SLURM_CPUS_ON_NODE": "1", "SLURM_MEM_PER_NODE": "1500"}
    )
    assert (found.cpus, found.cpus_source, found.memory_mb, found.memory_source) == (
        1,
        "batch slot",
        1500,
        "batch slot",
    )
    configured = resources.detect("7", 2048, 1.0, tmp_path, {})
    assert (configured.cpus, configured.memory_mb, configured.disk_kb) == (7, 2048, 1024 * 1024)
    node = resources.detect("node", 0, 0, tmp_path, {})
    assert node.cpus == node.node_cpus and node.memory_mb > 0


def test_state_table() -> None:
    assert {PilotState.DONE} == TERMINAL
    assert PILOT_STATES.advance(PilotState.IDLE, PilotState.BUSY) == PilotState.BUSY
    with pytest.raises(IllegalTransition):
        PILOT_STATES.advance(PilotState.FAILED, PilotState.BUSY)
    assert all(PilotState.DONE in ALLOWED[s] or s in (PilotState.DONE, PilotState.BUSY) for s in PilotState)


def test_start_expression_and_attributes() -> None:
    assert start_expression("true", "true") == "(time() < GLIDEIN_ToRetire)"
    assert (
        start_expression('TARGET.VO == "cms"', "TARGET.X > 1")
        == '(TARGET.VO == "cms") && (TARGET.X > 1) && (time() < GLIDEIN_ToRetire)'
    )
    assert (
        attribute_text("cms") == '"cms"'
        and attribute_text(4) == "4"
        and attribute_text("expr:Memory > 1") == "Memory > 1"
    )


def test_custom_check_output() -> None:
    said = parse_check_output(
        "message: scratch is full\ntype: WN_Resource\nmetric: free_gb=0.5\nnoise\ntype: NotAType\n"
    )
    assert said == {"message": "scratch is full", "type": "WN_Resource", "metrics": {"free_gb": "0.5"}}


def test_final_record_round_trip(tmp_path: Path) -> None:
    import io

    stream = io.StringIO()
    write_result({"status": "ok", "jobs": {"exited": 2}}, tmp_path / "r.json", stream)
    assert parse_result("some log line\n" + stream.getvalue()) == {"status": "ok", "jobs": {"exited": 2}}
    assert (tmp_path / "r.json").exists()
    assert parse_result("no record here") is None
