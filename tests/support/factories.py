"""A real factory against a real pool for tests, with a frontend's requests made the frontend's way.

The requests are glideclient ads written with a frontend-scope token through
``frontend.glideclient`` (the frontend's own code), so the factory reads exactly what it
will read in production.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.adapters.gram import stop_gass_servers
from factory.adapters.local import signal_glidein
from factory.config import load_factory_config
from factory.journal import Journal
from factory.loop import Factory
from frontend.glideclient import PilotRequest, glideclient_ad
from tests.support.processes import ServiceSetup
from updraft.core import protocol
from updraft.core.protocol import Scope

#: pilot settings that keep test glideins short-lived and light
QUICK_PILOT = {
    "idle_timeout_s": 10,
    "tail_timeout_s": 3,
    "min_disk_gb": 0.05,
    "poll_wait_s": 2.0,
    "failure_hold_s": 0,
}


def local_entry(name: str, site: str | None = None, **overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "gridtype": "local",
        "attributes": {"GLIDEIN_Site": site or name, "GLIDEIN_CPUS": 1, "GLIDEIN_Max_Walltime": 600},
        "allowed_frontends": ["fe1"],
        "pilot": dict(QUICK_PILOT),
    }
    entry.update(overrides)
    return entry


@dataclass
class FactorySetup(ServiceSetup):
    """A factory config in a directory, the tokens it needs, and a frontend to ask it for glideins."""

    name: str = "fac1"
    entries: list[dict[str, Any]] = field(default_factory=list)
    factories: list[Factory] = field(default_factory=list)

    component = "factory"
    scope = Scope.FACTORY

    def settings(self) -> dict[str, Any]:
        return {"cycle_s": 1, "status_timeout_s": 20, "submit_grace_s": 2, "entries": self.entries}

    def factory(self, **changes: Any) -> Factory:
        self.write(**changes)
        factory = Factory(load_factory_config(self.config_path))
        factory.start()
        self.factories.append(factory)
        return factory

    def wait_started(self, timeout: float = 60.0) -> None:
        """Until the spawned factory has finished a cycle (it has advertised its entries)."""
        wait_for(self.cycled, timeout, what=f"the factory's first cycle; log:\n{self.log()}")

    # -- the frontend's side -------------------------------------------------------------------------
    def request(
        self, entry: str, idle: int, max_glideins: int, frontend: str = "fe1", group: str = "main",
        token: str | None = None, author: str | None = None, **more: Any,
    ) -> None:  # fmt: skip
        """Advertise a glideclient ad as frontend ``author`` (default: the frontend it names)."""
        author = author or frontend
        client = self.pool.client(author, Scope.FRONTEND)
        ads = client.query_ads(protocol.AdType.GlideFactory.value, f'Name == "{entry}@{self.name}"')
        assert ads, f"the factory does not advertise entry {entry} (yet)"
        pilot_token = (
            token
            if token is not None
            else self.pool.token(author, Scope.PILOT, bindings={"frontend": author})
        )
        ad = glideclient_ad(ads[0], frontend, group, PilotRequest(idle, max_glideins, **more), pilot_token)
        client.advertise(protocol.AdType.GlideClient.value, [ad])

    def copy_proxy(self, source: str) -> Path:
        """The factory's own copy of a site's proxy (renewal tests replace it)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        proxy = self.directory / "factory-proxy.pem"
        shutil.copy(source, proxy)
        return proxy

    def one_running(self, factory: Factory, entry: str, native: str = "", timeout: float = 90) -> Any:
        """Ask for one glidein at ``entry`` and cycle until it runs (or shows ``native``)."""
        self.request(entry, idle=1, max_glideins=1)

        def running() -> Any:
            return next(
                (
                    g
                    for g in factory.journal.live(entry)
                    if (g.native == native if native else g.state.value == "running")
                ),
                None,
            )

        return cycle_until(factory, running, timeout=timeout)

    def journal(self) -> Journal:
        return Journal(self.state_dir / "journal.sqlite")

    def stop(self) -> None:
        for factory in self.factories:
            factory.drain(30)
            factory.stop()
        self.stop_processes()
        # the GRAM entries' detached GASS servers, once no factory is left to start another
        stop_gass_servers(self.state_dir.glob("entries/*"))
        # glideins the factory processes left at local sites
        for node in self.state_dir.glob("entries/*/updraft_*"):
            signal_glidein(node, signal.SIGKILL)


def cycle_until(
    factory: Factory, condition: Callable[[], Any], timeout: float = 60.0, pause: float = 0.3
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        factory.cycle()
        factory.wait_idle()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; status: {factory.status()}")
        time.sleep(pause)


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, pause: float = 0.2, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(pause)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
