"""$$(Attr) in job attributes: filled in from the slot at match time, as HTCondor's schedd does.

``$$(GLIDEIN_Site)`` becomes the slot's GLIDEIN_Site (a string's characters, not its
quotes), ``$$(Attr:default)`` falls back to the default, ``$$([expression])`` is evaluated
with the slot as MY and the job as TARGET.  The job keeps its original text; the pilot gets
the filled-in copy, and the job records each value used as MATCH_<Attr>.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from updraft.core import classads

_MATCH = re.compile(r"\$\$\(([^()]*(?:\([^()]*\)[^()]*)*)\)")


def _lookup(slot: Mapping[str, str], name: str) -> str | None:
    found = slot.get(name)
    if found is not None:
        return found
    lowered = name.lower()
    return next((text for key, text in slot.items() if key.lower() == lowered), None)


def _plain(text: str) -> str:
    """A value's characters, escaped so that they can sit inside the job's string literals."""
    if classads.is_literal(text):
        value = classads.value_of_text(text)
        return classads.format_value(value).replace("\\", "\\\\").replace('"', '\\"')
    return text


def expand(job: Mapping[str, str], slot: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the job ad with $$() filled in, MATCH_<Attr> attributes to record)."""
    expanded = dict(job)
    recorded: dict[str, str] = {}
    slot_ad = None
    for name, text in job.items():
        if "$$(" not in text:
            continue

        def replace(found: re.Match[str]) -> str:
            nonlocal slot_ad
            inner = found.group(1).strip()
            if inner.startswith("[") and inner.endswith("]"):
                if slot_ad is None:
                    slot_ad = classads.build(slot)
                try:
                    value = classads.evaluate(inner[1:-1], slot_ad, classads.build(job))
                except classads.ExpressionError:
                    return "undefined"
                return classads.format_value(value)
            attribute, _, default = inner.partition(":")
            value = _lookup(slot, attribute.strip())
            if value is None:
                return default if default else "undefined"
            recorded[f"MATCH_{attribute.strip()}"] = value
            return _plain(value)

        expanded[name] = _MATCH.sub(replace, text)
    return expanded, recorded
