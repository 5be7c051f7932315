"""`updraft frontend explain --job`: one job's whole situation, as an operator asks about it.

Why is my job idle?  The answer is spread over the frontend's last cycle (what it asked for
at each entry the job matches, and what capped it), the factories' glidefactoryclient ads
(what they have queued and running for the group, and the limits they hit), the pilots
that failed validation there, and the group's overflow clock.  This module gathers those
lines for one job and one group; cli.py prints them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from frontend.config import GroupConfig
from frontend.matching import Entry, from_their_factories
from updraft.core import classads, protocol
from updraft.core.client import Client, ClientError, PoolUnreachable


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def request_lines(record: Mapping[str, Any] | None, entry: Entry) -> list[str]:
    """What the frontend's last cycle asked for at the entry, and what limited it."""
    if record is None:
        return ["    frontend: no request in the last cycle (no cycle recorded, or the entry is new)"]
    counts, decision = record["counts"], record["decision"]
    caps = [f"limit {k} ({v})" for k, v in decision["limits"].items()]
    caps += [f"curb {k} ({v})" for k, v in decision["curbs"].items()]
    lines = [
        f"    frontend: asks {decision['idle']} idle, max run {decision['max_run']}"
        + (f"; capped by {', '.join(caps)}" if caps else "; nothing capped it")
        + (f"; removal {decision['remove']}" if decision["remove"] != "NO" else ""),
        f"    seen: {counts['idle_jobs']:g} idle jobs counted here, {counts['glideins_queued']} glideins queued, "
        f"{counts['idle_slots']} idle slots, {counts['busy_slots']} busy",
    ]
    if entry.down:
        lines.append("    the entry is in downtime: no pilots asked there")
    return lines


def factory_lines(client: Client, entry: Entry, frontend: str, group: str) -> list[str]:
    """The factory's side for this group at the entry (its glidefactoryclient ad) and failed pilots."""
    name = f"{entry.entry}@{entry.factory}@{frontend}.{group}"
    try:
        ads = client.query_ads(protocol.AdType.GlideFactoryClient.value, f"Name == {protocol.quote(name)}")
    except (PoolUnreachable, ClientError) as exc:
        return [f"    factory: cannot read its ad ({exc})"]
    ads, forged = from_their_factories(ads, protocol.ATTR_REQ_FACTORY)
    if not ads:
        return [
            f"    factory: {entry.factory} has not answered this group's request yet (no glidefactoryclient ad)"
        ] + [f"    ignored: a forged ad {name} ({why})" for name, why in forged]
    texts, prefix = ads[0], protocol.ATTR_MONITOR_PREFIX

    def number(key: str) -> int:
        return int(protocol.ad_value(texts, prefix + key, 0) or 0)

    hit = str(protocol.ad_value(texts, prefix + "LimitsHit", "") or "")
    return [
        f"    factory: {number('StatusUnsubmitted') + number('StatusIdle')} queued, {number('StatusRunning')} running, "
        f"{number('StatusHeld')} held for this group"
        + (f"; held back: {hit}" if hit else "; no factory limit hit"),
    ]


def failure_lines(client: Client, entry: Entry, frontend: str) -> list[str]:
    """Pilots of this frontend that failed validation at the entry (still holding their slots)."""
    constraint = (
        f"{protocol.ATTR_GLIDEIN_CLIENT} == {protocol.quote(frontend)}"
        f" && {protocol.ATTR_GLIDEIN_ENTRY} == {protocol.quote(entry.entry)}"
        f" && {protocol.ATTR_GLIDEIN_FACTORY} == {protocol.quote(entry.factory)}"
    )
    try:
        ads = client.query_ads(protocol.AdType.PilotFailure.value, constraint)
    except (PoolUnreachable, ClientError):
        return []
    if not ads:
        return []
    newest = max(ads, key=lambda a: float(protocol.ad_value(a, "FailureTime", 0) or 0))
    return [
        f"    failed pilots: {len(ads)}; newest: {protocol.ad_value(newest, 'FailedCheck', '?')} "
        f"({protocol.ad_value(newest, 'FailureType', '?')} {protocol.ad_value(newest, 'FailureCode', '?')}): "
        f"{protocol.ad_value(newest, 'FailureMessage', '')}"
    ]


def overflow_lines(
    group: GroupConfig, job: Mapping[str, str], job_ad: Any, now: float | None = None
) -> list[str]:
    """Where the job stands on the group's overflow clock."""
    settings = group.overflow
    if settings is None:
        return []
    now = time.time() if now is None else now
    if protocol.parse_literal(job.get(protocol.ATTR_OVERFLOWED, "false")) is True:
        homes = job.get(protocol.ATTR_OVERFLOW_HOME_SITES, '""')
        when = int(protocol.parse_literal(job.get(protocol.ATTR_OVERFLOW_TIME, "0")) or 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if when else "?"
        return [f"  overflow: widened at {stamp} from home sites {protocol.parse_literal(homes)}"]
    if not classads.is_true(classads.evaluate(settings.eligible, job_ad)):
        return [f"  overflow: never (eligible is not true for this job: {settings.eligible})"]
    desired = [
        s
        for s in str(protocol.parse_literal(job.get(protocol.ATTR_DESIRED_SITES, '""')) or "")
        .replace(",", " ")
        .split()
        if s
    ]
    uncovered = [s for s in desired if not settings.covers(s)]
    if not desired or uncovered:
        return [
            f"  overflow: never (no overflow sites for {', '.join(uncovered) or 'a job without DESIRED_Sites'})"
        ]
    if protocol.parse_literal(job.get("JobStatus", "1")) != 1:
        return ["  overflow: only idle jobs overflow"]
    started = float(protocol.parse_literal(job.get(settings.clock_attribute, "0")) or 0)
    wait = started + settings.after_s - now
    clock = f"the {settings.clock} clock ({settings.clock_attribute})"
    if wait > 0:
        return [f"  overflow: eligible in {_minutes(wait)} ({_minutes(settings.after_s)} on {clock})"]
    limit = (
        f", unless {settings.max_per_home_site} jobs of its home site overflow already"
        if settings.max_per_home_site
        else ""
    )
    return [
        f"  overflow: eligible now (waited {_minutes(now - started)} on {clock}): widened at the next cycle{limit}"
    ]
