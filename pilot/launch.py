"""How a job's command is started: directly, through gLExec as its owner, or inside bubblewrap.

Launching is kept apart from discovering resources and from watching the job.  gLExec is
driven through its documented interface only (GLEXEC_CLIENT_CERT, GLEXEC_SOURCE_PROXY,
GLEXEC_TARGET_PROXY and the command line), so any implementation of it will do.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Optional

from pilot import process


class Launcher:
    kind = "direct"

    def prepare(self, scratch: Path) -> None:
        """Make the scratch directory usable by whoever the job runs as."""

    def wrap(
        self, argv: list[str], env: dict[str, str], scratch: Path, credential: Optional[str]
    ) -> tuple[list[str], dict[str, str]]:
        return argv, env

    def signal(self, root: int, group: int, signum: int, env: dict[str, str]) -> None:
        process.signal_tree(root, group, signum, env.get(process.TAG_VARIABLE, ""))

    def describe(self) -> str:
        return self.kind


class DirectLauncher(Launcher):
    pass


class GlexecLauncher(Launcher):
    """Every job runs as its owner's mapped account, authorized by the owner's proxy."""

    kind = "glexec"

    def __init__(self, path: str) -> None:
        self.path = path

    def prepare(self, scratch: Path) -> None:
        os.chmod(scratch, 0o1777)  # the mapped account writes its outputs here

    def environment(self, env: dict[str, str], scratch: Path, credential: str) -> dict[str, str]:
        env = dict(env)
        env["GLEXEC_CLIENT_CERT"] = credential
        env["GLEXEC_SOURCE_PROXY"] = credential
        env["GLEXEC_TARGET_PROXY"] = str(scratch / ".glexec.proxy")
        env["X509_USER_PROXY"] = str(scratch / ".glexec.proxy")
        return env

    def wrap(
        self, argv: list[str], env: dict[str, str], scratch: Path, credential: Optional[str]
    ) -> tuple[list[str], dict[str, str]]:
        if not credential:
            raise PermissionError("gLExec needs the job owner's proxy and the job has none")
        return [self.path, *argv], self.environment(env, scratch, credential)

    def signal(self, root: int, group: int, signum: int, env: dict[str, str]) -> None:
        try:
            os.killpg(group, signum)
        except ProcessLookupError:
            return
        except PermissionError:  # the job runs as another account: ask gLExec to signal it
            subprocess.run(
                [self.path, "/bin/kill", f"-{signum}", "--", f"-{group}"],
                env=env,
                capture_output=True,
                timeout=30,
            )
        if signum == signal.SIGKILL:
            try:
                process.signal_tree(root, group, signum, env.get(process.TAG_VARIABLE, ""))
            except PermissionError:
                pass

    def describe(self) -> str:
        return f"glexec ({self.path})"


class BubblewrapLauncher(Launcher):
    """No gLExec: isolate the job from the pilot's files with a read-only root and its own /tmp."""

    kind = "bubblewrap"

    def __init__(self, path: str) -> None:
        self.path = path

    def wrap(
        self, argv: list[str], env: dict[str, str], scratch: Path, credential: Optional[str]
    ) -> tuple[list[str], dict[str, str]]:
        return [*self.command(scratch), "--", *argv], env

    def command(self, scratch: Path) -> list[str]:
        return [
            self.path, "--die-with-parent", "--unshare-pid", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/tmp", "--bind", str(scratch), str(scratch), "--chdir", str(scratch),
        ]  # fmt: skip

    def describe(self) -> str:
        return f"bubblewrap ({self.path})"


def find_glexec(location: str, environ: dict[str, str]) -> Optional[str]:
    """The entry says none, auto (look for it) or a path."""
    location = (location or "none").strip()
    if location.lower() == "none":
        return None
    if location.lower() != "auto":
        return location if os.access(location, os.X_OK) else None
    for candidate in (
        environ.get("GLEXEC_BIN", ""),
        environ.get("GLITE_LOCATION", "") + "/sbin/glexec",
        "/usr/sbin/glexec",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("glexec")


def find_bwrap() -> Optional[str]:
    return shutil.which("bwrap")
