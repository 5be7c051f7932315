"""HTCondor's two syntaxes for ``arguments`` and ``environment``.

Old (V1): arguments split at whitespace with no quoting; environment as
``NAME=value;NAME2=value``.  New (V2), when the value is wrapped in double quotes:
whitespace separates items, single quotes group (``''`` inside them is a literal
quote) and a doubled double quote is a literal double quote.  The job ad stores V1
arguments as ``Args`` and V2 ones as ``Arguments``; the environment is always stored
in V2 form as ``Environment``, sorted by name, which is what condor_submit does.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping

from updraft.core.errors import BadRequest

WHITESPACE = " \t\n\r"


class SyntaxProblem(BadRequest):
    """An argument or environment string condor_submit would refuse."""


def is_v2_quoted(value: str) -> bool:
    return value.strip().startswith('"')


def unquote_v2(value: str, what: str) -> str:
    """The inside of ``"..."`` with ``""`` turned into ``"``; errors as condor_submit words them."""
    text = value.strip()
    out = []
    i = 1
    while i < len(text):
        char = text[i]
        if char == '"':
            if i + 1 < len(text) and text[i + 1] == '"':
                out.append('"')
                i += 2
                continue
            trailing = text[i + 1 :]
            if trailing.strip():
                raise SyntaxProblem(
                    "Unexpected characters following double-quote.  Did you forget to escape the double-quote by "
                    f"repeating it?  Here is the quote and trailing characters: {text[i:]}"
                )
            return "".join(out)
        out.append(char)
        i += 1
    raise SyntaxProblem(f"Unterminated double-quote in {what}: {text}")


def split_v2(raw: str, what: str) -> list[str]:
    """Split V2 raw text (already without the outer double quotes) into items."""
    items: list[str] = []
    current: list[str] = []
    in_item = False
    i = 0
    while i < len(raw):
        char = raw[i]
        if char in WHITESPACE:
            if in_item:
                items.append("".join(current))
                current = []
                in_item = False
            i += 1
            continue
        in_item = True
        if char == "'":
            start = i
            i += 1
            while True:
                if i >= len(raw):
                    raise SyntaxProblem(f"Unbalanced quote starting here: {raw[start:]}")
                if raw[i] == "'":
                    if i + 1 < len(raw) and raw[i + 1] == "'":
                        current.append("'")
                        i += 2
                        continue
                    i += 1
                    break
                current.append(raw[i])
                i += 1
            continue
        current.append(char)
        i += 1
    if in_item:
        items.append("".join(current))
    return items


def render_v2_item(item: str) -> str:
    """One item in V2 raw form (condor_arglist's append_arg)."""
    if not item:
        return "''"
    out: list[str] = []
    for char in item:
        if char in " \t\n\r'":
            if out and out[-1] == "'":
                out.pop()  # join with the quoted section just before
            else:
                out.append("'")
            if char == "'":
                out.append("'")
            out.append(char)
            out.append("'")
        else:
            out.append(char)
    return "".join(out)


def render_v2(items: list[str]) -> str:
    return " ".join(render_v2_item(item) for item in items)


def split_v1_args(value: str) -> list[str]:
    if '"' not in value:
        return value.split()  # the common case: no quoting at all
    items: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char in WHITESPACE:
            if current:
                items.append("".join(current))
                current = []
        elif char == '"':
            if current and current[-1] == "\\":
                current[-1] = '"'
            else:
                raise SyntaxProblem(f"Found illegal unescaped double-quote: {value[i:]}")
        else:
            current.append(char)
        i += 1
    if current:
        items.append("".join(current))
    return items


def parse_arguments(value: str) -> tuple[str, str]:
    """(attribute, ClassAd string value) for an ``arguments`` command."""
    if is_v2_quoted(value):
        return "Arguments", render_v2(split_v2(unquote_v2(value, "arguments"), "arguments"))
    return "Args", " ".join(split_v1_args(value))


def _parse_entries(entries: list[str], shown: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in entries:
        if not entry.strip():
            continue
        name, equals, setting = entry.partition("=")
        if not equals:
            raise SyntaxProblem(
                f"ERROR: Missing '=' after environment variable '{name}'. The environment you specified was: '{shown}'"
            )
        if not name:
            raise SyntaxProblem(
                f"ERROR: empty environment variable name. The environment you specified was: '{shown}'"
            )
        env[name] = setting
    return env


def parse_environment(value: str) -> dict[str, str]:
    if is_v2_quoted(value):
        return _parse_entries(split_v2(unquote_v2(value, "environment"), "environment"), value)
    return _parse_entries(value.split(";"), value)


def getenv_variables(value: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``getenv = true`` or a list of names/patterns (``PATH, CONDOR_*``) from the submitter's environment."""
    environ = os.environ if environ is None else environ
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1"):
        return dict(environ)
    if lowered in ("false", "no", "0", ""):
        return {}
    patterns = [p for p in value.replace(",", " ").split() if p]
    return {
        name: setting
        for name, setting in environ.items()
        if any(fnmatch.fnmatchcase(name, p) for p in patterns)
    }


def render_environment(env: Mapping[str, str]) -> str:
    return render_v2([f"{name}={env[name]}" for name in sorted(env)])
