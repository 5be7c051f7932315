"""YAML config files with errors that name the file, the line and the field.

Every Updraft config (pool, factory, frontend) goes through here: the YAML is
composed once to learn where each key sits, unknown keys are refused with a
"did you mean" suggestion, and any later validation error can point at the line
of the field it is about.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from updraft.core.errors import UpdraftError

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
        #: the first key given twice in one mapping, and the line of its second appearance
        self.duplicate: tuple[FieldPath, int] | None = None
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: FieldPath) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                key = key_node.value
                if key in seen and self.duplicate is None and isinstance(key, str):
                    self.duplicate = ((*path, key), key_node.start_mark.line + 1)
                seen.add(key)
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                self._walk(value_node, (*path, key))
                self.lines[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*path, index))

    def given(self, path: FieldPath) -> bool:
        """Whether the document itself has this key (not only its default)."""
        return path in self.lines

    def line(self, path: FieldPath) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


#: PyYAML's problems in plain words: (its words, ours, whether its context line is the culprit)
YAML_PROBLEMS = (
    (
        "expected <block end>, but found",
        "bad indentation: this line does not line up with the lines above it",
        False,
    ),
    ("could not find expected ':'", "a missing colon: every setting is written 'key: value'", True),
    ("found character '\\t' that cannot start any token", "a tab: YAML indents with spaces only", False),
    ("expected ',' or ']'", "a list opened with '[' is not closed with ']'", True),
    ("expected ',' or '}'", "a mapping opened with '{' is not closed with '}'", True),
    ("found unexpected end of stream", "a quote is not closed", True),
    (
        "mapping values are not allowed here",
        "a colon inside a value: quote the value, or fix the indentation",
        False,
    ),
    (
        "did not find expected key",
        "bad indentation: this line does not line up with the lines above it",
        False,
    ),
    (
        "did not find expected '-' indicator",
        "a list item that does not line up with the items above it",
        False,
    ),
)


#: libyaml's safe loader where PyYAML was built with it: a 700-entry factory file reads in a
#: fraction of the time the pure-Python loader takes
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: and its safe dumper, for the files the importers write
FAST_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump_yaml(data: Any, **options: Any) -> str:
    """``yaml.safe_dump`` through libyaml where there is one (the same text, a few times faster)."""
    return str(yaml.dump(data, Dumper=FAST_DUMPER, **options))


def yaml_problem(exc: yaml.YAMLError) -> tuple[int | None, str]:
    """The line and a plain-words reason for a YAML syntax error (PyYAML's own words when unknown)."""
    mark = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context_mark", None)
    problem = str(getattr(exc, "problem", None) or exc)
    for words, plain, at_context in YAML_PROBLEMS:
        if problem.startswith(words):
            chosen = context if at_context and context is not None else mark
            return (chosen.line + 1 if chosen else None), plain
    return (mark.line + 1 if mark else None), problem


def load_yaml(path: Path) -> tuple[Any, LineMap]:
    """Parse ``path``; YAML syntax errors become ConfigError with the line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(path, None, "", f"cannot read: {exc.strerror}") from None
    try:
        node, data = _parse(text, FAST_LOADER)
    except yaml.YAMLError:
        try:  # again with PyYAML's own loader: its words are those yaml_problem knows
            node, data = _parse(text, yaml.SafeLoader)
        except yaml.YAMLError as exc:
            line, message = yaml_problem(exc)
            raise ConfigError(path, line, "", f"not valid YAML: {message}") from None
    lines = LineMap(node)
    if lines.duplicate is not None:  # YAML keeps the last silently: an edit that does nothing
        where, line = lines.duplicate
        raise ConfigError(
            path, line, dotted(where), "defined twice in the same mapping (the first would be ignored)"
        )
    return data, lines


def _parse(text: str, loader_class: Any) -> tuple[Any, Any]:
    """The document's node (for the lines of its fields) and its value, from one parse."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def dotted(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ---------------------------------------------------------------------------------------------
# Typed models from YAML: dataclasses in, ConfigError with the line of the offending field out
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Source:
    """Where values come from, for error messages."""

    path: Path | str
    lines: LineMap

    def error(self, where: FieldPath, message: str) -> ConfigError:
        return ConfigError(self.path, self.lines.line(where), dotted(where), message)


def _type_name(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin in (list, typing.List):  # noqa: UP006
        return f"a list of {_type_name(typing.get_args(kind)[0])}"
    if origin in (dict, typing.Dict):  # noqa: UP006
        return "a mapping"
    if dataclasses.is_dataclass(kind):
        return "a mapping"
    return {str: "text", int: "a whole number", float: "a number", bool: "true or false"}.get(kind, str(kind))


@functools.cache
def _shape(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """A config class's type hints and init fields, worked out once (a factory has 700 entries)."""
    return typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls) if f.init}


def build_model(cls: type, data: Any, where: FieldPath, source: Source) -> Any:
    """Instantiate dataclass ``cls`` from YAML ``data``, checking every key and type."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise source.error(where, f"expected a mapping, got {type(data).__name__}")
    hints, fields = _shape(cls)
    values = {}
    for key, value in data.items():
        if key not in fields:
            raise source.error((*where, key), "unknown key" + suggest(str(key), fields))
        values[key] = convert(hints[key], value, (*where, key), source)
    missing = [
        name for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]  # fmt: skip
    if missing:
        raise source.error(where, f"missing required key(s): {', '.join(missing)}")
    try:
        instance = cls(**values)
    except (TypeError, ValueError) as exc:
        raise source.error(where, str(exc)) from None
    check = getattr(instance, "check", None)  # says what is wrong, (field, message), changes nothing
    if callable(check):
        problem = check()
        if problem:
            field_name, message = problem
            raise source.error((*where, field_name) if field_name else where, message)
    settle = getattr(instance, "settle", None)  # then the values derived from checked ones
    if callable(settle):
        settle()
    return instance


def convert(kind: Any, value: Any, where: FieldPath, source: Source) -> Any:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: X's own error, with its own field and line
            return convert(options[0], value, where, source)
        problems = []
        for option in options:
            try:
                return convert(option, value, where, source)
            except ConfigError as exc:
                problems.append(exc.message)
        raise source.error(where, "; ".join(problems))
    if kind is Any:
        return value
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return build_model(kind, value, where, source)
    if origin in (list, typing.List):  # noqa: UP006
        if isinstance(value, str) and args and args[0] is str:
            return [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise source.error(where, f"expected {_type_name(kind)}, got {value!r}")
        return [convert(args[0], item, (*where, index), source) for index, item in enumerate(value)]
    if origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, Mapping):
            raise source.error(where, f"expected a mapping, got {value!r}")
        value_kind = args[1] if len(args) == 2 else Any
        return {str(k): convert(value_kind, v, (*where, k), source) for k, v in value.items()}
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise source.error(where, f"expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise source.error(where, f"expected a whole number, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise source.error(where, f"expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if isinstance(value, (dict, list)) or value is None:
            raise source.error(where, f"expected text, got {value!r}")
        return str(value)
    return value


def load_model(cls: type, path: Path | str) -> tuple[Any, Source]:
    """A YAML file as the dataclass ``cls`` (checked, with file:line errors), and its Source for more checks.

    A model with a ``path`` attribute learns where it was read from (see RelativePaths).
    """
    path = Path(path)
    data, lines = load_yaml(path)
    source = Source(path, lines)
    model = build_model(cls, data, (), source)
    if hasattr(model, "path"):
        model.path = str(path.resolve())
    return model, source


class RelativePaths:
    """Paths in a config file are relative to the file's directory; "~" is the user's home."""

    path: str

    def resolve(self, value: str) -> Path:
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else Path(self.path).parent / path
