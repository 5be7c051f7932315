"""System services some tests need, started by the tests themselves: squid, local accounts, gLExec stand-in."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.proxies import make_user_proxy

STANDIN = Path(__file__).with_name("glexec_standin.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (CI runs as root); skipped for this user")


def require_program(program: str, package: str) -> str:
    path = shutil.which(program) or (
        f"/usr/sbin/{program}" if os.path.exists(f"/usr/sbin/{program}") else None
    )
    if path is None:
        pytest.skip(
            f"{program} is not installed: scripts/bootstrap.sh --test installs Debian's {package} (as root)"
        )
    return path


@dataclass
class Squid:
    url: str
    process: subprocess.Popen[bytes]
    directory: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        shutil.rmtree(self.directory, ignore_errors=True)  # its own directory outside pytest's

    def access_log(self) -> str:
        try:
            return (self.directory / "access.log").read_text()
        except OSError:
            return ""


def start_squid() -> Squid:
    binary = require_program("squid", "squid")
    directory = Path(tempfile.mkdtemp(prefix="updraft-squid-"))
    directory.chmod(0o777)  # squid drops to its own account when started as root
    port = free_port()
    config = directory / "squid.conf"
    config.write_text(
        f"""http_port 127.0.0.1:{port}
pid_filename {directory}/squid.pid
cache_log {directory}/cache.log
access_log stdio:{directory}/access.log
coredump_dir {directory}
cache deny all
acl loopback src 127.0.0.1/32
http_access allow loopback
http_access deny all
visible_hostname updraft-test-squid
shutdown_lifetime 1 seconds
"""
    )
    with open(directory / "stderr", "wb") as errors:
        process = subprocess.Popen(
            [binary, "-N", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=errors
        )
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"squid did not start: {(directory / 'stderr').read_text()[-2000:]}"
                ) from None
            time.sleep(0.1)
    return Squid(f"http://127.0.0.1:{port}", process, directory)


def ensure_account(name: str) -> int:
    require_root("creating local accounts")
    try:
        import pwd

        return pwd.getpwnam(name).pw_uid
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
        import pwd

        return pwd.getpwnam(name).pw_uid


@dataclass
class Glexec:
    path: Path
    log: Path
    pilot_proxy: Path
    user_proxies: dict[str, Path]


def install_glexec(directory: Path, users: dict[str, str]) -> Glexec:
    """The stand-in with a grid-mapfile mapping a pilot DN and each user's DN to local accounts.

    ``users`` maps a proxy name to the local account its DN is mapped to; "pilot" is the
    pilot's own credential.
    """
    require_root("the gLExec stand-in (it switches accounts)")
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    script = directory / "glexec"
    script.write_text(f"#!{sys.executable}\n" + STANDIN.read_text().split("\n", 1)[1])
    script.chmod(0o755)
    mapfile = directory / "grid-mapfile"
    lines = []
    proxies = {}
    for name, account in users.items():
        ensure_account(account)
        proxy = directory / f"{name}.proxy"
        subject = make_user_proxy(proxy, hours=48, common_name=f"{name.title()} Tester")
        lines.append(f'"{subject}" {account}')
        proxies[name] = proxy
    mapfile.write_text("\n".join(lines) + "\n")
    log = directory / "glexec.log"
    (directory / "glexec.conf").write_text(json.dumps({"mapfile": str(mapfile), "log": str(log)}))
    return Glexec(script, log, proxies.pop("pilot"), proxies)


def public_tempdir(prefix: str) -> Path:
    """A directory every local account can reach (pytest's own are private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path
