"""Real pilot processes for tests: the zipapp (or python -m pilot) against a running pool."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilot.build import build
from tests.support.pools import RunningPool
from updraft.core.pilotrecord import parse_result
from updraft.core.protocol import Scope

BUNDLE_CACHE: dict[str, Path] = {}


def bundle(directory: Path) -> Path:
    """Build the pilot zipapp once per test session."""
    if "path" not in BUNDLE_CACHE:
        path = directory / "updraft-pilot.pyz"
        build(path)
        BUNDLE_CACHE["path"] = path
    return BUNDLE_CACHE["path"]


@dataclass
class PilotProcess:
    process: subprocess.Popen[str]
    work: Path
    log_path: Path
    result: dict[str, Any] | None = None
    output: str = ""

    def wait(self, timeout: float = 120) -> dict[str, Any]:
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            out, _ = self.process.communicate(timeout=30)
            raise AssertionError(f"pilot did not end within {timeout} s; log:\n{self.log()}") from None
        self.output = out
        self.result = parse_result(out)
        assert self.result is not None, f"no final record; exit {self.process.returncode}; log:\n{self.log()}"
        return self.result

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill_group(self) -> None:
        """What a batch system does to a job it kills: every process of the slot, now."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    @property
    def returncode(self) -> int | None:
        return self.process.poll()


@dataclass
class PilotLauncher:
    pool: RunningPool
    root: Path
    python: str = sys.executable
    python_flags: list[str] = field(default_factory=list)
    use_bundle: bool = True
    started: list[PilotProcess] = field(default_factory=list)

    def token_file(self, name: str = "glidein", lifetime_s: int = 86400) -> Path:
        path = self.root / f"{name}-{lifetime_s}.token"
        if not path.exists():
            path.write_text(self.pool.signer().issue(name, frozenset({Scope.PILOT}), lifetime_s)[0] + "\n")
        return path

    def start(
        self,
        *args: str,
        site: str = "TestSite",
        cpus: int = 1,
        env: dict[str, str] | None = None,
        token: Path | None = None,
        **config: Any,
    ) -> PilotProcess:
        number = len(self.started)
        work = self.root / f"wn{number}"
        work.mkdir(parents=True, exist_ok=True)
        settings = {
            "pool": self.pool.url,
            "token_file": str(token or self.token_file()),
            "site": site,
            "entry": f"{site}_entry",
            "factory": "test-factory",
            "cpus": str(cpus),
            "work_dir": str(work),
            "failure_hold_s": 0,
            "poll_wait_s": 5,
            "monitor_interval_s": 0.2,
            "idle_timeout_s": 60,
            "tail_timeout_s": 60,
            "vacate_grace_s": 2,
            **config,
        }
        config_path = work / "pilot.json"
        config_path.write_text(json.dumps(settings))
        target = [str(bundle(self.root))] if self.use_bundle else ["-m", "pilot"]
        command = [self.python, *self.python_flags, *target]
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
        }
        environment.update(env or {})
        log_path = work / "pilot.stderr"
        process = subprocess.Popen(
            [*command, "--config", str(config_path), *args],
            stdout=subprocess.PIPE,
            stderr=open(log_path, "w"),  # noqa: SIM115 - the child keeps it
            text=True,
            env=environment,
            cwd=work,
            start_new_session=True,
        )
        pilot = PilotProcess(process, work, log_path)
        self.started.append(pilot)
        return pilot

    def stop_all(self) -> None:
        for pilot in self.started:
            if pilot.returncode is None:
                pilot.kill_group()
                try:
                    pilot.process.communicate(timeout=10)
                except (subprocess.TimeoutExpired, ValueError):
                    pass
            else:
                try:
                    os.killpg(pilot.process.pid, signal.SIGKILL)  # orphans of a killed pilot
                except (ProcessLookupError, PermissionError):
                    pass


def wait_until(predicate: Any, timeout: float = 30, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
