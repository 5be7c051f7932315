"""A proc's attributes filled in from one run of its handlers with placeholders.

A cluster of 100,000 procs whose ``arguments`` and ``output`` name ``$(Process)`` would run
those handlers 100,000 times, though what they do is put the value into text. The expander
already knows each command as a template with a placeholder per variable; for handlers that
only put their values into text, one run over the templates gives the proc's attributes as
templates too, and each proc's are the variables' values put in.

That holds only where the values hold nothing the handlers interpret: a quote, a space, a
slash, an empty value would change what they do (split the arguments, take the path as
absolute, say /dev/null). So a value is put in only when it is made of letters, digits, dots,
dashes and underscores; any other proc runs its handlers for real, and so do the first procs
of each kind, whose real attributes must be the filled ones or the template is not used.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

#: handlers whose attributes are their values put into text (quoted, split on spaces)
TEXTUAL_HANDLERS = frozenset({"standard_streams", "arguments", "user_log"})
#: values nothing in those handlers interprets
PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.-]+\Z")
#: procs of a template run for real as well, and compared, before the template is trusted
CHECKED_PROCS = 2


@dataclass
class ProcTemplate:
    """A kind of proc's differences from the cluster ad, with placeholders for its variables."""

    fixed: dict[str, str]  # differences with no placeholder in
    filled: dict[str, str]  # attribute -> text with placeholders
    placeholders: list[tuple[str, str]]  # (placeholder, variable)
    checked: int = 0
    broken: bool = False
    variables: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.variables = frozenset(name for _placeholder, name in self.placeholders)

    def fill(self, live: dict[str, str], cluster_ad: dict[str, str]) -> dict[str, str] | None:
        """The proc's differences, or None when a value of its variables is not plain."""
        for name in self.variables:
            if not PLAIN_VALUE.match(live.get(name, "")):
                return None
        delta = dict(self.fixed)
        for attribute, text in self.filled.items():
            for placeholder, name in self.placeholders:
                text = text.replace(placeholder, live[name])
            if cluster_ad.get(attribute) != text:
                delta[attribute] = text
        return delta

    def proc_delta(
        self, live: dict[str, str], cluster_ad: dict[str, str], rerun: Callable[[], dict[str, str]]
    ) -> dict[str, str]:
        """The proc's differences: filled in, or from ``rerun`` (the real handlers) for a value
        that is not plain and for the first procs, which also decide whether filling is right."""
        filled = None if self.broken else self.fill(live, cluster_ad)
        if filled is None:
            return rerun()
        if self.checked < CHECKED_PROCS:
            self.checked += 1
            real = rerun()
            if real != filled:
                self.broken = True
            return real
        return filled


def make_template(
    handler_names: list[str],
    placeholders: list[tuple[str, str]],
    run_over_templates: Callable[[], dict[str, str]],
) -> ProcTemplate | None:
    """The template of a kind of proc whose changed commands are all templates, when every
    handler to rerun only puts values into text; None when it cannot be made."""
    if not handler_names or not set(handler_names) <= TEXTUAL_HANDLERS or not placeholders:
        return None
    try:
        delta = run_over_templates()
    except Exception:  # a handler refused a placeholder: its procs run it for real
        return None
    marks = [placeholder for placeholder, _name in placeholders]
    filled = {name: text for name, text in delta.items() if any(mark in text for mark in marks)}
    fixed = {name: text for name, text in delta.items() if name not in filled}
    return ProcTemplate(fixed, filled, placeholders)
