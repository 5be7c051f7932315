"""Validation failures as they happen: the pilotfailure ads that this factory's pilots write.

A pilot whose node fails validation advertises a pilotfailure ad at once, then keeps its
batch slot for ``failure_hold_s`` (20 minutes by default, so the site does not hand the
same broken node to the next glidein) before it ends and its final record reaches the
journal.  Counting only ended pilots would show a site that fails everything as "ok, 2
running" for those 20 minutes; the ads show it within a cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from updraft.core import protocol
from updraft.core.client import Client, ClientError, PoolUnreachable

log = logging.getLogger("updraft.factory")

FAILURE_ATTRS = [
    protocol.ATTR_GLIDEIN_ENTRY, protocol.ATTR_GLIDEIN_ID, protocol.ATTR_GLIDEIN_NAME, "Machine",
    "FailedCheck", "FailureType", "FailureCode", "FailureMessage", "FailureTime",
]  # fmt: skip
KEPT_PER_ENTRY = 200  # the newest failures each entry shows (the count covers all of them)


@dataclass(frozen=True)
class LiveFailure:
    """One pilot failing validation now (its slot still held at the site)."""

    glidein_id: str
    glidein_name: str
    machine: str
    check: str
    failure_type: str
    code: int
    message: str
    since: float


def live_failures(client: Client, factory: str) -> dict[str, list[LiveFailure]] | None:
    """Entry -> its pilots failing validation now, newest first (None: the pool did not answer)."""
    try:
        ads = client.query_ads(
            protocol.AdType.PilotFailure.value,
            f"{protocol.ATTR_GLIDEIN_FACTORY} == {protocol.quote(factory)}",
            FAILURE_ATTRS,
        )
    except (PoolUnreachable, ClientError) as exc:
        log.warning("cannot read the pilots' validation failures: %s", exc)
        return None
    out: dict[str, list[LiveFailure]] = {}
    for texts in ads:
        entry = str(protocol.ad_value(texts, protocol.ATTR_GLIDEIN_ENTRY, "") or "")
        if not entry:
            continue
        out.setdefault(entry, []).append(_failure(texts))
    for failures in out.values():
        failures.sort(key=lambda f: f.since, reverse=True)
    return out


def _failure(texts: Mapping[str, str]) -> LiveFailure:
    def text(name: str) -> str:
        return str(protocol.ad_value(texts, name, "") or "")

    def number(name: str) -> float:
        value = protocol.ad_value(texts, name, 0)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0

    return LiveFailure(
        text(protocol.ATTR_GLIDEIN_ID), text(protocol.ATTR_GLIDEIN_NAME), text("Machine"), text("FailedCheck"),
        text("FailureType"), int(number("FailureCode")), text("FailureMessage")[:300], number("FailureTime"),
    )  # fmt: skip


def as_status(failures: list[LiveFailure]) -> dict[str, Any]:
    """What status.json keeps of an entry's live failures (its count, the newest few)."""
    by_type: dict[str, int] = {}
    for failure in failures:
        by_type[failure.failure_type or "unknown"] = by_type.get(failure.failure_type or "unknown", 0) + 1
    return {
        "count": len(failures),
        "by_type": by_type,
        "newest": [asdict(f) for f in failures[:KEPT_PER_ENTRY]],
    }


def failing_note(live: Mapping[str, Any], running: int) -> str:
    """The entries table's note for an entry with pilots failing validation now ("" when none)."""
    count = int(live.get("count", 0) or 0)
    if not count:
        return ""
    newest = (live.get("newest") or [{}])[0]
    what = f"{newest.get('check', '?')} ({newest.get('failure_type', '?')} {newest.get('code', '?')}): {newest.get('message', '')}"
    of = f" of {running} running" if running else ""
    return f"{count}{of} pilot(s) failing validation now, newest: {what}"


def is_failing(live: Mapping[str, Any], running: int) -> bool:
    """An entry is failing when at least half of its running pilots fail validation now."""
    count = int(live.get("count", 0) or 0)
    return count > 0 and count * 2 >= max(1, running)
