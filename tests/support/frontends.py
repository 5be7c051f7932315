"""A real frontend against a real pool (and a real factory with local entries) for tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from frontend.config import load_frontend_config
from frontend.loop import Frontend
from tests.support.factories import FactorySetup
from tests.support.processes import BIN, ServiceSetup
from updraft.core.protocol import Scope

__all__ = ["BIN", "FrontendSetup", "both_cycle", "group"]
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
class FrontendSetup(ServiceSetup):
    name: str = "fe1"
    groups: list[dict[str, Any]] = field(default_factory=lambda: [group()])
    frontends: list[Frontend] = field(default_factory=list)

    component = "frontend"
    scope = Scope.FRONTEND

    def settings(self) -> dict[str, Any]:
        return {"cycle_s": 1, "query_timeout_s": 10, "groups": self.groups}

    def frontend(self, **changes: Any) -> Frontend:
        self.write(**changes)
        made = Frontend(load_frontend_config(self.config_path))
        made.start()
        self.frontends.append(made)
        return made

    def stop(self) -> None:
        for made in self.frontends:
            made.stop()
        self.stop_processes()


def both_cycle(frontend: Frontend, factory_setup: FactorySetup, cycles: int = 1) -> None:
    """One frontend cycle, then one factory cycle (what a real deployment does on two clocks)."""
    for _ in range(cycles):
        frontend.cycle()
        for factory in factory_setup.factories:
            factory.cycle()
            factory.wait_idle()
