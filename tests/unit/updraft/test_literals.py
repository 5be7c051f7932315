"""Which texts and names the pool takes without asking classad2 (updraft/core/classads.py).

The quick tests decide what is stored unparsed and what is never evaluated; each must agree
with classad2 whenever it says yes, or a text the ClassAd parser refuses slips into a job ad.
"""

from __future__ import annotations

import htcondor2  # noqa: F401  (registers the ClassAd functions first)
import pytest

from updraft.core import classads, protocol


@pytest.mark.parametrize(
    "text", ["123", "-5", "007", '"plain"', '"with \\" escape"', "1.5e3", "true", "UNDEFINED"]
)
def test_literals_classad2_parses_are_literals(text: str) -> None:
    assert classads.is_literal(text)
    classads.check(text)


@pytest.mark.parametrize("text", ["²", "١٢", "1_000", "inf", "nan", "Memory", "1 + 2", '"a" + "b"', "-", ""])
def test_what_is_not_a_literal_is_not_taken_for_one(text: str) -> None:
    assert not classads.is_literal(text)
    assert not classads.plainly_literal(text)


@pytest.mark.parametrize("text", ["²", "١٢", "1_000", '"a\0b"'])
def test_texts_python_would_wave_through_are_parsed_and_refused(text: str) -> None:
    with pytest.raises(classads.ExpressionError):
        classads.check(text)


@pytest.mark.parametrize("value", ["held\0 by the site", "tab\there", 'quote " and \\'])
def test_a_quoted_string_is_always_a_text_classad2_reads(value: str) -> None:
    """What a pilot reports (a hold reason, a message) is quoted into the job's ad."""
    text = protocol.quote(value)
    classads.check(text)
    assert classads.evaluate(text) == value.replace("\0", "")


@pytest.mark.parametrize(
    ("name", "valid"),
    [("Foo", True), ("_x1", True), ("1x", False), ("Fo\u00e9", False), ("\u03a9", False), ("a-b", False)],
)
def test_attribute_names_are_classad_identifiers(name: str, valid: bool) -> None:
    assert classads.is_valid_attribute_name(name) is valid


def test_the_table_of_spellings_stops_growing_and_stays_consistent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classads, "_CANONICAL", {"requestcpus": "RequestCpus"})
    monkeypatch.setattr(classads, "MAX_CANONICAL", 3)
    assert classads.canonical("Alpha") == "Alpha" and classads.canonical("ALPHA") == "Alpha"
    assert classads.canonical("Beta") == "Beta"
    for spelling in ("Gamma", "GAMMA", "gamma"):  # full: one spelling for all, nothing kept
        assert classads.canonical(spelling) == "gamma"
    assert classads.canonical("REQUESTCPUS") == "RequestCpus"
    assert len(classads._CANONICAL) == 3
