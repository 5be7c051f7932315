"""Overflow after a timeout: jobs idle too long for their home sites may also run elsewhere.

A job waiting longer than ``after`` (since submission, or in its current idle state) whose
DESIRED_Sites are all home sites of the group's overflow map gets its DESIRED_Sites widened
with those sites' overflow sites, keeping DESIRED_Sites_Orig, the time and its home sites,
and CMS's own record (DESIRED_SITES_Diff, RouteType, HasBeenOverflowRouted, LastRouted);
the ordinary matching then asks for pilots there.  Jobs for which ``eligible`` is not true
(by default ``AllowOverflow = false``, or CRAB's ``CMS_ALLOW_OVERFLOW = "False"``) are left
alone.  ``max_per_home_site``
bounds the overflowed jobs (idle or running) per home site: they read their input from
the home site's storage, and that storage is the scarce resource.

Jobs are counted per DESIRED_Sites value with the pool's job summary and edited in
batches, so a queue of a million long-idle jobs costs a handful of calls.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from frontend.config import GroupConfig, Overflow
from updraft.core import payloads, protocol
from updraft.core.client import Client

log = logging.getLogger("updraft.frontend")


@dataclass
class OverflowReport:
    widened: dict[str, int] = field(default_factory=dict)  # new DESIRED_Sites -> jobs widened now
    held_back: dict[str, int] = field(default_factory=dict)  # home site -> jobs that wait for room
    overflowing: dict[str, int] = field(default_factory=dict)  # home site -> overflowed jobs in the queue


def sites_of(text: str | None) -> list[str]:
    """The sites of a DESIRED_Sites text: a ClassAd string holding a comma/space list."""
    if text is None:
        return []
    try:
        value = protocol.parse_literal(text)
    except ValueError:
        return []
    if not isinstance(value, str):
        return []
    return [s for s in value.replace(",", " ").split() if s]


def overflow(
    client: Client,
    group: GroupConfig,
    known_sites: set[str],
    now: float | None = None,
    limit_per_cycle: int = 10000,
) -> OverflowReport:
    settings = group.overflow
    report = OverflowReport()
    if settings is None:
        return report
    now = time.time() if now is None else now
    base = f"({group.job_constraint})"
    overflowing = client.summary(
        payloads.SummaryRequest(
            f"{base} && {protocol.ATTR_OVERFLOWED} =?= true && (JobStatus == 1 || JobStatus == 2)",
            [protocol.ATTR_OVERFLOW_HOME_SITES],
            0,
        )
    )
    current: Counter[str] = Counter()
    for row in overflowing.rows:
        for home in sites_of(row.key[0]):
            current[home] += row.idle + row.running
    candidates = (
        f"{base} && JobStatus == 1 && {protocol.ATTR_OVERFLOWED} =!= true && ({settings.eligible})"
        f" && {protocol.ATTR_DESIRED_SITES} isnt undefined"
        f" && {settings.clock_attribute} < {now - settings.after_s:.0f}"
    )
    waiting = client.summary(payloads.SummaryRequest(candidates, [protocol.ATTR_DESIRED_SITES], 0))
    rows = [(row.key[0], row.idle) for row in waiting.rows]
    for move in plan_overflow(settings, rows, current, known_sites, limit_per_cycle, report):
        homes, targets = move.homes, move.targets
        ids = [
            f"{ad['ClusterId']}.{ad['ProcId']}"
            for ad in client.query(
                payloads.QueryRequest(
                    f"{candidates} && {protocol.ATTR_DESIRED_SITES} =?= {move.desired}",
                    ["ClusterId", "ProcId"],
                    limit=move.count,
                )
            ).ads
        ]
        widened = ",".join([*homes, *targets])
        done = (
            len(
                client.edit(payloads.EditRequest(ids, overflow_attrs(move.desired, homes, widened, now))).done
            )
            if ids
            else 0
        )
        for home in homes:  # the plan counted every job it chose; fewer were widened
            current[home] -= move.count - done
        if not done:
            continue
        report.widened[widened] = report.widened.get(widened, 0) + done
        log.info(
            "group %s: %d job(s) idle over %.0f s at %s may now also run at %s",
            group.name,
            done,
            settings.after_s,
            ",".join(homes),
            ",".join(targets),
        )
        try:
            client.record_event(
                "frontend_overflow",
                {
                    "group": group.name,
                    "jobs": done,
                    "home": ",".join(homes),
                    "to": ",".join(targets),
                    "ids": ids[:20],
                },
            )
        except Exception as exc:  # the edit is what matters; the event is for people
            log.debug("overflow event not recorded: %s", exc)
    report.overflowing = dict(current)
    return report


@dataclass
class Move:
    """Widen ``count`` of the jobs whose DESIRED_Sites text is ``desired``."""

    desired: str
    homes: list[str]
    targets: list[str]
    count: int


def plan_overflow(
    settings: Overflow,
    rows: Iterable[tuple[str | None, int]],
    current: Counter[str],
    known_sites: set[str],
    budget: int,
    report: OverflowReport,
) -> Iterator[Move]:
    """Which waiting jobs to widen, oldest kinds first, within max_per_home_site and the budget.

    ``rows`` are (DESIRED_Sites text, jobs idle past ``after``); ``current`` counts the
    overflowed jobs per home site and is updated as if every move succeeds.  The live
    frontend and the simulator both decide here.
    """
    for desired, old_idle in sorted(rows, key=lambda r: -r[1]):
        homes = sites_of(desired)
        if desired is None or not old_idle or not homes or not all(settings.covers(h) for h in homes):
            continue
        targets = list(
            dict.fromkeys(t for h in homes for t in settings.targets(h, known_sites) if t not in homes)
        )
        if not targets:
            continue
        room = min(old_idle, budget)
        if settings.max_per_home_site:
            room = min(room, *(max(0, settings.max_per_home_site - current[h]) for h in homes))
        if room < old_idle:
            for home in homes:
                report.held_back[home] = report.held_back.get(home, 0) + old_idle - room
        if room <= 0:
            continue
        budget -= room
        for home in homes:
            current[home] += room
        yield Move(desired, homes, targets, room)
        if budget <= 0:
            return


def overflow_attrs(desired: str, homes: list[str], widened: str, now: float) -> dict[str, str]:
    """The job attributes an overflow sets (ClassAd texts)."""
    return {
        protocol.ATTR_DESIRED_SITES: protocol.literal(widened),
        protocol.ATTR_DESIRED_SITES_ORIG: desired,
        protocol.ATTR_OVERFLOW_TIME: str(int(now)),
        protocol.ATTR_OVERFLOWED: "true",
        protocol.ATTR_OVERFLOW_HOME_SITES: protocol.literal(",".join(homes)),
        protocol.ATTR_DESIRED_SITES_DIFF: protocol.literal(
            ",".join(s for s in sites_of(protocol.literal(widened)) if s not in homes)
        ),
        protocol.ATTR_ROUTE_TYPE: protocol.literal("overflow"),
        protocol.ATTR_HAS_BEEN_OVERFLOW_ROUTED: "true",
        protocol.ATTR_LAST_ROUTED: str(int(now)),
    }
