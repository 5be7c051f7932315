"""Start and stop a pool as a child process: the demo, the tests and the benchmarks all need one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from updraft.core.client import Client, wait_for_pool


class PoolProcess:
    """`updraft pool` in a child process with its own home; a context manager."""

    def __init__(
        self, home: Path, extra_args: list[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.home = Path(home)
        self.extra_args = extra_args or []
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def port(self) -> int:
        """0 (any free port) the first time; a restart comes back where the clients know it."""
        return int(self.url.rsplit(":", 1)[1].split("/")[0]) if self.url else 0

    def start(self, timeout: float = 30.0) -> PoolProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        pool_file = self.home / "pool.json"
        pool_file.unlink(missing_ok=True)
        log = open(self.home / "pool.stderr", "ab")  # noqa: SIM115 - lives as long as the child
        env = dict(self.env if self.env is not None else os.environ)
        env["UPDRAFT_HOME"] = str(self.home)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "updraft",
                "pool",
                "--home",
                str(self.home),
                "--port",
                str(self.port),
                *self.extra_args,
            ],
            stdout=log,
            stderr=log,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while not pool_file.exists():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the pool exited with {self.process.returncode}; see {self.home / 'pool.stderr'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the pool did not start within {timeout} s; see {self.home / 'pool.stderr'}"
                )
            time.sleep(0.02)
        self.url = json.loads(pool_file.read_text())["url"]
        try:
            wait_for_pool(self.client(), timeout)
        except BaseException:
            self.stop()  # never leave a pool behind that its caller cannot reach
            raise
        return self

    def client(self, token: str | None = None) -> Client:
        return Client.from_environment(pool=self.url or None, token=token, home=self.home)

    def kill(self) -> None:
        """kill -9: what a crash looks like."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self.process = None

    def environment(self) -> dict[str, str]:
        """Environment for client commands run against this pool."""
        return {**os.environ, "UPDRAFT_HOME": str(self.home), "UPDRAFT_POOL": self.url}

    def __enter__(self) -> PoolProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
