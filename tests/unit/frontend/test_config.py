"""The frontend's config: glideinWMS defaults, and errors that name the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from frontend.config import ConfigError, duration_s, load_frontend_config
from tests.support.configs import assert_config_error

REPO = Path(__file__).parents[3]
GOOD = """\
name: fe1
groups:
  - name: main
    job_constraint: DESIRED_Sites isnt undefined
    match_expr: stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)
    limits:
      idle_glideins_per_entry: {max: 50}
    removal: {policy: idle}
    overflow: {after: 30m, sites: {A: [B]}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "frontend.yaml"
    path.write_text(text)
    return path


def test_example_config_is_valid() -> None:
    config = load_frontend_config(REPO / "config" / "frontend.yaml")
    assert [g.name for g in config.groups] == ["cms", "anywhere"]
    assert config.groups[0].job_refs == ["DESIRED_Sites"]
    assert config.groups[0].overflow is not None and config.groups[0].overflow.after_s == 20 * 60


def test_defaults_are_glideinwms_defaults(tmp_path: Path) -> None:
    group = load_frontend_config(write(tmp_path, "name: fe1\ngroups: [{name: g}]\n")).groups[0]
    limits = group.limits
    assert (limits.idle_glideins_per_entry.max, limits.idle_glideins_per_entry.reserve) == (100, 5)
    assert (limits.idle_slots_per_entry.max, limits.idle_slots_per_entry.curb) == (100, 5)
    assert (limits.idle_slots_total.max, limits.idle_slots_total.curb) == (1000, 200)
    assert (limits.running_glideins_per_entry.max, limits.running_glideins_per_entry.relative_to_queue) == (
        10000,
        1.15,
    )
    assert (limits.running_glideins_total.max, limits.running_glideins_total.curb) == (100000, 90000)
    assert group.ramp_up_attenuation == 3 and group.old_idle_s == 600
    assert group.removal.policy == "NO" and group.overflow is None and group.job_refs == []


def test_derived_match_attributes_and_normalised_policy(tmp_path: Path) -> None:
    group = load_frontend_config(write(tmp_path, GOOD)).groups[0]
    assert group.job_refs == ["DESIRED_Sites"] and group.removal.policy == "IDLE"
    assert (
        group.limits.idle_glideins_per_entry.max == 50 and group.limits.idle_glideins_per_entry.reserve == 5
    )


@pytest.mark.parametrize(
    "change, line, field, message",
    [
        (("      idle_glideins_per_entry: {max: 50}", "      idle_glidens_per_entry: {max: 50}"), 7, "groups[0].limits.idle_glidens_per_entry", "did you mean 'idle_glideins_per_entry'"),
        (("{max: 50}", "{max: fifty}"), 7, "groups[0].limits.idle_glideins_per_entry.max", "expected a whole number"),
        (("{max: 50}", "{max: -5, curb: 1}"), 7, "groups[0].limits.idle_glideins_per_entry", "cannot be negative"),
        (("{max: 50}", "{max: 5, reserve: 10}"), 7, "groups[0].limits.idle_glideins_per_entry.reserve", "10 is above max (5)"),
        (("MY.DESIRED_Sites)", "MY.DESIRED_Sites"), 5, "groups[0].match_expr", "not a valid ClassAd expression"),
        (("job_constraint: DESIRED_Sites isnt undefined", "job_constraint: __import__('os').system('x')"), 4, "groups[0].job_constraint", "not a valid ClassAd expression"),
        (("{policy: idle}", "{policy: idel}"), 8, "groups[0].removal.policy", "did you mean 'IDLE'"),
        (("{policy: idle}", "{policy: idle, wait_cycles: 0}"), 8, "groups[0].removal.wait_cycles", "at least one cycle"),
        (("after: 30m", "after: soon"), 9, "groups[0].overflow.after", "is not a duration"),
        (("sites: {A: [B]}", "sites: [A, B]"), 9, "groups[0].overflow.sites", "expected a mapping"),
        (("sites: {A: [B]}", "sites: {A: B}"), 9, "groups[0].overflow.sites", "A: expected a list"),
        (("  - name: main", "  - name: main group"), 3, "groups[0].name", "letters, digits"),
        (("name: fe1", "name: fe1\ncycle_s: 0"), 2, "cycle_s", "must be positive"),
        (("name: fe1", "name: fe1\nramp_up: 2"), 2, "ramp_up", "unknown"),
        (("    removal: {policy: idle}", "    ramp_up_attenuation: 0.5"), 8, "groups[0].ramp_up_attenuation", "at least 1"),
        (("    removal: {policy: idle}", "    match_attrs: [DESIRED Sites]"), 8, "groups[0].match_attrs", "not an attribute name"),
    ],
)  # fmt: skip
def test_errors_name_the_line_and_the_field(
    tmp_path: Path, change: tuple[str, str], line: int, field: str, message: str
) -> None:
    assert_config_error(load_frontend_config, write(tmp_path, GOOD.replace(*change)), line, field, message)


def test_whole_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="defined twice"):
        load_frontend_config(write(tmp_path, "name: fe1\ngroups: [{name: g}, {name: g}]\n"))
    with pytest.raises(ConfigError, match="at least one group"):
        load_frontend_config(write(tmp_path, "name: fe1\ngroups: []\n"))
    with pytest.raises(
        ConfigError, match=r"frontend.yaml:2: not valid YAML: a mapping opened with .{. is not closed"
    ):
        load_frontend_config(write(tmp_path, "name: fe1\ngroups: [{name: g\n"))
    with pytest.raises(ConfigError, match="groups"):
        load_frontend_config(write(tmp_path, "name: fe1\n"))


@pytest.mark.parametrize(
    "text, seconds",
    [(90, 90.0), ("90s", 90.0), ("30m", 1800.0), ("6h", 21600.0), ("1d", 86400.0), ("1.5h", 5400.0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert duration_s(text) == seconds


def test_explain_lines_read_as_words_not_python() -> None:
    from frontend.cli import counts_text, headroom_text

    assert counts_text({"UCSD,Nebraska": 3}, "to ") == "to UCSD,Nebraska 3"
    assert counts_text({}) == "none"
    assert headroom_text({"IdleGlideinsPerEntry": 95}) == "idle_slots_per_entry.max 95 (IdleGlideinsPerEntry)"
