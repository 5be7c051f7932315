"""Real sites for the factory's tests, started by the project's own scripts (scripts/sites/*.sh).

Each fixture skips with the reason when the site cannot run here (not root: the daemons
need it), and is started once per test session.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from factory.adapters import ADAPTERS
from factory.adapters.base import SiteAdapter
from factory.config import EntryConfig, build_entry

REPO = Path(__file__).parents[2]
SCRIPTS = REPO / "scripts" / "sites"


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root to run its daemons (CI runs as root)")


def run_site_script(name: str, *argv: str, timeout: float = 900) -> dict[str, str]:
    """Run scripts/sites/<name>.sh and return the KEY=VALUE lines it prints on stdout."""
    done = subprocess.run(
        [str(SCRIPTS / f"{name}.sh"), *argv], capture_output=True, text=True, timeout=timeout
    )
    if done.returncode == 77:
        pytest.skip(done.stderr.strip())
    if done.returncode != 0:
        raise RuntimeError(
            f"{name}.sh {' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    values = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            values[key] = value
    return values


#: the sites told to stop at the end of the session: they stop together (A-REX alone takes
#: seconds to shut down), and the session waits for every one (wait_for_sites_to_stop)
STOPPING: list[tuple[str, subprocess.Popen[str]]] = []


def running_site(name: str, what: str) -> Iterator[dict[str, str]]:
    """Start scripts/sites/<name>.sh for a test session (root only); stopped at its end."""
    require_root(what)
    values = run_site_script(name, "start")
    yield values
    stop = [str(SCRIPTS / f"{name}.sh"), "stop"]
    STOPPING.append(
        (name, subprocess.Popen(stop, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    )


def wait_for_sites_to_stop(timeout: float = 300) -> None:
    """Wait for every site told to stop; a stop that failed fails the session, with its output."""
    failed = []
    while STOPPING:
        name, process = STOPPING.pop()
        output, _ = process.communicate(timeout=timeout)
        if process.returncode != 0:
            failed.append(f"{name}.sh stop failed ({process.returncode}):\n{output}")
    if failed:
        raise RuntimeError("\n".join(failed))


def make_entry(name: str, gridtype: str, options: dict[str, Any] | None = None, **fields: Any) -> EntryConfig:
    return build_entry(
        {"name": name, "gridtype": gridtype, "allowed_frontends": ["*"], "options": options or {}, **fields}
    )


def make_adapter(entry: EntryConfig, work_dir: Path, factory: str = "contract") -> SiteAdapter:
    work_dir.mkdir(parents=True, exist_ok=True)
    return ADAPTERS[entry.gridtype](entry, factory, work_dir)
