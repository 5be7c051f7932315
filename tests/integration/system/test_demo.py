"""README's first command: the demo runs the whole system, finishes, and leaves nothing running."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.sites import require_root


@pytest.mark.timeout(400)
def test_the_demo_runs_every_job_and_stops_everything() -> None:
    require_root("the demo's xrootd storage")
    # not under pytest's 0700 temporary directory: the xrootd account must reach the demo's storage
    work = Path(tempfile.mkdtemp(prefix="updraft-demo-test-"))
    result = subprocess.run(
        [sys.executable, "-m", "updraft.demo", "--work", str(work), "--timeout", "300"],
        capture_output=True, text=True, timeout=380,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "33/33 jobs done" in out and "1 node(s) failed validation" in out  # 28 jobs, a DAG and its 4 nodes
    assert "exit code 0; the workflow is merged: node merge returned 0" in out
    assert "from root://localhost:11095//store/demo/input.dat" in out  # an overflowed job read over xrootd
    assert "Every process the demo started has stopped." in out
    leftovers = subprocess.run(["pgrep", "-f", str(work)], capture_output=True, text=True).stdout.split()
    assert not leftovers, f"processes left running: {leftovers}"
    shutil.rmtree(work, ignore_errors=True)
