from pathlib import Path

import pytest

from updraft.core.configfile import ConfigError, LineMap, load_yaml, suggest
from userpool.config import load_pool_config


def test_yaml_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError) as error:
        load_yaml(path)
    assert error.value.line is not None and str(path) in str(error.value)


def test_line_map(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("entries:\n  - name: a\n    site: X\n  - name: b\n    sitte: Y\n")
    _data, lines = load_yaml(path)
    assert isinstance(lines, LineMap)
    assert lines.line(("entries", 1, "sitte")) == 5


def test_pool_config_unknown_key(tmp_path: Path) -> None:
    (tmp_path / "pool.yaml").write_text("periodic_interval_s: 5\nmax_input_fle_mb: 3\n")
    with pytest.raises(ConfigError) as error:
        load_pool_config(tmp_path)
    assert error.value.line == 2 and "max_input_file_mb" in str(error.value)
    assert suggest("exectuable", ["executable"]) == " (did you mean 'executable'?)"
