"""Schemathesis against the pool's own OpenAPI document: whatever it sends, no 5xx.

Run once per kind of caller (user, pilot, frontend, admin), so that requests get past
authentication into every route's own checks.  The event streams are left out (they never
end by design; their parameters are in the bad-input corpus).  A fixed seed keeps CI
repeatable; the pool must still be up and consistent at the end.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.accounts import give_to_job_account
from tests.support.pools import BIN, RunningPool, start_pool
from updraft.core.protocol import Scope

SCHEMATHESIS = BIN / "schemathesis"
pytestmark = pytest.mark.skipif(
    not SCHEMATHESIS.exists(), reason="schemathesis is not installed (pip install -e .[test])"
)


SCOPES = [Scope.USER, Scope.PILOT, Scope.FRONTEND, Scope.ADMIN]


@pytest.fixture(scope="module")
def fuzzed_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    running = start_pool(tmp_path_factory.mktemp("fuzz") / "pool")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def fuzzers(
    fuzzed_pool: RunningPool, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[Scope, subprocess.Popen[str]]]:
    """One schemathesis run per kind of caller, all at once: most of a run is waiting for answers."""
    workdir = give_to_job_account(tmp_path_factory.mktemp("fuzz-work"))
    (workdir / "job.sh").write_text("#!/bin/sh\necho job\n")
    (workdir / "job.sh").chmod(0o755)
    running: dict[Scope, subprocess.Popen[str]] = {}
    for scope in SCOPES:
        fuzzed_pool.submit("executable = job.sh\nqueue 3\n", f"fuzz-{scope.value}", workdir)  # to act on
        token = fuzzed_pool.token(f"fuzz-{scope.value}", scope)
        running[scope] = subprocess.Popen(
            [
                str(SCHEMATHESIS), "run", f"{fuzzed_pool.url}/openapi.json",
                "--checks", "not_a_server_error",
                "--header", f"Authorization: Bearer {token}",
                "--phases", "coverage,fuzzing",
                "--max-examples", "12",
                "--seed", "20261122",
                "--workers", "2",
                "--exclude-path-regex", "stream",
                "--request-timeout", "20",
                "--no-color",
            ],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=tmp_path_factory.mktemp(f"fuzz-{scope.value}"),
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        )  # fmt: skip
    try:
        yield running
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
            process.communicate()


@pytest.mark.parametrize("scope", SCOPES, ids=lambda s: s.value)
def test_no_request_makes_the_pool_fail(
    fuzzed_pool: RunningPool, fuzzers: dict[Scope, subprocess.Popen[str]], scope: Scope
) -> None:
    output, _ = fuzzers[scope].communicate(timeout=600)
    summary = output[-4000:]
    print(summary)
    assert fuzzers[scope].returncode == 0, f"schemathesis found server errors:\n{output[-20000:]}"
    assert "generated" in summary and "passed" in summary
    assert fuzzed_pool.process.process.poll() is None, "the pool died under fuzzing"
    assert fuzzed_pool.run("condor_q", "-allusers", "-af", "ClusterId", user="admin").returncode == 0
