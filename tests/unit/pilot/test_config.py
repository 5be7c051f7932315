import json
from pathlib import Path

import pytest

from pilot.config import load_config
from updraft.core.pilotparams import PilotConfigError


def test_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    path = tmp_path / "pilot.json"
    path.write_text(json.dumps({"pool": "http://file", "site": "FileSite", "cpus": "3", "idle_timeout_s": 5}))
    env = {"UPDRAFT_PILOT_SITE": "EnvSite", "GLIDEIN_Entry_Name": "EnvEntry", "GLIDEIN_MaxMemMBs": "4000"}
    config = load_config(["--config", str(path), "--site", "CliSite"], env)
    assert (config.pool, config.site, config.entry, config.cpus, config.memory_mb, config.idle_timeout_s) == (
        "http://file", "CliSite", "EnvEntry", "3", 4000, 5,
    )  # fmt: skip


def test_lists_and_mappings_from_env() -> None:
    env = {
        "UPDRAFT_PILOT_POOL": "http://p",
        "UPDRAFT_PILOT_BLACKLIST": "bad1, bad2",
        "UPDRAFT_PILOT_ATTRIBUTES": '{"VO": "cms"}',
    }
    config = load_config([], env)
    assert config.blacklist == ["bad1", "bad2"] and config.attributes == {"VO": "cms"}


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([], "no pool"),
        (["--pool", "http://p", "--glexec-policy", "maybe"], "glexec_policy"),
        (["--pool", "http://p", "--checks", "python,teleport"], "unknown check"),
        (["--pool", "http://p", "--idle-timeout", "soon"], "idle_timeout_s"),
    ],
)
def test_bad_parameters(argv: list[str], words: str) -> None:
    with pytest.raises(PilotConfigError, match=words):
        load_config(argv, {})


def test_unknown_key_in_file(tmp_path: Path) -> None:
    path = tmp_path / "pilot.json"
    path.write_text(json.dumps({"pool": "http://p", "idle_timout_s": 3}))
    with pytest.raises(PilotConfigError, match="idle_timout_s"):
        load_config(["--config", str(path)], {})
