"""config/pool.yaml is the pool's knobs with their defaults: every knob, each at its default."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from updraft.core.configfile import ConfigError
from userpool.config import PoolConfig, load_pool_config

EXAMPLE = Path(__file__).parents[3] / "config" / "pool.yaml"


def test_the_example_lists_every_knob_at_its_default(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "pool.yaml")
    loaded = load_pool_config(tmp_path)
    defaults = PoolConfig(home=tmp_path)
    text = EXAMPLE.read_text()
    for knob in dataclasses.fields(PoolConfig):
        if knob.name == "home":
            continue
        assert f"{knob.name}:" in text, f"config/pool.yaml does not show {knob.name}"
        assert getattr(loaded, knob.name) == getattr(defaults, knob.name), knob.name


def test_a_section_refuses_unknown_keys_with_their_line(tmp_path: Path) -> None:
    (tmp_path / "pool.yaml").write_text("port: 9618\nmonitor:\n  public: false\n  publik: true\n")
    with pytest.raises(ConfigError, match=r"pool.yaml:4.*monitor.publik.*unknown key") as caught:
        load_pool_config(tmp_path)
    assert "public" in str(caught.value)
    (tmp_path / "pool.yaml").write_text("monitor:\n  public: maybe\n")
    with pytest.raises(ConfigError, match=r"pool.yaml:2: monitor.public: expected true or false"):
        load_pool_config(tmp_path)


def test_the_command_line_is_checked_as_the_file_is(tmp_path: Path) -> None:
    assert load_pool_config(tmp_path, {"synchronous": "normal"}).synchronous == "NORMAL"
    with pytest.raises(ConfigError, match="synchronous: must be one of OFF, NORMAL, FULL, EXTRA"):
        load_pool_config(tmp_path, {"synchronous": "sometimes"})
