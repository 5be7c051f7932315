"""Batch sites over SSH (factory/adapters/remote.py): what is run on the login host, and how failures read.

The runner here stands in for ``ssh`` only: it takes the command line ssh would send and
runs it with ``sh -c`` in a directory playing the login account's home, so the real tar,
base64 and shell quoting are exercised.  tests/integration/factory/test_adapter_contract.py
runs the same adapter through a real sshd and a real Slurm.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from factory.adapters.base import Completed, GlideinSpec, Retry, Submitted
from factory.adapters.remote import SSH_FAILED, pack, unpack
from factory.adapters.slurm import SlurmAdapter
from factory.config import ConfigError
from factory.errors import SiteUnavailable
from tests.support.sites import make_entry


class LoginHost:
    """Runs what ssh would run remotely, in ``home``; ``down`` makes every call fail as ssh does."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.down = False
        self.calls: list[list[str]] = []
        self.sbatch: list[str] = []

    def __call__(
        self, argv: list[str], timeout: float = 60.0, input: str | None = None, **_: Any
    ) -> Completed:
        self.calls.append(argv)
        assert argv[0] == "ssh" and "--" in argv, argv
        if self.down:
            return Completed(
                argv, SSH_FAILED, "", "ssh: connect to host login.example port 22: No route to host\n"
            )
        script = argv[argv.index("--") + 1]
        if script.startswith("env SLURM_CONF=") or script.startswith("sbatch"):
            self.sbatch.append(script)
            return Completed(argv, 0, "4242;cluster\n", "")
        done = subprocess.run(
            ["sh", "-c", script], cwd=self.home, capture_output=True, text=True, input=input
        )
        return Completed(argv, done.returncode, done.stdout, done.stderr)


def glidein(glidein_id: str) -> GlideinSpec:
    return GlideinSpec(
        glidein_id, f"updraft_f_{glidein_id}", "#!/bin/sh\necho started\n", {"pilot.token": b"secret\n"},
        {}, cpus=2, memory_mb=1000, walltime_s=600,
    )  # fmt: skip


@pytest.fixture
def site(tmp_path: Path) -> tuple[SlurmAdapter, LoginHost]:
    home = tmp_path / "home"
    home.mkdir()
    entry = make_entry(
        "remote",
        "slurm",
        {"ssh": "glidein@login.example", "slurm_conf": "/etc/slurm/x.conf"},
        gatekeeper="debug",
    )
    login = LoginHost(home)
    adapter = SlurmAdapter(entry, "f", tmp_path / "entries" / "remote", run=login)
    return adapter, login


def test_the_glidein_is_copied_to_the_login_host_and_sbatch_runs_there(
    site: tuple[SlurmAdapter, LoginHost],
) -> None:
    adapter, login = site
    assert adapter.submit([glidein("g1")]) == [Submitted("4242")]
    remote = login.home / "updraft-glideins" / "g1"
    assert (remote / "pilot.token").read_bytes() == b"secret\n"
    assert (remote / "pilot.token").stat().st_mode & 0o777 == 0o600
    assert (remote / "glidein_startup.sh").stat().st_mode & 0o777 == 0o755
    (command,) = login.sbatch
    assert command.startswith("env SLURM_CONF=/etc/slurm/x.conf sbatch --parsable")
    assert f"--chdir={remote.resolve()}" in command and command.endswith(
        f"{remote.resolve()}/glidein_startup.sh"
    )
    assert "secret" not in " ".join(" ".join(call) for call in login.calls)  # the token travels on stdin only
    ssh = login.calls[-1]
    assert ssh[ssh.index("BatchMode=yes") - 1 : ssh.index("BatchMode=yes") + 1] == ["-o", "BatchMode=yes"]
    assert "StrictHostKeyChecking=yes" in ssh


def test_output_is_read_back_and_the_directory_removed(site: tuple[SlurmAdapter, LoginHost]) -> None:
    adapter, login = site
    adapter.submit([glidein("g1")])
    remote = login.home / "updraft-glideins" / "g1"
    (remote / "stdout").write_text("pilot says hi\nUPDRAFT_PILOT_RESULT {}\n")
    output = adapter.fetch_output("4242", "g1")
    assert output is not None and output.stdout.startswith("pilot says hi") and output.stderr == ""
    (remote / "stderr").write_bytes(b"log \xff\n")
    output = adapter.fetch_output("4242", "g1")
    assert output is not None and output.stderr == "log \ufffd\n"
    adapter.forget("g1")
    assert not remote.exists()
    assert adapter.fetch_output("4242", "g1") is None  # gone: no output, not an error


def test_a_lost_connection_is_a_site_that_cannot_be_reached_now(site: tuple[SlurmAdapter, LoginHost]) -> None:
    adapter, login = site
    adapter.submit([glidein("g1")])
    login.down = True
    (outcome,) = adapter.submit([glidein("g2")])
    assert isinstance(outcome, Retry) and "No route to host" in outcome.reason  # retried, never refused
    with pytest.raises(SiteUnavailable, match=r"ssh to glidein@login\.example failed"):
        adapter.status(["4242"])
    with pytest.raises(SiteUnavailable):
        adapter.fetch_output("4242", "g1")  # the output is still there: fetched again later
    with pytest.raises(SiteUnavailable):
        adapter.list_tagged()  # never read as "the site has none of our glideins"


def test_pack_and_unpack_keep_only_plain_files() -> None:
    text = pack({"a": (b"\x00\x01", 0o600), "b.sh": (b"#!/bin/sh\n", 0o755)})
    assert unpack(text) == {"a": b"\x00\x01", "b.sh": b"#!/bin/sh\n"}


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"ssh": "glidein@login host"}, "options.ssh", "expected user@host"),
        ({"ssh": "a@b; rm -rf /"}, "options.ssh", "expected user@host"),
        ({"ssh": "-oProxyCommand=x"}, "options.ssh", "expected user@host"),
        ({"ssh": "glidein@login", "ssh_key": "/nonexistent/key"}, "options.ssh_key", "no such file"),
        ({"ssh": "glidein@login", "ssh_port": 0}, "options.ssh_port", "not a port"),
    ],
)
def test_bad_ssh_settings_are_refused_by_field(options: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        make_entry("remote", "slurm", options)
    assert caught.value.field.endswith(field)
