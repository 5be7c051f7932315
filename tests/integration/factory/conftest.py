from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from factory.adapters import fake
from tests.support.factories import FactorySetup
from tests.support.pools import RunningPool
from tests.support.sites import running_site


@pytest.fixture
def setup(pool: RunningPool, tmp_path: Path) -> Iterator[FactorySetup]:
    """A factory directory; each test gets its own factory name so that ads never mix."""
    name = "fac-" + tmp_path.name.replace("_", "-")[-24:]
    made = FactorySetup(pool, tmp_path / "factory", name=name)
    yield made
    made.stop()


@pytest.fixture(autouse=True)
def _fresh_fake_sites() -> Iterator[None]:
    fake.SITES.clear()
    yield
    fake.SITES.clear()


@pytest.fixture(scope="session")
def slurm_site() -> Iterator[dict[str, str]]:
    """A real single-node Slurm cluster (scripts/sites/slurm.sh)."""
    yield from running_site("slurm", "Slurm")


@pytest.fixture(scope="session")
def ssh_site() -> Iterator[dict[str, str]]:
    """A login host (scripts/sites/sshd.sh): sshd on loopback, a key-only account for the factory."""
    yield from running_site("sshd", "sshd")


@pytest.fixture(scope="session")
def gram_site() -> Iterator[dict[str, str]]:
    """A real GRAM5 gatekeeper with the fork job manager (scripts/sites/gram.sh)."""
    yield from running_site("gram", "GRAM5")


@pytest.fixture(scope="session")
def arc_site(slurm_site: dict[str, str]) -> Iterator[dict[str, str]]:
    """A real ARC CE (A-REX, REST) over the project's Slurm (scripts/sites/arc.sh)."""
    yield from running_site("arc", "ARC CE")


@pytest.fixture(scope="session")
def cream_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The CREAM CE stand-in (tests/support/cream_standin.py): no CREAM CE exists any more."""
    from tests.support.cream_standin import start_standin

    running = start_standin(tmp_path_factory.mktemp("cream"))
    yield running.values
    running.stop()
