"""A system-wide install as docs/deploy.md does it: the FHS layout, unit files, logrotate, readiness.

Everything goes under a staged root (UPDRAFT_SYSTEM_ROOT), so the machine's own /etc is not
touched; the services and clients then find each other there without --home or --config,
as they would under / on a real host.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.pools import BIN

UNITS = ("updraft-pool.service", "updraft-factory.service", "updraft-frontend.service")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    made = tmp_path / "root"
    made.mkdir()
    return made


def run(root: Path, *argv: str, home: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("UPDRAFT_")}
    environment.update(
        {"UPDRAFT_SYSTEM_ROOT": str(root), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    )
    if home is not None:
        environment["HOME"] = str(home)
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], env=environment, capture_output=True, text=True, timeout=60
    )


def test_layout_units_and_logrotate_are_written_as_deploy_md_says(root: Path) -> None:
    laid = run(root, "updraft", "deploy", "layout")
    assert laid.returncode == 0, laid.stderr
    for place in (
        "etc/updraft",
        "var/lib/updraft/pool",
        "var/lib/updraft/factory",
        "var/lib/updraft/frontend",
        "var/log/updraft",
    ):
        assert (root / place).is_dir(), place
    if os.geteuid() == 0:
        owner = (root / "var/lib/updraft/factory").stat().st_uid
        assert owner != 0 and (root / "var/lib/updraft/pool").stat().st_uid == 0
    written = run(root, "updraft", "deploy", "systemd", "-o", str(root / "etc/systemd/system"))
    assert written.returncode == 0, written.stderr
    assert "systemctl daemon-reload" in written.stderr
    for name in UNITS:
        text = (root / "etc/systemd/system" / name).read_text()
        assert "Type=notify" in text and f"ExecStart={BIN / 'updraft'} " in text
        assert f"ReadWritePaths={root}/var/lib/updraft/" in text and "@" not in text.split("[Unit]", 1)[1]
    factory_unit = (root / "etc/systemd/system/updraft-factory.service").read_text()
    assert "User=updraft" in factory_unit and "KillMode=process" in factory_unit
    assert f"--config {root}/etc/updraft/factory.yaml" in factory_unit
    pool_unit = (root / "etc/systemd/system/updraft-pool.service").read_text()
    assert "KillMode=mixed" in pool_unit  # the pool stops its engines and helpers itself
    # a site's own edit survives a second run; --force replaces it
    unit = root / "etc/systemd/system/updraft-pool.service"
    unit.write_text(unit.read_text() + "# site edit\n")
    again = run(root, "updraft", "deploy", "systemd", "-o", str(root / "etc/systemd/system"))
    assert "kept" in again.stdout and unit.read_text().endswith("# site edit\n")
    verify = shutil.which("systemd-analyze")
    if verify:
        checked = subprocess.run([verify, "verify", *(str(root / "etc/systemd/system" / n) for n in UNITS)],
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
        assert checked.returncode == 0 and "updraft-" not in checked.stderr, checked.stderr
    rotated = run(root, "updraft", "deploy", "logrotate", "-o", str(root / "etc/logrotate.d/updraft"))
    assert rotated.returncode == 0, rotated.stderr
    rule = (root / "etc/logrotate.d/updraft").read_text()
    assert f"{root}/var/log/updraft/*.log" in rule and "--signal=USR1" in rule
    if shutil.which("logrotate"):
        debug = subprocess.run(
            ["logrotate", "-d", str(root / "etc/logrotate.d/updraft")], capture_output=True, text=True
        )
        assert "error" not in (debug.stdout + debug.stderr).lower(), debug.stderr


@pytest.fixture
def system_pool(root: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """The pool as its unit starts it, under systemd's readiness protocol (a socket of the test's)."""
    assert run(root, "updraft", "deploy", "layout").returncode == 0
    (root / "etc/updraft/pool.yaml").write_text(yaml.safe_dump({"port": 0, "periodic_interval_s": 1}))
    notify = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(60)
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPDRAFT_")}
    env.update({"UPDRAFT_SYSTEM_ROOT": str(root), "NOTIFY_SOCKET": str(notify)})
    process = subprocess.Popen(
        [str(BIN / "updraft"), "pool", "--home", str(root / "var/lib/updraft/pool"), "--allow-remote"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        message = listener.recv(4096).decode()
        assert message == "READY=1"
        yield process, root
    finally:
        listener.close()
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def test_the_system_pool_is_found_without_being_named_and_reopens_its_log(
    system_pool: tuple[subprocess.Popen[str], Path], tmp_path: Path
) -> None:
    process, root = system_pool
    assert (root / "var/lib/updraft/pool/pool.json").exists()
    nobody_home = tmp_path / "a-user"  # no ~/.updraft: the system pool is the one
    nobody_home.mkdir()
    token = run(root, "updraft", "token", "create", "--user", "alice", "--scope", "user", home=nobody_home)
    assert token.returncode == 0, token.stderr
    listed = run(root, "condor_q", home=nobody_home, UPDRAFT_TOKEN=token.stdout.strip().splitlines()[-1])
    assert listed.returncode == 0, listed.stderr
    prefixed = run(
        root, "updraft", "q", home=nobody_home, UPDRAFT_TOKEN=token.stdout.strip().splitlines()[-1]
    )

    # the same answer, but for the clock in the schedd banner (the two runs may straddle a second)
    def without_clock(text: str) -> str:
        return re.sub(r" @ \d\d/\d\d/\d\d \d\d:\d\d:\d\d", " @ <time>", text)

    assert prefixed.returncode == listed.returncode == 0, prefixed.stderr
    assert without_clock(prefixed.stdout) == without_clock(listed.stdout)
    assert "Total for alice" in listed.stdout
    # the log is where logrotate looks, and SIGUSR1 reopens it after a rotation
    log = root / "var/log/updraft/pool.log"
    assert log.exists() and "pool serving at" in log.read_text()
    log.rename(log.with_name("pool.log.1"))
    process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.exists() and process.poll() is None


def test_factory_and_frontend_find_their_config_in_etc_updraft(root: Path, tmp_path: Path) -> None:
    assert run(root, "updraft", "deploy", "layout").returncode == 0
    missing = run(root, "updraft", "factory", "entries")
    assert missing.returncode != 0 and f"{root}/etc/updraft/factory.yaml" in missing.stderr
    (root / "etc/updraft/factory.yaml").write_text(yaml.safe_dump({
        "name": "site-factory", "state_dir": str(root / "var/lib/updraft/factory"),
        "log_dir": str(root / "var/log/updraft"),
        "entries": [{"name": "Local", "gridtype": "local", "allowed_frontends": ["*"]}],
    }))  # fmt: skip
    found = run(root, "updraft", "factory", "entries", "--json")  # read from /etc: its state_dir is named
    assert f"no factory journal in {root}/var/lib/updraft/factory" in found.stderr, found.stderr
    (root / "etc/updraft/frontend.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "site-frontend",
                "state_dir": str(root / "var/lib/updraft/frontend"),
                "groups": [{"name": "main"}],
            }
        )
    )
    downtimes = run(root, "updraft", "frontend", "downtime", "list")
    assert downtimes.returncode == 0, downtimes.stderr


def test_the_prefix_form_lists_every_condor_command_the_wheel_installs() -> None:
    from updraft.cli import USER_COMMANDS

    text = (Path(__file__).parents[3] / "pyproject.toml").read_text()
    scripts = {line.split("=")[0].strip() for line in text.splitlines() if line.startswith("condor_")}
    assert {f"condor_{name}" for name in USER_COMMANDS} == scripts
    for name, target in USER_COMMANDS.items():
        assert f'condor_{name} = "{target}"' in text
    assert sys.executable


def test_htcondor_s_own_commands_on_the_host_are_pointed_out(root: Path, tmp_path: Path) -> None:
    theirs = tmp_path / "htcondor-bin"
    theirs.mkdir()
    (theirs / "condor_q").write_text("#!/bin/sh\necho HTCondor\n")
    (theirs / "condor_q").chmod(0o755)
    laid = run(root, "updraft", "deploy", "layout", PATH=f"{theirs}{os.pathsep}{os.environ['PATH']}")
    assert laid.returncode == 0, laid.stderr
    assert f"HTCondor's commands are installed here ({theirs}/condor_q)" in laid.stderr
    assert "'updraft q'" in laid.stderr
