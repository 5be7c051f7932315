"""The factory's smaller parts: the startup script, the journal, the analysis, proxy delegation."""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from factory.analysis import analyze
from factory.glideins import GlideinState
from factory.journal import Journal
from factory.proxies import delegate, load_proxy, load_request, time_left
from factory.staging import StagingServer, stage_file
from factory.startup import StagedFile, StartupSpec, render
from tests.support.proxies import make_grid
from tests.support.sites import make_entry
from updraft.core.pilotrecord import parse_result


# -- the startup script -------------------------------------------------------------------------
class _Factory:
    name = "f1"
    pilot: dict[str, object] = {}
    glidein_lifetime_s = 3600


def startup(tmp_path: Path, pilot_bytes: bytes, expected: bytes, with_token: bool = True) -> tuple[int, str]:
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "source.pyz").write_bytes(expected)
    pilot = stage_file(staging, staging / "source.pyz")
    (staging / pilot.name).write_bytes(pilot_bytes)  # what the server will really hand out
    server = StagingServer(staging, "127.0.0.1", 0, lambda: "")
    url = server.start()
    try:
        entry = make_entry("E1", "local", attributes={"GLIDEIN_Site": "S1"})
        script = render(
            StartupSpec(
                _Factory(), entry, "g1", "fe.main", {}, "http://pool", url,
                StagedFile(pilot.name, pilot.sha256), [], time.time() + 60,
            )
        )  # fmt: skip
        node = tmp_path / "node"
        node.mkdir()
        (node / "glidein_startup.sh").write_text(script)
        if with_token:
            (node / "pilot.token").write_text("tok\n")
        done = subprocess.run(
            ["/bin/sh", "glidein_startup.sh"],
            cwd=node,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin"},
        )
        return done.returncode, done.stdout
    finally:
        server.stop()


def test_a_tampered_pilot_is_refused_with_a_corruption_record(tmp_path: Path) -> None:
    code, stdout = startup(tmp_path, b"print('evil')\n", b"print('good')\n")
    record = parse_result(stdout)
    assert code == 1 and record is not None
    assert record["status"] == "validation_failed"
    assert record["checks"][0]["failure_type"] == "Corruption"


def test_a_missing_token_is_a_config_failure(tmp_path: Path) -> None:
    code, stdout = startup(tmp_path, b"x", b"x", with_token=False)
    record = parse_result(stdout)
    assert code == 1 and record is not None and record["checks"][0]["failure_type"] == "Config"


def test_the_script_carries_settings_not_the_token(tmp_path: Path) -> None:
    entry = make_entry(
        "E1", "local", attributes={"GLIDEIN_Site": "S1", "GLIDEIN_Max_Walltime": 600}, glexec="auto"
    )
    lease = time.time() + 100
    script = render(
        StartupSpec(
            _Factory(), entry, "g9", "fe.grp", {"GLIDEIN_Glexec_Use": "REQUIRED", "Unknown": "x"},
            "http://pool", "http://stage", StagedFile("p.pyz", "ab" * 32),
            [StagedFile("check.sh", "cd" * 32, "VO_Config")], lease,
        )
    )  # fmt: skip
    settings = json.loads(script.split("<<'UPDRAFT_PILOT_JSON'\n", 1)[1].split("\nUPDRAFT_PILOT_JSON", 1)[0])
    assert settings["glexec_policy"] == "REQUIRED" and settings["glexec"] == "auto"
    assert settings["max_walltime_s"] == 600 and settings["lease_until"] == pytest.approx(lease)
    assert settings["custom_checks"] == [{"path": "check.sh", "sha256": "cd" * 32, "type": "VO_Config"}]
    assert (settings["frontend"], settings["group"]) == ("fe", "grp")
    assert "Unknown" not in script and "token" not in json.dumps(settings).lower().replace("token_file", "")


