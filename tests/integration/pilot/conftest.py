from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pilots_real import PilotLauncher
from tests.support.pools import RunningPool


@pytest.fixture
def pilots(pool: RunningPool, tmp_path: Path) -> Iterator[PilotLauncher]:
    launcher = PilotLauncher(pool, tmp_path)
    yield launcher
    launcher.stop_all()
