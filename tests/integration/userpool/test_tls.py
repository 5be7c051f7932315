"""The pool over HTTPS with the CA it generated; clients find the CA through pool.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.pools import start_pool
from updraft.core.client import Client, PoolUnreachable


def test_https_with_generated_ca(tmp_path: Path, workdir: Path) -> None:
    pool = start_pool(tmp_path / "tls", ["--tls"])
    try:
        assert pool.url.startswith("https://127.0.0.1:")
        assert (pool.home / "tls" / "ca.pem").exists()
        assert pool.client().ping().service == "updraft-pool"
        (workdir / "t.sub").write_text("executable = job.sh\nqueue\n")
        result = pool.run("condor_submit", "t.sub", user="tina", cwd=workdir)
        assert result.returncode == 0, result.stderr
        with pytest.raises(PoolUnreachable):
            Client(pool.url, None).ping()  # the system trust store does not know our CA
    finally:
        pool.stop()
