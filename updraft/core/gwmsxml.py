"""Reading glideinWMS's XML configurations for the importers, and what an import reports.

The factory's ``glideinWMS.xml`` (with its ``config.d/*.xml``) and the frontend's
``frontend.xml`` are read into a small tree that remembers each element's file and line, so
that every converted entry, every skipped one and every setting with no Updraft equivalent
can say where it came from.  Nothing here evaluates anything from the file: glideinWMS's
Python ``match_expr`` is parsed (``ast``), never run.
"""

from __future__ import annotations

import ast
import xml.parsers.expat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from updraft.core.errors import UpdraftError


class GwmsImportError(UpdraftError):
    """A file the importer cannot read as glideinWMS XML (named with its line)."""


@dataclass
class Node:
    tag: str
    attrib: dict[str, str]
    path: str
    line: int
    children: list[Node] = field(default_factory=list)
    text: str = ""

    def find(self, tag: str) -> Node | None:
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, tag: str) -> list[Node]:
        return [c for c in self.children if c.tag == tag]

    def iter(self, tag: str) -> list[Node]:
        out = [self] if self.tag == tag else []
        for child in self.children:
            out += child.iter(tag)
        return out

    def get(self, name: str, default: str = "") -> str:
        return self.attrib.get(name, default)

    @property
    def where(self) -> str:
        return f"{Path(self.path).name}:{self.line}"


def parse_xml(path: Path) -> Node:
    """The file as a tree of Nodes; external entities are never fetched."""
    parser = xml.parsers.expat.ParserCreate()
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Node] = []
    root: list[Node] = []

    def start(tag: str, attrib: dict[str, str]) -> None:
        node = Node(tag, dict(attrib), str(path), parser.CurrentLineNumber)
        (stack[-1].children if stack else root).append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].text += data

    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, text
    try:
        parser.Parse(path.read_bytes(), True)
    except OSError as exc:
        raise GwmsImportError(f"{path}: cannot read: {exc.strerror}") from None
    except xml.parsers.expat.ExpatError as exc:
        raise GwmsImportError(
            f"{path}:{exc.lineno}: not valid XML: {xml.parsers.expat.ErrorString(exc.code)}"
        ) from None
    if not root:
        raise GwmsImportError(f"{path}: no XML element in the file")
    return root[0]


def is_true(text: str) -> bool:
    return text.strip().lower() in ("true", "1", "yes")


@dataclass
class ImportReport:
    """What an import did: converted, skipped with a reason, and what has no Updraft equivalent."""

    converted: list[tuple[str, str]] = field(default_factory=list)  # (name, where)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (name, where, why)
    disabled: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # converted but off: (name, where, why)
    unsupported: Counter[str] = field(default_factory=Counter)  # setting name -> times seen
    credentials: Counter[str] = field(default_factory=Counter)  # credential needed -> entries

    def no_equivalent(self, name: str) -> None:
        self.unsupported[name] += 1

    def summary(self) -> str:
        """The table an operator reads at the end of the import."""
        lines = [
            f"converted {len(self.converted)}, of which disabled {len(self.disabled)}; skipped {len(self.skipped)}"
        ]
        if self.skipped:
            lines.append("\nskipped:")
            reasons = Counter(why for _n, _w, why in self.skipped)
            lines += [f"  {count:5d}  {why}" for why, count in reasons.most_common()]
        if self.disabled:
            lines.append("\nconverted but disabled (see the comment above each):")
            reasons = Counter(why.split(":")[0] for _n, _w, why in self.disabled)
            lines += [f"  {count:5d}  {why}" for why, count in reasons.most_common()]
        if self.credentials:
            lines.append("\ncredentials the factory must hold (glideinWMS's frontend sent them):")
            lines += [f"  {count:5d}  {what}" for what, count in self.credentials.most_common()]
        if self.unsupported:
            lines.append("\nsettings with no Updraft equivalent (not carried over):")
            width = max(len(name) for name in self.unsupported)
            lines += [f"  {name:<{width}}  {count:5d}" for name, count in sorted(self.unsupported.items())]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "converted": [{"name": n, "from": w} for n, w in self.converted],
            "skipped": [{"name": n, "from": w, "why": y} for n, w, y in self.skipped],
            "disabled": [{"name": n, "from": w, "why": y} for n, w, y in self.disabled],
            "unsupported": dict(sorted(self.unsupported.items())),
            "credentials": dict(self.credentials),
        }


