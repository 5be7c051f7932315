"""What an expression costs to evaluate, known before anything evaluates it.

ClassAd attributes refer to each other, so a short text can stand for a huge tree:
``a1 = a0 + a0; a2 = a1 + a1; ...`` is legal and ``a30`` is a billion additions.  The
ClassAd library holds the interpreter lock while it evaluates, so one such job would stall
every request the pool serves.  Here the cost of an attribute is the size of its tree once
every reference to another attribute of the same ad is written out in full (a reference
read twice counts twice), and its depth the longest chain of references; both are computed
from the texts in time linear in the ad, and the pool refuses ads beyond a budget.

References through ``TARGET.`` are the other ad's business: they count as one node here,
and the matchmaker's time budget covers what the two ads make together.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from updraft.core.classads import TextSource, canonical, is_literal

_TOKENS = re.compile(
    r'"(?:[^"\\]|\\.)*"?'  # a string (an unterminated one is the parser's to refuse)
    r"|[A-Za-z_][A-Za-z0-9_]*"  # a name
    r"|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+"  # a number
    r"|&&|\|\||=\?=|=!=|[<>=!]=|\S"  # an operator or punctuation
)
_KEYWORDS = frozenset({"true", "false", "undefined", "error", "is", "isnt", "my", "target", "parent"})


@dataclass(frozen=True)
class Cost:
    nodes: int
    depth: int


@functools.lru_cache(maxsize=65536)
def parts(text: str) -> tuple[int, tuple[tuple[str, int], ...]]:
    """(tokens, ((canonical name, times read), ...)) of one text, own-ad references only."""
    tokens = _TOKENS.findall(text)
    counts: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if not (token[0].isalpha() or token[0] == "_") or token.lower() in _KEYWORDS:
            continue
        following = tokens[index + 1] if index + 1 < len(tokens) else ""
        if following == "(":
            continue  # a function
        if index > 0 and tokens[index - 1] == ".":
            scope = tokens[index - 2].lower() if index > 1 else ""
            if scope != "my":
                continue  # TARGET.x, or a member of a nested ad
        name = canonical(token)
        counts[name] = counts.get(name, 0) + 1
    return len(tokens), tuple(counts.items())


def costs(texts: TextSource | Mapping[str, str], names: Iterable[str], cap: int) -> dict[str, Cost]:
    """The cost of each of ``names`` in ``texts``; node counts saturate just above ``cap``."""
    memo: dict[str, Cost] = {}
    visiting: set[str] = set()

    def cost_of(name: str) -> Cost:
        found = memo.get(name)
        if found is not None:
            return found
        text = texts.get(name)
        if text is None or is_literal(text) or name in visiting:
            return Cost(1, 0)  # a literal, the other ad's, or a cycle (the library stops those)
        visiting.add(name)
        tokens, references = parts(text)
        nodes, depth = tokens, 0
        for reference, times in references:
            inner = cost_of(reference)
            nodes = min(cap + 1, nodes + times * inner.nodes)
            depth = max(depth, inner.depth + 1)
        visiting.discard(name)
        memo[name] = Cost(nodes, depth)
        return memo[name]

    return {canonical(name): cost_of(canonical(name)) for name in names}


def over_budget(
    texts: TextSource | Mapping[str, str], names: Iterable[str], max_nodes: int, max_depth: int
) -> str | None:
    """Why an attribute of ``texts`` is too costly to evaluate, or None."""
    for name, cost in costs(texts, names, max_nodes).items():
        if cost.nodes > max_nodes:
            return (
                f"{name} expands to more than {max_nodes} terms once the attributes it refers to are"
                " written out (max_expression_terms); refer to each attribute fewer times"
            )
        if cost.depth > max_depth:
            return (
                f"{name} refers to attributes {cost.depth} levels deep; the limit is {max_depth}"
                " (max_expression_depth)"
            )
    return None
