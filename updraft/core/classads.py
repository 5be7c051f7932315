"""The ClassAd language, from the htcondor wheel: the one module that imports classad2.

htcondor2 must be imported before classad2 is used, or stringListMember and the other
functions HTCondor registers evaluate silently to error; importing it here first is
the reason this module exists.  Everything else goes through the helpers below, which
cache what is safe to cache (parsed texts, attribute references) because the pool
evaluates the same few expressions for a million jobs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

import classad2
import htcondor2  # noqa: F401  (must precede classad2: registers HTCondor's ClassAd functions)
from classad2 import ClassAd, ExprTree

from updraft.core.errors import ExpressionError

Undefined = classad2.Value.Undefined
Error = classad2.Value.Error

# ---------------------------------------------------------------------------------------------
# Attribute names are case-insensitive in ClassAds.  Every name the pool stores goes through
# canonical(), so dictionaries keyed by names agree with the language about which names are equal.
# ---------------------------------------------------------------------------------------------
_CANONICAL: dict[str, str] = {}
#: spellings remembered at most: a pilot could send new names with every poll, and a table
#: that only grows is memory anyone with a token can take (pools use a few thousand names)
MAX_CANONICAL = 100_000


def canonical(name: str) -> str:
    """The one spelling the pool uses for an attribute name (the first one it saw; once the
    table is full, a name not in it is spelled in lower case, which every spelling agrees on)."""
    key = name.lower()
    found = _CANONICAL.get(key)
    if found is None:
        if len(_CANONICAL) >= MAX_CANONICAL:
            return key
        found = _CANONICAL[key] = name
    return found


@functools.lru_cache(maxsize=16384)
def is_valid_attribute_name(name: str) -> bool:
    """A ClassAd identifier: ASCII letters, digits and _, not starting with a digit (Python's
    isalpha and isalnum would take any script's letters, which no ClassAd parser reads back)."""
    if not name or not name.isascii() or not (name[0].isalpha() or name[0] == "_"):
        return False
    return all(c.isalnum() or c == "_" for c in name)


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=65536)
def parse(text: str) -> ExprTree:
    """Parse an expression; raises ExpressionError (never classad2's exception)."""
    if not text.strip():
        raise ExpressionError(text, "empty expression")
    if ";" in text and not _semicolon_is_quoted(text):
        # "[A = x; B = y]" would parse the trailing attribute of a wrapper ad: refuse it plainly
        raise ExpressionError(text, "unexpected ';'")
    try:
        return ExprTree(text)
    except Exception:
        raise ExpressionError(text, "not a valid ClassAd expression") from None


def _outside_strings(text: str) -> Iterator[tuple[int, str]]:
    """(index, character) of every character that is not inside a string literal."""
    in_string = False
    escaped = False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        else:
            yield index, char


def _semicolon_is_quoted(text: str) -> bool:
    return all(char != ";" for _index, char in _outside_strings(text))


def plainly_literal(text: str) -> bool:
    """A cheap, exact-enough test for the texts that dominate big clusters: "a string" or 123.

    Only strings without backslashes, inner quotes, newlines or NULs and plain ASCII integers
    pass; anything else goes to the real parser, so this can say no wrongly but never yes
    wrongly.
    """
    if not text:
        return False
    if text[0] == '"':
        return (
            len(text) >= 2
            and text[-1] == '"'
            and "\\" not in text
            and '"' not in text[1:-1]
            and "\n" not in text
            and "\0" not in text  # classad2 refuses a string with a NUL in it
        )
    digits = text[1:] if text[0] == "-" else text
    return digits.isascii() and digits.isdigit()  # "²" and "١٢" are digits to Python, not to ClassAds


def check(text: str, what: str = "expression") -> str:
    """Return ``text`` if it parses; raise ExpressionError naming ``what`` otherwise."""
    if plainly_literal(text):
        return text
    try:
        parse(text)
    except ExpressionError as exc:
        raise ExpressionError(text, exc.reason, what=what) from None
    return text


def normalize(text: str) -> str:
    """The expression as classad2 prints it (what condor_submit would store)."""
    return str(parse(text))


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------
_EMPTY = ClassAd()