# -- glideinWMS's Python match_expr, as ClassAd text ------------------------------------------------
class Untranslatable(ValueError):
    """A match_expr that is not one of the common forms."""


_COMPARE = {
    ast.Eq: "=?=", ast.NotEq: "=!=", ast.Is: "=?=", ast.IsNot: "=!=",
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
}  # fmt: skip


def match_expr_to_classad(text: str) -> str:
    """glideinWMS's match_expr (Python over ``job`` and ``glidein``) as a ClassAd expression.

    The common forms: ``job["A"]``, ``glidein["attrs"]["B"]`` (and ``.get``), comparisons,
    ``x in y.split(",")``, ``and``/``or``/``not``, int()/float()/str(), literals.  Anything else
    raises Untranslatable; the importer then keeps the text as a comment and disables the group.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise Untranslatable(f"not a Python expression: {exc.msg}") from None
    return _classad(tree.body)


def _classad(node: ast.AST) -> str:
    if isinstance(node, ast.BoolOp):
        joiner = " && " if isinstance(node.op, ast.And) else " || "
        return "(" + joiner.join(_classad(v) for v in node.values) + ")"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return f"!({_classad(node.operand)})"
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        left, op, right = node.left, node.ops[0], node.comparators[0]
        if isinstance(op, (ast.In, ast.NotIn)):
            listed = _split_list(right)
            if listed is None:
                raise Untranslatable("'in' is translated only on a .split(...) list")
            member = f"stringListMember({_classad(left)}, {listed[0]}{listed[1]})"
            return member if isinstance(op, ast.In) else f"!{member}"
        if type(op) in _COMPARE:
            return f"({_classad(left)} {_COMPARE[type(op)]} {_classad(right)})"
    if isinstance(node, ast.Constant):
        if node.value is None:
            return "undefined"
        if isinstance(node.value, bool):
            return "true" if node.value else "false"
        if isinstance(node.value, (int, float)):
            return repr(node.value)
        if isinstance(node.value, str):
            return '"' + node.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    reference = _reference(node)
    if reference is not None:
        return reference
    if (
        (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("int", "float", "str")
        )
        and len(node.args) == 1
        and not node.keywords
    ):
        name = {"int": "int", "float": "real", "str": "string"}[node.func.id]
        return f"{name}({_classad(node.args[0])})"
    raise Untranslatable(
        f"{type(node).__name__} at column {getattr(node, 'col_offset', 0)} has no translation"
    )


def _reference(node: ast.AST) -> str | None:
    """job["A"], job.get("A"), glidein["attrs"]["B"], glidein["attrs"].get("B"[, default])."""
    default = None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        if not node.args or len(node.args) > 2 or node.keywords:
            return None
        key, base = node.args[0], node.func.value
        default = node.args[1] if len(node.args) == 2 else None
    elif isinstance(node, ast.Subscript):
        key, base = node.slice, node.value
    else:
        return None
    if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
        return None
    scope = None
    if isinstance(base, ast.Name) and base.id == "job":
        scope = "MY"
    elif (
        isinstance(base, ast.Subscript) and isinstance(base.value, ast.Name) and base.value.id == "glidein"
        and isinstance(base.slice, ast.Constant) and base.slice.value == "attrs"
    ):  # fmt: skip
        scope = "TARGET"
    if scope is None:
        return None
    attribute = f"{scope}.{key.value}"
    if default is not None:
        return f"ifThenElse(isUndefined({attribute}), {_classad(default)}, {attribute})"
    return attribute


def _split_list(node: ast.AST) -> tuple[str, str] | None:
    """``x.split(sep)`` -> (the ClassAd of x, the separator argument for stringListMember)."""
    if not (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "split"
    ):
        return None
    separator = ""
    if node.args:
        argument = node.args[0]
        if not (isinstance(argument, ast.Constant) and isinstance(argument.value, str)):
            return None
        if argument.value != ",":  # stringListMember's own delimiters are comma and space
            separator = ", " + _classad(argument)
    return _classad(node.func.value), separator
