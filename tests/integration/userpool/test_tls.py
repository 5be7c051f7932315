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


def test_tls_names_are_in_the_certificate_and_pool_json(tmp_path: Path) -> None:
    """--tls-name: clients that use the pool's host name verify it; pool.json advertises the name."""
    import json
    import ssl
    import urllib.parse

    from cryptography import x509

    # the first name is advertised (localhost, so that this test's clients resolve it); both are certified
    pool = start_pool(tmp_path / "named", ["--tls", "--tls-name", "localhost", "--tls-name", "pool.test"])
    try:
        advertised = json.loads((pool.home / "pool.json").read_text())["url"]
        assert urllib.parse.urlsplit(advertised).hostname == "localhost"
        cert = x509.load_pem_x509_certificate((pool.home / "tls" / "server.pem").read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {"pool.test", "localhost"} <= set(names.get_values_for_type(x509.DNSName))
        port = urllib.parse.urlsplit(advertised).port
        context = ssl.create_default_context(cafile=str(pool.home / "tls" / "ca.pem"))
        import socket

        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="pool.test") as tls,  # verified by the name
        ):
            assert tls.version()
    finally:
        pool.stop()


def test_plain_http_beyond_loopback_is_refused_unless_said(tmp_path: Path) -> None:
    import subprocess
    import sys

    updraft = str(Path(sys.executable).parent / "updraft")
    refused = subprocess.run(
        [updraft, "pool", "--home", str(tmp_path / "h"), "--host", "0.0.0.0", "--port", "0", "--allow-remote"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (
        refused.returncode != 0 and "refusing plain HTTP" in refused.stderr and "--tls-name" in refused.stderr
    )
    shown = subprocess.run([updraft, "pool", "--help"], capture_output=True, text=True, timeout=60)
    assert (
        "--allow-remote" in shown.stdout
        and "--insecure-http" in shown.stdout
        and "--tls-name" in shown.stdout
    )


def test_a_tls_pool_stops_at_once_while_a_client_keeps_a_connection_open(tmp_path: Path) -> None:
    """A pooled keep-alive connection never answers the pool's close_notify: the stop must not
    wait for it (asyncio would wait 30 s per connection)."""
    import time

    pool = start_pool(tmp_path / "tls", ["--tls"])
    client = pool.client()
    assert client.ping().service == "updraft-pool"  # the connection stays in the client's pool
    began = time.monotonic()
    pool.stop()
    assert time.monotonic() - began < 10
    assert "pool stopped" in (pool.home / "pool.stderr").read_text()
