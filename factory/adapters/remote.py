"""Batch sites with no CE, reached over SSH (glideinWMS's ``batch`` gridtype, HTCondor's BOSCO).

A factory that cannot share a file system with a cluster logs in to its login node as the
account the site gave it, copies each glidein's files into a directory there, and runs the
batch system's own commands (``sbatch``, ``squeue``, ``scancel``) through ``ssh``.  Everything
goes through the adapter's injected runner, so contract tests record it as they record a
local ``sbatch``.

Why these choices:
- ``BatchMode`` and a strict known_hosts: a factory never types a password and never trusts a
  host key it was not given (a changed key is an attack until an operator says otherwise).
- ``ssh`` exits 255 when the connection itself failed: that is a site that cannot be reached
  now (SiteUnavailable, retried next cycle), never a glidein that failed or was lost.
- Files travel as one tar archive in base64 on the command's stdin: one round trip per
  glidein, no ``scp``/``sftp`` subsystem needed, binary-safe through a text pipe.
- A control master (one TCP connection reused for ``ControlPersist`` seconds) when its socket
  path fits: a status cycle then costs no new handshake.
"""

from __future__ import annotations

import base64
import io
import logging
import re
import shlex
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from factory.errors import SiteUnavailable

log = logging.getLogger("updraft.factory.ssh")

#: ssh's own exit status when the connection (not the remote command) failed
SSH_FAILED = 255
#: unix socket paths are limited to 108 bytes; %C expands to 40 hex digits
SOCKET_PATH_MAX = 100
TARGET = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*@)?[A-Za-z0-9][A-Za-z0-9.-]*$")


@dataclass
class BatchOptions:
    """What every CLI batch site accepts besides its own commands: where the commands run."""

    ssh: str = ""  # user@login-host: run the batch commands there (empty: on the factory host)
    ssh_port: int = 22
    ssh_key: str = ""  # private key file (empty: ssh's own default identities)
    ssh_known_hosts: str = ""  # known_hosts with the login host's key (empty: ~/.ssh/known_hosts)
    ssh_connect_timeout_s: int = 10
    #: where glideins' directories go on the login host (relative: under the account's home);
    #: it must be on the file system the cluster's nodes share
    remote_dir: str = "updraft-glideins"


def check_ssh(options: BatchOptions) -> tuple[str, str] | None:
    """A (field, message) problem with the SSH settings, or None."""
    if not options.ssh:
        return None
    if not TARGET.match(options.ssh):
        return "options.ssh", f"expected user@host (a host name or address), got {options.ssh!r}"
    if not 0 < options.ssh_port < 65536:
        return "options.ssh_port", f"not a port: {options.ssh_port}"
    for name in ("ssh_key", "ssh_known_hosts"):
        value = getattr(options, name)
        if value and not Path(value).is_file():
            return f"options.{name}", f"no such file: {value}"
    if options.ssh_connect_timeout_s <= 0:
        return "options.ssh_connect_timeout_s", "must be more than 0"
    return None


class SshShell:
    """Commands and files on one login host, through the ssh client."""

    def __init__(self, options: BatchOptions, control_dir: Path) -> None:
        self.options = options
        self.control_dir = control_dir
        self._base: PurePosixPath | None = None

    @property
    def target(self) -> str:
        return self.options.ssh

    def ssh_argv(self) -> list[str]:
        """The ssh client with the options a factory needs (no prompts, no unknown host keys)."""
        options = self.options
        argv = [
            "ssh", "-T", "-p", str(options.ssh_port),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={options.ssh_connect_timeout_s}",
            "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip
        if options.ssh_known_hosts:
            argv += ["-o", f"UserKnownHostsFile={options.ssh_known_hosts}"]
        if options.ssh_key:
            argv += ["-i", options.ssh_key, "-o", "IdentitiesOnly=yes"]
        control = self.control_path()
        if control:
            argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}", "-o", "ControlPersist=120"]
        return argv

    def control_path(self) -> str:
        path = self.control_dir / "%C"
        if len(str(path)) - 2 + 40 > SOCKET_PATH_MAX:
            return ""  # too long for a unix socket: every command makes its own connection
        self.control_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return str(path)

    def wrap(self, argv: list[str], variables: Mapping[str, str] | None = None) -> list[str]:
        """argv as one command line for the login host's shell (with these variables set)."""
        words = [*(["env", *(f"{k}={v}" for k, v in variables.items())] if variables else []), *argv]
        return self.wrap_script(shlex.join(words))

    def wrap_script(self, script: str) -> list[str]:
        return [*self.ssh_argv(), self.target, "--", script]

    def unreachable(self, returncode: int, stderr: str) -> SiteUnavailable | None:
        """The error for a connection that failed (exit 255), or None when the command ran."""
        if returncode != SSH_FAILED:
            return None
        why = stderr.strip().splitlines()[-1] if stderr.strip() else "no answer"
        return SiteUnavailable(f"ssh to {self.target} failed: {why}")

    # -- the glideins' directories on the login host -----------------------------------------
    def base_script(self) -> str:
        """Make the glideins' directory (private) and print where it is."""
        remote = self.options.remote_dir
        return f"umask 077 && mkdir -p {shlex.quote(remote)} && cd {shlex.quote(remote)} && pwd -P"

    def set_base(self, stdout: str) -> PurePosixPath:
        lines = stdout.strip().splitlines()
        if not lines or not lines[-1].startswith("/"):
            raise SiteUnavailable(
                f"{self.target}: cannot find the remote directory ({stdout.strip()[:200]!r})"
            )
        self._base = PurePosixPath(lines[-1])
        return self._base

    @property
    def base(self) -> PurePosixPath | None:
        return self._base

    def directory(self, glidein_id: str) -> PurePosixPath:
        assert self._base is not None
        return self._base / glidein_id

    def upload_script(self, glidein_id: str) -> str:
        here = shlex.quote(str(self.directory(glidein_id)))
        return f"umask 077 && mkdir -p {here} && cd {here} && base64 -d | tar -x -o -f -"

    def download_script(self, glidein_id: str) -> str:
        here = shlex.quote(str(self.directory(glidein_id)))
        return (
            f"cd {here} 2>/dev/null && test -f stdout || exit 4; "
            "if test -f stderr; then tar -c -f - stdout stderr; else tar -c -f - stdout; fi | base64"
        )

    def remove_script(self, glidein_id: str) -> str:
        return f"rm -rf {shlex.quote(str(self.directory(glidein_id)))}"


def pack(files: Mapping[str, tuple[bytes, int]]) -> str:
    """name -> (data, mode) as a tar archive in base64 text (what the upload script unpacks)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
    return base64.encodebytes(buffer.getvalue()).decode("ascii")


def unpack(text: str) -> dict[str, bytes]:
    """The files of a base64 tar archive (only plain files with plain names are taken)."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(base64.decodebytes(text.encode("ascii"))), mode="r") as archive:
        for member in archive.getmembers():
            if not member.isfile() or "/" in member.name or member.name.startswith("."):
                continue
            handle = archive.extractfile(member)
            if handle is not None:
                out[member.name] = handle.read()
    return out
