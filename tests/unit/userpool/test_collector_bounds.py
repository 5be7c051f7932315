"""The collector's bound on one author's ads (userpool/collector.py): memory is nobody's to take."""

from __future__ import annotations

import pytest

from updraft.core.errors import Forbidden, TooLarge
from updraft.core.protocol import AdType, Scope
from userpool.collector import Collector
from userpool.tokens import Identity


def _slot(name: str) -> dict[str, str]:
    return {"Name": f'"{name}"', "Cpus": "1"}


def _pilot(subject: str) -> Identity:
    return Identity(subject, frozenset({Scope.PILOT}), token_id=subject, expires=1e12)


def test_one_identity_holds_at_most_its_bound_and_others_are_not_affected() -> None:
    now = [1000.0]
    collector = Collector(clock=lambda: now[0], max_per_author=3)
    group = _pilot("fe1/main")
    collector.advertise(group, AdType.Slot, [_slot(f"slot{i}") for i in range(3)])
    collector.advertise(group, AdType.Slot, [_slot("slot1")])  # an update of its own is fine
    with pytest.raises(TooLarge, match="max_ads_per_author"):
        collector.advertise(group, AdType.Slot, [_slot("slot9")])
    collector.advertise(_pilot("fe1/other"), AdType.Slot, [_slot("theirs")])  # another identity
    collector.invalidate(group, AdType.Slot, ["slot0"])
    collector.advertise(group, AdType.Slot, [_slot("slot9")])  # room again
    now[0] += (
        7200  # every ad expired (900 s by default): swept when the bound is reached, and counted no more
    )
    collector.advertise(group, AdType.Slot, [_slot(f"new{i}") for i in range(3)])
    assert sorted(collector.ads[AdType.Slot]) == ["new0", "new1", "new2"]
    assert collector.held[(AdType.Slot, group.principal)] == 3


def test_an_ad_is_bounded_in_size() -> None:
    collector = Collector()
    pilot = _pilot("fe1/main")
    huge = dict(_slot("big"), Padding='"' + "x" * 100_000 + '"')
    many = {**_slot("wide"), **{f"A{i}": f'"{"y" * 1000}"' for i in range(1100)}}  # 1.1 MB in all
    with pytest.raises(TooLarge, match="characters per expression"):
        collector.advertise(pilot, AdType.Slot, [dict(_slot("one"), Padding='"' + "x" * 200_000 + '"')])
    collector.advertise(pilot, AdType.Slot, [huge])  # large, but within both bounds
    with pytest.raises(TooLarge, match="in all"):
        collector.advertise(pilot, AdType.Slot, [many])


def test_the_size_of_ones_ads_is_bounded_too() -> None:
    collector = Collector(max_per_author=1000, max_mb_per_author=1)
    pilot = _pilot("fe1/main")
    fat = '"' + "z" * 100_000 + '"'
    collector.advertise(pilot, AdType.Slot, [dict(_slot(f"s{i}"), Padding=fat) for i in range(9)])
    collector.advertise(pilot, AdType.Slot, [dict(_slot("s0"), Padding=fat)])  # the same size again
    with pytest.raises(TooLarge, match="max_ad_mb_per_author"):
        collector.advertise(pilot, AdType.Slot, [dict(_slot(f"t{i}"), Padding=fat) for i in range(2)])
    collector.advertise(pilot, AdType.Slot, [_slot("s1")])  # shrinking an ad makes room
    collector.advertise(pilot, AdType.Slot, [dict(_slot("t0"), Padding=fat)])
    assert collector.held_chars[(AdType.Slot, pilot.principal)] < 1 << 20


def test_a_frontends_pilots_share_one_bound_whatever_names_it_mints() -> None:
    """A frontend names its pilot tokens as it likes: new names must not mean new room."""
    collector = Collector(max_per_author=4)

    def minted(frontend: str, name: str) -> Identity:
        return Identity(
            f"{frontend}/{name}",
            frozenset({Scope.PILOT}),
            token_id=name,
            expires=1e12,
            bindings={"frontend": frontend},
        )

    for number in range(4):
        collector.advertise(minted("fe1", f"pilot{number}"), AdType.Slot, [_slot(f"fe1-slot{number}")])
    with pytest.raises(TooLarge, match="frontend:fe1 would hold 5"):
        collector.advertise(minted("fe1", "pilot-new"), AdType.Slot, [_slot("fe1-slot-new")])
    collector.advertise(minted("fe1", "pilot0"), AdType.Slot, [_slot("fe1-slot0")])  # its own ad again
    collector.advertise(minted("fe2", "pilot0"), AdType.Slot, [_slot("fe2-slot0")])  # another frontend's room
    with pytest.raises(Forbidden, match="belongs to"):  # a name of the budget is still one pilot's own
        collector.advertise(minted("fe1", "pilot1"), AdType.Slot, [_slot("fe1-slot0")])
    collector.invalidate(minted("fe1", "pilot3"), AdType.Slot, ["fe1-slot3"])
    collector.advertise(minted("fe1", "pilot-new"), AdType.Slot, [_slot("fe1-slot-new")])
    assert collector.held[(AdType.Slot, "frontend:fe1")] == 4


def test_a_frontends_pilot_speaks_for_that_frontend_only() -> None:
    """Frontends count their pilots by GLIDEIN_Client: another frontend's pilot must not pose as theirs."""
    collector = Collector()
    pilot = Identity(
        "fe2/main", frozenset({Scope.PILOT}), token_id="p", expires=1e12, bindings={"frontend": "fe2"}
    )
    with pytest.raises(Forbidden, match="may speak for that frontend only"):
        collector.advertise(pilot, AdType.Slot, [dict(_slot("fake"), GLIDEIN_Client='"fe1"')])
    with pytest.raises(Forbidden, match="GLIDEIN_Client"):
        collector.advertise(pilot, AdType.PilotFailure, [dict(_slot("fake"), glidein_client='"fe1"')])
    collector.advertise(pilot, AdType.Slot, [dict(_slot("mine"), GLIDEIN_Client='"fe2"')])
    collector.advertise(pilot, AdType.Slot, [_slot("unnamed")])  # counted by no frontend
    collector.advertise(_pilot("admin-made"), AdType.Slot, [dict(_slot("any"), GLIDEIN_Client='"fe1"')])
