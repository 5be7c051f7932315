"""The import graph has layers: a common core at the bottom that imports nothing else of ours,
service plumbing above it, the components above that, and the application on top.

- ``updraft.core`` imports only ``updraft.core``;
- ``updraft.service`` imports the core;
- the components (``userpool``, ``factory``, ``frontend``, ``pilot``) import the core, the
  service plumbing and themselves, never each other, except the factory building the pilot
  (``pilot.build``);
- only the application (``updraft.cli``, ``updraft.demo``, ``updraft.proxy``, ``updraft.__main__``)
  imports components;
- the pilot bundle's core modules import only the standard library (and each other).

Imports inside functions count: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

from updraft.core import PILOT_BUNDLE

ROOT = Path(__file__).resolve().parents[3]
COMPONENTS = ("userpool", "factory", "frontend", "pilot")
APPLICATION = ("updraft.cli", "updraft.demo", "updraft.proxy", "updraft.__main__")
#: used when the host has them, the standard library otherwise (a bare worker node has neither)
OPTIONAL = {"orjson", "requests"}
#: the one import across components the design allows
ALLOWED_ACROSS = {("factory", "pilot.build")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer(module: str) -> str:
    if module in ("updraft", "updraft.core") or module.startswith("updraft.core."):
        return "core"  # the top package holds only the version
    if module.endswith(".__main__"):
        return "application"  # `python -m factory` is the updraft command
    if module == "updraft.service":
        return "service"
    if module in APPLICATION or module == "updraft":
        return "application"
    return module.split(".")[0]


def imports() -> dict[str, set[str]]:
    """Every first-party module and the first-party modules it imports."""
    found: dict[str, set[str]] = defaultdict(set)
    for top in ("updraft", *COMPONENTS):
        for path in (ROOT / top).rglob("*.py"):
            name = module_name(path)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                else:
                    continue
                for target in targets:
                    if target.split(".")[0] in ("updraft", *COMPONENTS):
                        found[name].add(target)
    return found


def first_party(target: str, known: set[str]) -> str | None:
    """The module ``target`` names ("from x import y" may name a module x.y or a name in x)."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def test_the_core_imports_nothing_of_ours_above_it() -> None:
    graph = imports()
    known = set(graph) | {
        module_name(p) for top in ("updraft", *COMPONENTS) for p in (ROOT / top).rglob("*.py")
    }
    problems = []
    for module, targets in graph.items():
        mine = layer(module)
        for target in targets:
            resolved = first_party(target, known)
            if resolved is None or resolved == module:
                continue
            theirs = layer(resolved)
            if theirs == mine or theirs == "core":
                continue
            if theirs == "service" and mine in (*COMPONENTS, "application"):
                continue
            if mine == "application":
                continue
            if (mine, resolved) in ALLOWED_ACROSS:
                continue
            problems.append(f"{module} ({mine}) imports {resolved} ({theirs})")
    assert not problems, "\n".join(sorted(problems))


def test_the_pilot_bundles_core_modules_are_standard_library_only() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    problems = []
    for name in PILOT_BUNDLE:
        path = ROOT / "updraft" / "core" / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in stdlib:
                    continue
                if (
                    top == "updraft"
                    and isinstance(node, ast.ImportFrom)
                    and node.module.startswith("updraft.core")
                ):
                    bundled = node.module.split(".")[2] if node.module.count(".") >= 2 else ""
                    if bundled in PILOT_BUNDLE or not bundled:
                        continue
                if top in OPTIONAL:
                    continue
                problems.append(f"{path.name} imports {top}")
    assert not problems, problems


def test_client_errors_point_to_their_fix(tmp_path, monkeypatch) -> None:
    import ssl

    import pytest

    from updraft.core.client import Client
    from updraft.core.transport import PoolUnreachable, fix_hint

    monkeypatch.delenv("UPDRAFT_POOL", raising=False)
    with pytest.raises(PoolUnreachable, match="UPDRAFT_HOME") as caught:
        Client.from_environment(home=tmp_path)
    assert "UPDRAFT_POOL" in str(caught.value)
    assert "UPDRAFT_CA" in fix_hint(
        ssl.SSLError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    )
    assert "is the pool running" in fix_hint(ConnectionRefusedError(111, "Connection refused"))
