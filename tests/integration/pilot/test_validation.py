"""Validation: each built-in check passes on a good node and fails, reported and structured, on a bad one."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.pilots_real import PilotLauncher
from tests.support.pools import RunningPool
from tests.support.proxies import make_user_proxy


def test_a_good_node_passes_every_check(pilots: PilotLauncher, pool: RunningPool, tmp_path: Path) -> None:
    software = tmp_path / "cvmfs" / "cms.cern.ch"
    software.mkdir(parents=True)
    probe = tmp_path / "probe.sh"
    probe.write_text("#!/bin/sh\necho 'message: all good'\necho 'metric: speed=fast'\n")
    probe.chmod(0o755)
    pilot = pilots.start(
        software_paths=[str(software)],
        software_probe=f"test -d {software}",
        custom_checks=[{"path": str(probe), "sha256": hashlib.sha256(probe.read_bytes()).hexdigest()}],
        idle_timeout_s=1,
    )
    result = pilot.wait()
    assert result["status"] == "ok" and result["reason"] == "idle timeout (no job)"
    checks = {c["name"]: c for c in result["checks"]}
    assert list(checks) == [
        "python",
        "blacklist",
        "drain",
        "disk",
        "tmp",
        "resources",
        "software",
        "pool",
        "squid",
        "credential",
        "glexec",
        "custom",
    ]
    assert all(c["ok"] for c in checks.values())
    assert checks["custom"]["metrics"] == {"probe.sh.speed": "fast"}
    assert checks["resources"]["metrics"]["cpus"] == 1
    assert pilot.returncode == 0


def failing_cases(tmp_path: Path) -> list[tuple[str, dict[str, Any], dict[str, str], str, int, str]]:
    drain = tmp_path / "DRAIN"
    drain.write_text("")
    broken = tmp_path / "broken.sh"
    broken.write_text(
        "#!/bin/sh\necho 'message: no scratch space for the VO'\necho 'type: WN_Resource'\necho 'metric: free=0'\nexit 3\n"
    )
    broken.chmod(0o755)
    tampered = tmp_path / "tampered.sh"
    tampered.write_text("#!/bin/sh\nexit 0\n")
    tampered.chmod(0o755)
    short_proxy = tmp_path / "short.proxy"
    make_user_proxy(short_proxy, hours=1)
    return [
        ("python", {"min_python": "9.9"}, {}, "Config", 2701, "older than"),
        ("blacklist", {"blacklist": ["*"]}, {}, "WN_Resource", 2601, "blacklisted"),
        ("drain", {"drain_file": str(drain)}, {}, "WN_Resource", 2602, "draining"),
        ("disk", {"min_disk_gb": 1e9}, {}, "WN_Resource", 2101, "GB free"),
        ("tmp", {}, {"TMPDIR": "/nonexistent/tmp"}, "WN_Resource", 2102, "not writable"),
        ("resources", {"min_cpus": 9999}, {}, "WN_Resource", 2103, "core(s)"),
        (
            "software",
            {"software_paths": ["/cvmfs/nosuch.example.org"]},
            {},
            "VO_Config",
            2201,
            "not available",
        ),
        ("software", {"software_probe": "exit 7"}, {}, "VO_Config", 2202, "exit 7"),
        (
            "squid",
            {"squid": "http://127.0.0.1:9", "squid_required": True},
            {},
            "Network",
            2301,
            "no squid proxy serves",
        ),
        (
            "credential",
            {"credential_margin_s": 3600, "lifetime_s": 86400},
            {"X509_USER_PROXY": str(short_proxy)},
            "VO_Proxy",
            2401,
            "expires in",
        ),
        ("glexec", {"glexec_policy": "REQUIRED", "glexec": "none"}, {}, "VO_Config", 2501, "requires gLExec"),
        ("custom", {"custom_checks": [{"path": str(broken)}]}, {}, "WN_Resource", 2801, "no scratch space"),
        (
            "custom",
            {"custom_checks": [{"path": str(tampered), "sha256": "0" * 64}]},
            {},
            "Corruption",
            2901,
            "sha256",
        ),
    ]


def test_each_check_can_fail(pilots: PilotLauncher, pool: RunningPool, tmp_path: Path) -> None:
    cases = failing_cases(tmp_path)
    started = [
        (case, pilots.start(env=case[2], glidein_name=f"fail{i}", **case[1])) for i, case in enumerate(cases)
    ]
    for (name, _config, _env, failure_type, code, words), pilot in started:
        result = pilot.wait()
        failed = result["checks"][-1]
        assert (failed["name"], failed["ok"], failed["failure_type"], failed["code"]) == (
            name,
            False,
            failure_type,
            code,
        ), failed
        assert words in failed["message"], failed["message"]
        assert result["status"] == "validation_failed" and pilot.returncode == 1
        assert result["jobs"]["started"] == 0
    ads = pool.client().query_ads(
        "pilotfailure", "", ["GLIDEIN_Name", "FailedCheck", "FailureType", "FailureCode"]
    )
    reported = {(ad["FailedCheck"].strip('"'), int(ad["FailureCode"])) for ad in ads}
    for name, _c, _e, _t, code, _w in cases:
        assert (name, code) in reported
    events = [e for e in pool.client().events(0, 10000) if e.type == "pilot_failed"]
    assert {(e.details["check"], e.details["code"]) for e in events} >= {(c[0], c[4]) for c in cases}


def test_failed_node_holds_its_slot(pilots: PilotLauncher) -> None:
    started = time.monotonic()
    pilot = pilots.start(min_python="9.9", failure_hold_s=3)
    pilot.wait()
    assert time.monotonic() - started >= 3


def test_bad_parameters_exit_2(pilots: PilotLauncher) -> None:
    pilot = pilots.start(glexec_policy="SOMETIMES")
    pilot.process.communicate(timeout=30)
    assert pilot.returncode == 2
    assert "glexec_policy" in pilot.log()


def test_bundle_runs_on_a_bare_python(pilots: PilotLauncher) -> None:
    """The zipapp on the system interpreter with no site-packages at all (-I -S): standard library only."""
    system = "/usr/bin/python3"
    if not os.path.exists(system):
        pytest.skip("no /usr/bin/python3 on this machine (Debian's python3 package)")
    pilots.python = system
    pilots.python_flags = ["-I", "-S"]
    pilot = pilots.start(idle_timeout_s=1)
    result = pilot.wait()
    assert result["status"] == "ok", pilot.log()


def test_a_pilot_that_cannot_reach_its_pool_says_so_with_exit_3(
    pilots: PilotLauncher, tmp_path: Path
) -> None:
    """Not "ok, idle timeout (no job)": the pool check fails in seconds, the record says why."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    pilot = pilots.start(pool=f"http://127.0.0.1:{port}", idle_timeout_s=300, failure_hold_s=600)
    result = pilot.wait()
    assert time.monotonic() - started < 60
    assert result["exit_status"] == 3 and result["status"] == "pool_lost"
    assert result["reason"].startswith("never reached the pool")
    failed = result["checks"][-1]
    assert (failed["name"], failed["failure_type"], failed["code"]) == ("pool", "Network", 2305)


def test_a_pool_certificate_the_pilot_cannot_verify_is_a_network_failure(
    pilots: PilotLauncher, tmp_path: Path
) -> None:
    from tests.support.pools import start_pool

    tls_pool = start_pool(tmp_path / "tls-pool", ["--tls"])
    try:
        pilot = pilots.start(pool=tls_pool.url, ca_file="", idle_timeout_s=300)  # the system's CAs only
        result = pilot.wait()
        failed = result["checks"][-1]
        assert (failed["name"], failed["code"], result["exit_status"]) == ("pool", 2306, 3)
        assert "certificate" in failed["message"]
    finally:
        tls_pool.stop()
