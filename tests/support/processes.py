"""What a test's factory and frontend processes have in common: a config in a directory, a token, a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.pools import RunningPool
from updraft.core.protocol import Scope
from updraft.service import terminate

BIN = Path(sys.executable).parent


@dataclass
class ServiceSetup:
    """`updraft <component> ...` with its YAML config, run in-process or as its own process."""

    pool: RunningPool
    directory: Path
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    component = ""  # "factory" or "frontend"
    scope = Scope.FACTORY

    @property
    def config_path(self) -> Path:
        return self.directory / f"{self.component}.yaml"

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    def settings(self) -> dict[str, Any]:
        """The component's own keys (besides name, pool and state_dir)."""
        return {}

    def write(self, **changes: Any) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        token_file = f"{self.component}.token"
        (self.directory / token_file).write_text(self.pool.token(self.name, self.scope, lifetime_s=86400))
        config = {
            "name": self.name,
            "pool": {"url": self.pool.url, "token_file": token_file},
            "state_dir": "state",
            **self.settings(),
            **self.extra,
            **changes,
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        return self.config_path

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "UPDRAFT_HOME": str(self.pool.home)})
        env[f"UPDRAFT_{self.component.upper()}_CONFIG"] = str(self.config_path)
        env.pop("UPDRAFT_TOKEN", None)
        env.update(extra)
        return env

    def spawn(self, **env: str) -> subprocess.Popen[str]:
        log = open(self.directory / f"{self.component}.log", "a")  # noqa: SIM115 - lives with the process
        process = subprocess.Popen(
            [str(BIN / "updraft"), self.component, "run", "--config", str(self.config_path)],
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append(process)
        return process

    def cycled(self) -> bool:
        """The last spawned process has finished a cycle."""
        try:
            status = json.loads((self.state_dir / "status.json").read_text())
        except (OSError, ValueError):
            return False
        return status.get("cycles", 0) >= 1 and status.get("pid") == self.processes[-1].pid

    def cli(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "updraft"), self.component, *argv],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def log(self) -> str:
        try:
            return (self.directory / f"{self.component}.log").read_text()
        except OSError:
            return ""

    def stop_processes(self) -> None:
        for process in self.processes:
            terminate(process, 30)
