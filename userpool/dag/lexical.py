"""The lexical layer of DAG files: logical lines, INCLUDE in place, inline descriptions, VARS values.

DAGMan's rules: a line ending in a backslash continues on the next (a commented-out line in
between does not end it); a line whose first non-blank character is ``#`` is a comment; an
inline submit description runs from a line ending in ``{`` to the next line starting with
``}``; VARS values are double-quoted with ``\\`` and ``\"`` as their only escapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from updraft.core.errors import UpdraftError

MAX_INCLUDE_DEPTH = 20

Reader = Callable[[str], str]


class DagError(UpdraftError):
    """A DAG file condor_submit_dag refuses: where, and why, in DAGMan's words."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        where = f"{path} (line {line})" if line else path
        super().__init__(f"ERROR: {where}: {message}")


@dataclass
class Statement:
    """One logical line of a DAG file (continuations joined), with an inline description if it opened one."""

    source: str
    line: int
    words: list[str]
    text: str  # the whole line after its first word
    body: str | None = None  # the lines between "{" and "}"


def read_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise DagError(path, None, "Could not open file for input (No such file or directory)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DagError(path, None, f"Could not open file for input ({exc})") from None


def statements(path: str, reader: Reader = read_file, depth: int = 0) -> list[Statement]:
    """The logical lines of a DAG file, INCLUDEs read in place (their own lines keep their file)."""
    if depth > MAX_INCLUDE_DEPTH:
        raise DagError(path, None, f"INCLUDE nested more than {MAX_INCLUDE_DEPTH} deep (an INCLUDE loop?)")
    physical = reader(path).splitlines()
    out: list[Statement] = []
    index = 0
    while index < len(physical):
        number, line = index + 1, physical[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        while line.endswith("\\") and index < len(physical):
            follow = physical[index].strip()
            index += 1
            if follow.startswith("#"):  # a continuation line may be commented out: the line goes on
                continue
            line = line[:-1].rstrip() + " " + follow
        words = line.split()
        first = words[0].upper()
        rest = line[len(words[0]) :].strip()
        if first == "INCLUDE":
            if len(words) != 2:
                raise DagError(
                    path,
                    number,
                    "Missing include file name"
                    if len(words) < 2
                    else f"Extra token ({words[2]}) on INCLUDE line",
                )
            out.extend(statements(words[1], reader, depth + 1))
            continue
        statement = Statement(path, number, words, rest)
        if first in ("JOB", "NODE", "FINAL", "SUBMIT-DESCRIPTION") and words[-1].endswith("{"):
            body: list[str] = []
            while index < len(physical) and not physical[index].lstrip().startswith("}"):
                body.append(physical[index])
                index += 1
            if index >= len(physical):
                raise DagError(
                    path,
                    number,
                    f"no closing brace in {words[0]} {words[1] if len(words) > 1 else ''} submit description",
                )
            index += 1
            statement.body = "\n".join(body) + "\n"
            statement.words = [w for w in words[:-1]] + ([words[-1][:-1]] if words[-1] != "{" else [])
        out.append(statement)
    return out


def integer(text: str, where: tuple[str, int], what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DagError(*where, f'Invalid {what} "{text}"') from None


def parse_vars(text: str, where: tuple[str, int]) -> list[tuple[str, str]]:
    """name="value" pairs as DAGMan reads them: \\\\ and \\" escapes, +Attr meaning My.Attr."""
    pairs: list[tuple[str, str]] = []
    index, length = 0, len(text)
    while True:
        while index < length and text[index].isspace():
            index += 1
        if index >= length:
            return pairs
        start = index
        while index < length and (text[index].isalnum() or text[index] in "_+."):
            if text[index] == "+" and index != start:
                raise DagError(*where, f"'+' can only be first character of macroname ({text[start:index]})")
            index += 1
        name = text[start:index]
        if not name:
            raise DagError(*where, f'Unexpected symbol: "{text[index]}"')
        if name == "+":
            raise DagError(*where, f"macroname ({name}) must contain at least one alphanumeric character")
        while index < length and text[index].isspace():
            index += 1
        if index >= length or text[index] != "=":
            if name in ("PREPEND", "APPEND"):
                raise DagError(*where, f"{name} not declared before all passed variables.")
            found = text[index] if index < length else "end of line"
            raise DagError(*where, f"Illegal character ({found}) in or after macroname {name}")
        index += 1
        while index < length and text[index].isspace():
            index += 1
        if index >= length or text[index] != '"':
            raise DagError(*where, f"{name}'s value must be quoted")
        index += 1
        value: list[str] = []
        while True:
            if index >= length:
                raise DagError(*where, "Missing end quote")
            char = text[index]
            if char == "\\":
                if index + 1 >= length or text[index + 1] not in '\\"':
                    raise DagError(
                        *where, f'Unknown escape sequence "\\{text[index + 1] if index + 1 < length else ""}"'
                    )
                value.append(text[index + 1])
                index += 2
                continue
            if char == '"':
                index += 1
                break
            value.append(char)
            index += 1
        if name.lower().startswith("queue"):
            raise DagError(*where, f'Illegal variable name: {name}; variable names cannot begin with "queue"')
        pairs.append(("My." + name[1:] if name.startswith("+") else name, "".join(value)))
