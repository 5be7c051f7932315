"""Fixtures shared by every test: real pools in temporary homes, CLI runs, tokens."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.accounts import give_to_job_account
from tests.support.factories import FactorySetup
from tests.support.frontends import FrontendSetup
from tests.support.pools import RunningPool, start_pool
from tests.support.sites import wait_for_sites_to_stop

BIN = Path(sys.executable).parent


def _left_running(below: str) -> list[str]:
    """Processes still working in the session's temporary directories (pid, cwd, command)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
            command = (
                Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:
            continue
        if cwd.startswith(below):
            found.append(f"{entry.name} in {cwd}: {command.strip()[:200]}")
    return found


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After every other fixture is gone, no process the tests started works on in their files
    (a GASS server, a pilot, a pool that outlived its test would be a leak a site admin sees)."""
    yield
    wait_for_sites_to_stop()
    left = _left_running(str(tmp_path_factory.getbasetemp()))
    assert not left, "processes left running after the tests:\n" + "\n".join(left)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    """One pool for a test module (users keep tests apart)."""
    running = start_pool(tmp_path_factory.mktemp("pool"))
    yield running
    running.stop()


@pytest.fixture
def fresh_pool(tmp_path: Path) -> Iterator[RunningPool]:
    """A pool of the test's own (tests that kill or restart it)."""
    running = start_pool(tmp_path / "pool")
    yield running
    running.stop()


@pytest.fixture
def names(tmp_path: Path) -> tuple[str, str]:
    """A factory and a frontend name of the test's own: ads of different tests never mix."""
    tail = tmp_path.name.replace("_", "-")[-20:].strip("-")
    return f"fac-{tail}", f"fe-{tail}"


@pytest.fixture
def factory_setup(pool: RunningPool, tmp_path: Path, names: tuple[str, str]) -> Iterator[FactorySetup]:
    made = FactorySetup(pool, tmp_path / "factory", name=names[0])
    yield made
    made.stop()


@pytest.fixture
def frontend_setup(pool: RunningPool, tmp_path: Path, names: tuple[str, str]) -> Iterator[FrontendSetup]:
    made = FrontendSetup(pool, tmp_path / "frontend", name=names[1])
    yield made
    made.stop()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty submit directory with an executable script in it, as the cwd."""
    work = tmp_path / "work"
    work.mkdir()
    give_to_job_account(work)
    script = work / "job.sh"
    script.write_text('#!/bin/sh\necho "job $*"\n')
    script.chmod(0o755)
    monkeypatch.chdir(work)
    return work


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"updraft tests: python {sys.version.split()[0]}, root={os.geteuid() == 0}, venv={BIN}"]


__all__ = ["BIN", "shutil", "subprocess"]
