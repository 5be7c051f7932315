"""Config error checks shared by the factory's and the frontend's tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from updraft.core.configfile import ConfigError


def assert_config_error(load: Callable[[Path], Any], path: Path, line: int, field: str, message: str) -> None:
    """Loading ``path`` fails with ``message`` at ``path:line: field:``."""
    with pytest.raises(ConfigError) as caught:
        load(path)
    error = caught.value
    assert (error.line, error.field) == (line, field), str(error)
    assert message in error.message, error.message
    assert str(error).startswith(f"{path}:{line}: {field}: ")