@functools.lru_cache(maxsize=65536)
def references(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """(own, target): canonical names an expression reads from its own ad and from TARGET."""
    own: set[str] = set()
    target: set[str] = set()
    for ref in _EMPTY.externalRefs(parse(text)):
        if not ref:
            continue
        scope, _, name = ref.rpartition(".")
        scope = scope.lower()
        if scope == "target":
            target.add(canonical(name))
        elif scope in ("", "my"):
            own.add(canonical(name))
        else:  # a nested ad or list member access: the leading name is what is read
            own.add(canonical(ref.split(".", 1)[0]))
    return frozenset(own), frozenset(target)


@functools.lru_cache(maxsize=65536)
def is_literal(text: str) -> bool:
    """True when the text needs no evaluation (a number, string, boolean, undefined)."""
    if plainly_literal(text):  # the common case, without walking the string in Python
        return True
    stripped = text.strip()
    if not stripped:
        return False
    first = stripped[0]
    if first == '"':
        return stripped.endswith('"') and _single_string(stripped)
    if stripped.lower() in ("true", "false", "undefined", "error"):
        return True
    if not stripped.isascii() or "_" in stripped or stripped[0].isalpha():
        return False  # float() takes "inf", "1_000" and other scripts' digits; ClassAds do not
    try:
        float(stripped)
    except ValueError:
        return False
    return True


def _single_string(text: str) -> bool:
    escaped = False
    for char in text[1:-1]:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return False
    return not escaped


class TextSource(Protocol):
    def get(self, name: str, /) -> str | None: ...


def closure(names: Iterable[str], texts: TextSource | Mapping[str, str]) -> list[str]:
    """``names`` plus every attribute their expressions in ``texts`` read, transitively.

    The order is deterministic (first seen first), so tuples built over it can key caches.
    """
    seen: dict[str, None] = {}
    stack = list(names)
    while stack:
        name = canonical(stack.pop(0))
        if name in seen:
            continue
        seen[name] = None
        text = texts.get(name)
        if text is not None and not is_literal(text):
            stack.extend(sorted(references(text)[0]))
    return list(seen)


# ---------------------------------------------------------------------------------------------
# Building ads and evaluating
# ---------------------------------------------------------------------------------------------
def build(texts: Mapping[str, str] | Iterable[tuple[str, str]]) -> ClassAd:
    """A classad2 ad from attribute texts; one parse of the whole ad is the fastest way in."""
    items = texts.items() if isinstance(texts, Mapping) else texts
    body = ";".join(f"{name}={text}" for name, text in items)
    try:
        return ClassAd("[" + body + "]")
    except Exception:
        ad = ClassAd()  # find the culprit for a useful message
        for name, text in texts.items() if isinstance(texts, Mapping) else texts:
            ad[name] = parse(check(text, name))
        return ad


def evaluate(text: str, my: ClassAd | None = None, target: ClassAd | None = None) -> Any:
    tree = parse(text)
    if my is None:
        return tree.eval()
    if target is None:
        return tree.eval(my)
    return tree.eval(my, target)


def is_true(value: Any) -> bool:
    """ClassAd truth for a policy or constraint: only a real true (or non-zero number) counts."""
    if value is True:
        return True
    if value is False or value is None or isinstance(value, classad2.Value):
        return False
    if isinstance(value, (int, float)):
        return value != 0
    return False


def number(value: Any) -> int | float | None:
    """``value`` if it is a ClassAd number: not a boolean, and not Undefined or Error."""
    if isinstance(value, (int, float)) and not isinstance(value, (bool, classad2.Value)):
        return value
    return None


def whole_number(value: Any) -> int | None:
    """``value`` if it is a ClassAd integer: not a boolean, and not Undefined or Error
    (classad2's Value is an IntEnum, so Undefined would otherwise pass for 2)."""
    if isinstance(value, int) and not isinstance(value, (bool, classad2.Value)):
        return value
    return None


def to_python(value: Any) -> Any:
    """A value for JSON: Undefined becomes None, Error a marker string."""
    if isinstance(value, classad2.Value):
        return None if value is Undefined else "error"
    if isinstance(value, ClassAd):
        return {k: to_python(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_python(v) for v in value]
    if isinstance(value, ExprTree):
        return str(value)
    return value


def format_value(value: Any) -> str:
    """How condor_q -af prints an evaluated value: strings bare, undefined as 'undefined'."""
    if isinstance(value, classad2.Value):
        return "undefined" if value is Undefined else "error"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value).upper()
    if isinstance(value, list):
        return "{ " + ", ".join(literal_text(v) for v in value) + " }"
    if isinstance(value, ClassAd):
        return "[ " + "; ".join(f"{k} = {literal_text(v)}" for k, v in value.items()) + " ]"
    return str(value)


def literal_text(value: Any) -> str:
    """The expression text of an evaluated value (strings quoted)."""
    if isinstance(value, str):
        return classad2.quote(value)
    if isinstance(value, ExprTree):
        return str(value)
    return format_value(value)


def int_of(text: str | None, default: int = 0) -> int:
    """The integer value of an attribute text, or ``default`` when it is absent or not a number."""
    if text is None:
        return default
    try:
        value = value_of_text(text)
    except Exception:
        return default
    value = number(value)
    return int(value) if value is not None else default


def float_of(text: str | None) -> float:
    if text is None:
        return 0.0
    try:
        value = value_of_text(text)
    except Exception:
        return 0.0
    value = number(value)
    return float(value) if value is not None else 0.0


def quote(text: str) -> str:
    return classad2.quote(text)


def value_of_text(text: str) -> Any:
    """Evaluate an attribute text on its own (literals need no ad)."""
    return parse(text).eval()


def split_conjunction(text: str) -> list[str]:
    """Top-level ``&&`` clauses of an expression, outer parentheses removed, nested ones flattened."""
    text = _strip_parens(text.strip())
    parts = _split_top_level_and(text)
    if len(parts) == 1:
        return parts
    return [clause for part in parts for clause in split_conjunction(part)]


def _split_top_level_and(text: str) -> list[str]:
    clauses: list[str] = []
    depth = 0
    start = 0
    skip = -1
    for index, char in _outside_strings(text):
        if index == skip:
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "&" and depth == 0 and text[index : index + 2] == "&&":
            clauses.append(text[start:index])
            start = index + 2
            skip = index + 1
    clauses.append(text[start:])
    return [_strip_parens(c.strip()) for c in clauses if c.strip()]


def _strip_parens(text: str) -> str:
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for index, char in enumerate(text):
            depth += char == "("
            depth -= char == ")"
            if depth == 0 and index < len(text) - 1:
                return text
        text = text[1:-1].strip()
    return text
