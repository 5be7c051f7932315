"""A real frontend against a real pool (and a real factory with local entries) for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from frontend.config import load_frontend_config
from frontend.loop import Frontend
from tests.support.factories import FactorySetup
from tests.support.pools import RunningPool
from userpool.protocol import Scope

BIN = Path(sys.executable).parent
SITE_MATCH = "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)"


def group(name: str = "main", **overrides: Any) -> dict[str, Any]:
    """A group for jobs that name their sites, asking without ramp-up delay (tests are short)."""
    made: dict[str, Any] = {
        "name": name,
        "job_constraint": "DESIRED_Sites isnt undefined",
        "match_expr": SITE_MATCH,
        "ramp_up_attenuation": 1,
    }
    made.update(overrides)
    return made


@dataclass
class FrontendSetup:
    pool: RunningPool
    directory: Path
    name: str = "fe1"
    groups: list[dict[str, Any]] = field(default_factory=lambda: [group()])
    extra: dict[str, Any] = field(default_factory=dict)
    frontends: list[Frontend] = field(default_factory=list)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.directory / "frontend.yaml"

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    def write(self, **changes: Any) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "frontend.token").write_text(
            self.pool.token(self.name, Scope.FRONTEND, lifetime_s=86400)
        )
        config = {
            "name": self.name,
            "pool": {"url": self.pool.url, "token_file": "frontend.token"},
            "state_dir": "state",
            "cycle_s": 1,
            "query_timeout_s": 10,
            "groups": self.groups,
            **self.extra,
            **changes,
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        return self.config_path

    def frontend(self, **changes: Any) -> Frontend:
        self.write(**changes)
        made = Frontend(load_frontend_config(self.config_path))
        made.start()
        self.frontends.append(made)
        return made

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                "UPDRAFT_HOME": str(self.pool.home),
                "UPDRAFT_FRONTEND_CONFIG": str(self.config_path),
            }
        )
        env.pop("UPDRAFT_TOKEN", None)
        return env

    def spawn(self) -> subprocess.Popen[str]:
        log = open(self.directory / "frontend.log", "a")  # noqa: SIM115 - lives with the process
        process = subprocess.Popen(
            [str(BIN / "updraft"), "frontend", "run"],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append(process)
        return process

    def cli(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "updraft"), "frontend", *argv],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def stop(self) -> None:
        for made in self.frontends:
            made.stop()
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


def both_cycle(frontend: Frontend, factory_setup: FactorySetup, cycles: int = 1) -> None:
    """One frontend cycle, then one factory cycle (what a real deployment does on two clocks)."""
    for _ in range(cycles):
        frontend.cycle()
        for factory in factory_setup.factories:
            factory.cycle()
            factory.wait_idle()
