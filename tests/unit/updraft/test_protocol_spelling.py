"""Every path and cross-process attribute is spelled once, in the protocol module.

A string literal equal to one of updraft.core.protocol's paths (``/v1/...``) or to an
attribute name that crosses processes (GLIDEIN_*, the glideclient/glidefactory request
attributes, the overflow record ...) anywhere else in the product code is a second spelling:
use the constant.  HTCondor's own generic names (Name, MyType, START, Requirements, Rank)
are left out; tests and benchmarks may spell what they test.
"""

from __future__ import annotations

import ast
from pathlib import Path

from updraft.core import protocol

ROOT = Path(__file__).resolve().parents[3]
PRODUCT = ("updraft", "userpool", "factory", "frontend", "pilot")
HTCONDOR_GENERIC = {"Name", "MyType", "START", "Requirements", "Rank", "Authorization"}


def spelled_once() -> dict[str, str]:
    """value -> constant name, for every path and cross-process attribute."""
    out = {}
    for name in dir(protocol):
        value = getattr(protocol, name)
        if not isinstance(value, str) or name.startswith("_"):
            continue
        if (
            value.startswith("/v1/")
            or value in ("/metrics", "/monitor")
            or ((name.startswith("ATTR_") or name.endswith("_PREFIX")) and value not in HTCONDOR_GENERIC)
        ):
            out[value] = name
    return out


def test_paths_and_attributes_are_spelled_only_in_the_protocol_module() -> None:
    wanted = spelled_once()
    found = []
    for top in PRODUCT:
        for path in (ROOT / top).rglob("*.py"):
            if path == ROOT / "updraft" / "core" / "protocol.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in wanted:
                    found.append(
                        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r} is protocol.{wanted[node.value]}"
                    )
    assert not found, "\n".join(found)


def test_the_well_known_glidein_attributes_have_constants() -> None:
    wanted = spelled_once()
    for attribute in (
        "GLIDEIN_CPUS",
        "GLIDEIN_Max_Walltime",
        "GLIDEIN_MaxMemMBs",
        "GLIDEIN_Site",
        "GLIDEIN_ToRetire",
    ):
        assert attribute in wanted, attribute
