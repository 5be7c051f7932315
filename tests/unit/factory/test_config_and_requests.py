"""The factory's config (file:line errors) and the requests it accepts (authenticated, sealed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.advertising import factory_ad
from factory.config import ConfigError, load_factory_config
from factory.limits import Counts
from factory.requests import read_requests
from frontend.glideclient import PilotRequest, glideclient_ad
from tests.support.configs import assert_config_error
from updraft.core import protocol
from updraft.core.sealed import KeyPair

REPO = Path(__file__).parents[3]
GOOD = """\
name: f1
entries:
  - name: e1
    gridtype: local
    attributes: {GLIDEIN_Site: S1, GLIDEIN_CPUS: 4}
    allowed_frontends: [fe1]
    limits: {max_glideins: 10}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "factory.yaml"
    path.write_text(text)
    return path


def test_example_config_is_valid() -> None:
    config = load_factory_config(REPO / "config" / "factory.yaml")
    assert [e.name for e in config.entries] == ["UCSD_local", "Nebraska_local", "Wisconsin_local"]
    assert config.entry("UCSD_local").cpus == 2


@pytest.mark.parametrize(
    "change, line, field, message",
    [
        (("    limits: {max_glideins: 10}", "    limits: {max_gliedins: 10}"), 7, "entries[0].limits.max_gliedins", "did you mean 'max_glideins'"),
        (("    limits: {max_glideins: 10}", "    limits: {max_glideins: ten}"), 7, "entries[0].limits.max_glideins", "expected a whole number"),
        (("    limits: {max_glideins: 10}", "    limits: {max_glideins: -1}"), 7, "entries[0].limits", "cannot be negative"),
        (("gridtype: local", "gridtype: lokal"), 4, "entries[0].gridtype", "did you mean 'local'"),
        (("    allowed_frontends: [fe1]\n", ""), 3, "entries[0].allowed_frontends", "name the frontends"),
        (("GLIDEIN_CPUS: 4", "GLIDEIN_CPUS: four"), 5, "entries[0].attributes.GLIDEIN_CPUS", "expected a whole number"),
        (("name: f1", "name: f1\ncycle_s: 0"), 2, "cycle_s", "must be positive"),
        (("name: f1", "name: f1\nunknown_glideins: keep"), 2, "unknown_glideins", "adopt or cancel"),
        (("    limits: {max_glideins: 10}", "    submit_extras: '{{ GLIDEIN_Site '"), 7, "entries[0].submit_extras", "template error"),
        (("    limits: {max_glideins: 10}", "    options: {max_runing: 2}"), 7, "entries[0].options.max_runing", "did you mean 'max_running'"),
        (("    limits: {max_glideins: 10}", "    glexec: glexec"), 7, "entries[0].glexec", "absolute path"),
        (("name: f1", "name: [f1]"), 1, "name", "expected text"),
    ],
)  # fmt: skip
def test_errors_name_the_line_and_the_field(
    tmp_path: Path, change: tuple[str, str], line: int, field: str, message: str
) -> None:
    assert_config_error(load_factory_config, write(tmp_path, GOOD.replace(*change)), line, field, message)


def test_duplicate_entries_and_bad_yaml(tmp_path: Path) -> None:
    doubled = GOOD + GOOD.split("entries:\n")[1]
    with pytest.raises(ConfigError, match="defined twice"):
        load_factory_config(write(tmp_path, doubled))
    with pytest.raises(ConfigError, match=r"factory.yaml:4: not valid YAML"):
        load_factory_config(write(tmp_path, "name: f1\nentries:\n  - name: x\n   bad: [1\n"))


def test_frontend_limits_fall_back_to_defaults(tmp_path: Path) -> None:
    text = (
        GOOD
        + "    frontend_limits: {fe2: {max_idle: 1}}\nfrontend_limits: {default: {max_idle: 7}, fe3: {max_idle: 3}}\n"
    )
    config = load_factory_config(write(tmp_path, text))
    entry = config.entries[0]
    assert entry.limits_for("fe2", config.frontend_limits).max_idle == 1
    assert entry.limits_for("fe3", config.frontend_limits).max_idle == 3
    assert entry.limits_for("fe9", config.frontend_limits).max_idle == 7


# -- requests ----------------------------------------------------------------------------------
def stamped(ad: dict[str, str], author: str) -> dict[str, str]:
    return {**ad, protocol.ATTR_AUTHENTICATED_IDENTITY: protocol.literal(author)}


def test_requests_are_authenticated_and_the_token_opens_only_for_this_factory(tmp_path: Path) -> None:
    config = load_factory_config(write(tmp_path, GOOD))
    keys = KeyPair.load_or_create(tmp_path / "factory.key")
    other_keys = KeyPair.load_or_create(tmp_path / "other.key")
    entry = config.entries[0]
    ad = factory_ad(config, entry, keys, Counts(), None, 300)
    wanted = PilotRequest(idle=3, max_glideins=5, remove="idle", params={"GLIDEIN_Glexec_Use": "OPTIONAL"})
    good = stamped(glideclient_ad(ad, "fe1", "main", wanted, "the-token"), "frontend:fe1")
    assert "the-token" not in str(good)
    forged = stamped(glideclient_ad(ad, "fe1", "other", wanted, "t"), "frontend:fe2")
    stranger = stamped(glideclient_ad(ad, "fe9", "main", wanted, "t"), "frontend:fe9")
    elsewhere = glideclient_ad(
        factory_ad(config, entry, other_keys, Counts(), None, 300), "fe1", "x", wanted, "t"
    )
    elsewhere = stamped(
        {**elsewhere, protocol.ATTR_REQ_PUBKEY_ID: protocol.literal(keys.key_id)}, "frontend:fe1"
    )
    accepted, rejected = read_requests([good, forged, stranger, elsewhere], config, keys)
    assert list(accepted) == [("e1", "fe1.main")]
    request = accepted[("e1", "fe1.main")]
    assert (request.idle, request.max_glideins, request.remove, request.token) == (3, 5, "IDLE", "the-token")
    assert request.params == {"GLIDEIN_Glexec_Use": "OPTIONAL"}
    why = {r.name: r.why for r in rejected}
    assert "claims to come from frontend 'fe1'" in why["e1@f1@fe1.other"]
    assert "may not use entry e1" in why["e1@f1@fe9.main"]
    assert "not sealed for this factory" in why["e1@f1@fe1.x"]


def test_factory_ad_publishes_attributes_limits_and_key(tmp_path: Path) -> None:
    config = load_factory_config(write(tmp_path, GOOD))
    keys = KeyPair.load_or_create(tmp_path / "factory.key")
    ad = factory_ad(config, config.entries[0], keys, Counts(queued=2, running=3), "disk swap", 300)
    values = {k: protocol.parse_literal(v) for k, v in ad.items()}
    assert values["Name"] == "e1@f1" and values["GLIDEIN_Site"] == "S1" and values["GLIDEIN_CPUS"] == 4
    assert values[protocol.ATTR_IN_DOWNTIME] is True and values["GLIDEIN_Limit_MaxGlideins"] == 10
    assert values["GlideinMonitorTotalStatusIdle"] == 2 and values["GlideinMonitorTotalStatusRunning"] == 3
    assert values[protocol.ATTR_PUBKEY_VALUE].startswith("-----BEGIN PUBLIC KEY-----")
