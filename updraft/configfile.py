"""YAML config files with errors that name the file, the line and the field.

Every Updraft config (pool, factory, frontend) goes through here: the YAML is
composed once to learn where each key sits, unknown keys are refused with a
"did you mean" suggestion, and any later validation error can point at the line
of the field it is about.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from updraft.errors import UpdraftError

FieldPath = tuple[Any, ...]


class ConfigError(UpdraftError):
    """A config file that cannot be used: where and why."""

    def __init__(self, path: Path | str | None, line: int | None, field: str, message: str) -> None:
        self.path = str(path) if path is not None else "<config>"
        self.line = line
        self.field = field
        self.message = message
        where = self.path + (f":{line}" if line else "")
        super().__init__(f"{where}: {field + ': ' if field else ''}{message}")


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def line_of(text: str, key: str) -> int | None:
    """The first line that defines ``key:`` (a fallback when no node map is at hand)."""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip(" -")
        if stripped.startswith(f"{key}:") or stripped.startswith(f'"{key}":'):
            return number
    return None


def check_keys(
    path: Path | str, text: str, data: Mapping[str, Any], known: Iterable[str], prefix: str
) -> None:
    known_list = list(known)
    for key in data:
        if key not in known_list:
            raise ConfigError(
                path,
                line_of(text, str(key)),
                prefix + str(key),
                "unknown key" + suggest(str(key), known_list),
            )


class LineMap:
    """Line numbers of keys and list items in a YAML document, by path."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.lines: dict[FieldPath, int] = {}
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: FieldPath) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                self._walk(value_node, (*path, key))
                self.lines[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*path, index))

    def line(self, path: FieldPath) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


def load_yaml(path: Path) -> tuple[Any, LineMap]:
    """Parse ``path``; YAML syntax errors become ConfigError with the line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(path, None, "", f"cannot read: {exc.strerror}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, (mark.line + 1) if mark else None, "", f"not valid YAML: {problem}") from None
    return data, LineMap(node)


def dotted(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
