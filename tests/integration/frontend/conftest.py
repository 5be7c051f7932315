from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.factories import FactorySetup
from tests.support.frontends import FrontendSetup
from tests.support.pools import RunningPool


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
