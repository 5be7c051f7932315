"""The pilot's state machine (a table) and the slot ad it advertises."""

from __future__ import annotations

import enum
import platform
from collections.abc import Mapping
from typing import Any

from updraft.core import protocol
from updraft.core.protocol import (
    ATTR_GLIDEIN_CLIENT,
    ATTR_GLIDEIN_CLIENT_GROUP,
    ATTR_GLIDEIN_ENTRY,
    ATTR_GLIDEIN_FACTORY,
    ATTR_GLIDEIN_ID,
    ATTR_GLIDEIN_NAME,
    ATTR_GLIDEIN_SITE,
    ATTR_GLIDEIN_TO_DIE,
    ATTR_GLIDEIN_TO_RETIRE,
    literal,
)
from updraft.core.states import StateMachine


class PilotState(str, enum.Enum):
    STARTING = "starting"  # reading its parameters, making its work directory
    VALIDATING = "validating"  # running the checks; takes no job
    FAILED = "failed"  # a check failed: reported, holding the batch slot so the node eats no more pilots
    IDLE = "idle"  # validated, asking for work, running nothing
    BUSY = "busy"  # running at least one job (may still ask for more with free cores)
    RETIRING = "retiring"  # takes no new job (ToRetire, black hole, token not renewed); lets running ones end
    VACATING = "vacating"  # ToDie, SIGTERM or the pool lost: stopping jobs and giving them back
    DONE = "done"  # leaving: slot ad withdrawn, final record written


ALLOWED: Mapping[PilotState, frozenset[PilotState]] = {
    PilotState.STARTING: frozenset({PilotState.VALIDATING, PilotState.FAILED, PilotState.DONE}),
    PilotState.VALIDATING: frozenset({PilotState.IDLE, PilotState.FAILED, PilotState.DONE}),
    PilotState.FAILED: frozenset({PilotState.DONE}),
    PilotState.IDLE: frozenset({PilotState.BUSY, PilotState.RETIRING, PilotState.VACATING, PilotState.DONE}),
    PilotState.BUSY: frozenset({PilotState.IDLE, PilotState.RETIRING, PilotState.VACATING}),
    PilotState.RETIRING: frozenset({PilotState.VACATING, PilotState.DONE}),
    PilotState.VACATING: frozenset({PilotState.DONE}),
    PilotState.DONE: frozenset(),
}
TERMINAL = frozenset(state for state, following in ALLOWED.items() if not following)


#: the only way the pilot's state changes
PILOT_STATES = StateMachine("pilot", ALLOWED)


def start_expression(entry_start: str, group_start: str) -> str:
    """The slot's START: the entry's and the frontend group's, both, and not after ToRetire."""
    parts = [
        f"({text.strip()})" for text in (entry_start, group_start) if text and text.strip().lower() != "true"
    ]
    parts.append(f"(time() < {ATTR_GLIDEIN_TO_RETIRE})")
    return " && ".join(parts)


def base_ad(
    name: str,
    host: str,
    config: Any,
    to_retire: int,
    to_die: int,
    has_glexec: bool,
    squid: str,
    isolation: str,
    total_cpus: int,
    total_memory_mb: int,
) -> dict[str, str]:
    """The attributes that do not change while the pilot runs (free resources are added per poll)."""
    ad = {
        "Name": literal(name),
        "Machine": literal(host),
        ATTR_GLIDEIN_SITE: literal(config.site or "Unknown"),
        ATTR_GLIDEIN_ENTRY: literal(config.entry or "Unknown"),
        ATTR_GLIDEIN_FACTORY: literal(config.factory or "Unknown"),
        ATTR_GLIDEIN_NAME: literal(config.glidein_name),
        ATTR_GLIDEIN_ID: literal(config.glidein_id),
        ATTR_GLIDEIN_TO_RETIRE: str(to_retire),
        ATTR_GLIDEIN_TO_DIE: str(to_die),
        ATTR_GLIDEIN_CLIENT: literal(config.frontend),
        ATTR_GLIDEIN_CLIENT_GROUP: literal(config.group),
        "Arch": literal(_arch()),
        "OpSys": literal("LINUX"),
        "HasGlexec": literal(has_glexec),
        "Isolation": literal(isolation),
        "HasFileTransfer": "true",
        "FileSystemDomain": literal(f"{name}.updraft"),
        "TotalCpus": str(total_cpus),
        "TotalMemory": str(total_memory_mb),
        "PartitionableSlot": "true",
        "START": start_expression(config.start_expr, config.group_start_expr),
        "Rank": config.rank or "0",
        protocol.ATTR_GLIDEIN_IDLE_TIMEOUT: str(config.idle_timeout_s),
        protocol.ATTR_GLIDEIN_TAIL_TIMEOUT: str(config.tail_timeout_s),
    }
    if squid:
        ad[protocol.ATTR_GLIDEIN_PROXY_URL] = literal(squid)
    for key, value in (config.attributes or {}).items():
        ad[str(key)] = attribute_text(value)
    return ad


def attribute_text(value: Any) -> str:
    """An extra slot attribute from config: "expr:<ClassAd expression>", or a plain value as a literal."""
    if isinstance(value, str) and value.startswith("expr:"):
        return value[len("expr:") :].strip()
    return literal(value)


def _arch() -> str:
    machine = platform.machine().upper()
    return {"AMD64": "X86_64", "AARCH64": "AARCH64"}.get(machine, machine)
