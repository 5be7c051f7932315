"""A running pool for tests, with helpers to act as its users and pilots."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.accounts import IDENTITY_MAP, IS_ROOT
from updraft.core.client import Client
from updraft.core.protocol import Scope
from userpool.process import PoolProcess
from userpool.tokens import TokenSigner

BIN = Path(sys.executable).parent
FAST = ["--periodic-interval", "1"]


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


@dataclass
class RunningPool:
    process: PoolProcess
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.process.home

    @property
    def url(self) -> str:
        return self.process.url

    def signer(self) -> TokenSigner:
        return TokenSigner((self.home / "keys" / "signing.key").read_bytes())

    def token(
        self, user: str, *scopes: Scope, lifetime_s: int = 3600, bindings: dict[str, str] | None = None
    ) -> str:
        scopes = scopes or (Scope.USER,)
        key = f"{user}:{','.join(sorted(s.value for s in scopes))}:{lifetime_s}:{sorted((bindings or {}).items())}"
        if key not in self.tokens:
            self.tokens[key] = self.signer().issue(user, frozenset(scopes), lifetime_s, bindings)[0]
        return self.tokens[key]

    def client(self, user: str = "", *scopes: Scope) -> Client:
        """A client acting as ``user`` (default: the pool's local user token)."""
        token = self.token(user, *scopes) if user else None
        return Client.from_environment(pool=self.url, token=token, home=self.home)

    def env(self, user: str = "", *scopes: Scope) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "UPDRAFT_HOME": str(self.home),
                "UPDRAFT_POOL": self.url,
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            }
        )
        env.pop("UPDRAFT_TOKEN", None)
        if user:
            env["UPDRAFT_TOKEN"] = self.token(user, *scopes)
        return env

    def run(
        self,
        *argv: str,
        user: str = "",
        cwd: Path | None = None,
        stdin: str | None = None,
        timeout: float = 120,
    ) -> CliResult:
        """Run a console script (condor_q, updraft, ...) as ``user``."""
        result = subprocess.run(
            [str(BIN / argv[0]), *argv[1:]],
            env=self.env(user),
            cwd=cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return CliResult(result.returncode, result.stdout, result.stderr)

    def submit(self, text: str, user: str, cwd: Path, name: str = "job.sub") -> str:
        """condor_submit a file with ``text`` as ``user``; returns the cluster id."""
        (cwd / name).write_text(text)
        result = self.run("condor_submit", name, user=user, cwd=cwd)
        assert result.returncode == 0, result.stderr
        return result.lines[-1].split()[-1].rstrip(".")

    def job(self, job_id: str, *attrs: str, user: str = "", history: bool = False) -> str:
        """condor_q (or condor_history) -af of one job, as one line."""
        return self.run(
            "condor_history" if history else "condor_q", job_id, "-af", *attrs, user=user
        ).stdout.strip()

    def restart(self) -> None:
        self.process.stop()
        self.process.start()

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()


def start_pool(
    home: Path, extra_args: list[str] | None = None, identity_map: str | None = None
) -> RunningPool:
    """A pool on ``home``; as root its identity map sends every subject to the job account
    (tests/support/accounts.py) unless ``identity_map`` (the file's text) or the home has one."""
    home.mkdir(parents=True, exist_ok=True)
    map_file = home / "identity.map"
    if identity_map is not None:
        map_file.write_text(identity_map)
    elif IS_ROOT and not map_file.exists():
        map_file.write_text(IDENTITY_MAP)
    process = PoolProcess(home, [*FAST, *(extra_args or [])])
    process.start()
    return RunningPool(process)


__all__ = ["CliResult", "RunningPool", "start_pool", "subprocess"]