# -- the journal --------------------------------------------------------------------------------
def test_journal_write_ahead_moves_and_counts(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    first, second = journal.new_glideins("f1", "E1", "fe.g", 2)
    assert first.state == GlideinState.UNSUBMITTED and first.tag.startswith("updraft_f1_")
    journal.submitted(first, "site-1")
    glidein = journal.get(first.glidein_id)
    assert glidein is not None and glidein.state == GlideinState.QUEUED and glidein.site_id == "site-1"
    assert journal.move(glidein, GlideinState.RUNNING, "R")
    assert not journal.move(glidein, GlideinState.QUEUED, "Q")  # a late answer from the site: ignored
    journal.set(second.glidein_id, remove_requested=time.time())
    assert journal.counts() == {("E1", "fe.g"): {"running": 1, "removing": 1}}
    assert journal.move(glidein, GlideinState.COMPLETED)
    assert [g.glidein_id for g in journal.uncleaned()] == [first.glidein_id]
    assert journal.find("site-1").glidein_id == first.glidein_id
    adopted = journal.adopt("f1", "E1", "updraft_f1_abcdef012345", "site-9", GlideinState.QUEUED)
    assert adopted.glidein_id == "abcdef012345" and "adopted" in adopted.reason


def test_downtimes_by_scope(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    now = time.time()
    journal.add_downtime("entry", "E1", now - 1, now + 60, "disk")
    frontend = journal.add_downtime("frontend", "fe2", now - 1, None, "")
    journal.add_downtime("entry", "E3", now + 3600, None, "later")
    assert journal.in_downtime("E1", "fe.g") is not None
    assert journal.in_downtime("E2", "fe.g") is None
    assert journal.in_downtime("E2", "fe2.main") is not None
    assert journal.in_downtime("E3") is None  # not yet
    assert journal.end_downtime(frontend)
    assert journal.in_downtime("E2", "fe2.main") is None
    assert len(journal.downtimes(include_past=True)) == 3


def test_analysis_of_final_records(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    rows = journal.new_glideins("f1", "E1", "fe.g", 3)
    records = [
        {"status": "ok", "exit_status": 0, "lifetime_s": 3600, "cpus": 2, "job_core_s": 5400, "jobs": {"started": 3}},
        {"status": "validation_failed", "exit_status": 1, "lifetime_s": 1800, "cpus": 2, "job_core_s": 0, "jobs": {"started": 0},
         "checks": [{"name": "disk", "ok": False, "failure_type": "WN_Resource"}]},
    ]  # fmt: skip
    for row, record in zip(rows, records, strict=False):
        journal.submitted(row, f"s-{row.glidein_id}")
        journal.move(journal.get(row.glidein_id), GlideinState.RUNNING)
        journal.move(journal.get(row.glidein_id), GlideinState.COMPLETED)
        journal.set(row.glidein_id, record=record)
    (result,) = analyze(journal.recent(0))
    summary = result.to_dict()
    assert summary["submitted"] == 2 and summary["started"] == 2
    assert summary["validation_failures"] == {"WN_Resource": 1}
    assert summary["core_hours"] == 3.0 and summary["used_core_hours"] == 1.5 and summary["efficiency"] == 0.5
    assert summary["jobs"] == 3 and summary["pilots_without_jobs"] == 1


# -- proxies ------------------------------------------------------------------------------------
def test_delegation_signs_the_ces_key_and_never_outlives_our_proxy(tmp_path: Path) -> None:
    grid = make_grid(tmp_path / "grid")
    grid.new_proxy(hours=2)
    assert 0 < time_left(grid.proxy) <= 2 * 3600
    ce_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    request = (
        x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(ce_key, hashes.SHA256())
    )
    pem = delegate(grid.proxy.read_bytes(), request.public_bytes(serialization.Encoding.PEM), hours=48)
    chain = x509.load_pem_x509_certificates(pem)
    proxy, _, ours = load_proxy(grid.proxy.read_bytes())
    assert chain[0].public_key().public_numbers() == ce_key.public_key().public_numbers()
    assert chain[0].issuer == proxy.subject and chain[1:] == ours
    assert chain[0].not_valid_after_utc <= proxy.not_valid_after_utc
    assert chain[0].not_valid_after_utc < datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=3)


def test_arc_requests_with_version_2_are_read(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = bytearray(
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    der[der.index(b"\x02\x01\x00") + 2] = 2  # what A-REX 6.17 sends
    pem = (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(bytes(der))
        + b"-----END CERTIFICATE REQUEST-----\n"
    )
    assert load_request(pem).public_key().public_numbers() == key.public_key().public_numbers()
