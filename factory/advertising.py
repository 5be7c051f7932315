"""What the factory publishes each cycle: a glidefactory ad per entry, a glidefactoryclient ad per
(entry, frontend group).

glideinWMS's factory advertises the same two kinds; the frontend reads the first to choose
entries and the monitor reads both.  Built here from what the loop knows (the journal's
counts, each entry's health, the requests it read), so the loop only gathers and sends.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from factory.config import EntryConfig, FactoryConfig
from factory.limits import Counts, Request
from factory.tracking import PILOT_SECONDS
from updraft.core import protocol
from updraft.core.sealed import KEY_TYPE, KeyPair

if TYPE_CHECKING:
    from factory.loop import EntryHealth


def cycle_ads(
    config: FactoryConfig,
    keys: KeyPair,
    counts: Mapping[tuple[str, str], Mapping[str, int]],
    downtimes: Mapping[str, str | None],
    health: Mapping[str, EntryHealth],
    requests: Mapping[tuple[str, str], Request],
    totals: Counter[tuple[str, str]],
    lifetime_s: int,
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The enabled entries' glidefactory ads and their clients' glidefactoryclient ads.

    ``counts``: the journal's glideins by (entry, client) and state; ``downtimes``: the comment
    of each entry in downtime (absent when up); ``totals``: (entry, what) pilot seconds since start.
    """
    factory_ads, client_ads = [], []
    for entry in (e for e in config.entries if e.enabled):
        total = Counts()
        for (entry_name, _), states in counts.items():
            if entry_name == entry.name:
                total = total.add(Counts.from_states(states))
        ad = factory_ad(config, entry, keys, total, downtimes.get(entry.name), lifetime_s)
        ad.update(entry_monitoring(entry.name, health.get(entry.name), totals))
        factory_ads.append(ad)
        clients = {c for (e, c) in counts if e == entry.name} | {c for (e, c) in requests if e == entry.name}
        for client in sorted(clients):
            reasons = health[entry.name].reasons.get(client, []) if entry.name in health else []
            client_ads.append(
                client_ad(
                    config,
                    entry,
                    client,
                    Counts.from_states(counts.get((entry.name, client), {})),
                    requests.get((entry.name, client)),
                    reasons,
                    lifetime_s,
                )
            )
    return factory_ads, client_ads


def entry_monitoring(
    name: str, health: EntryHealth | None, totals: Counter[tuple[str, str]]
) -> dict[str, str]:
    """What the monitor shows of an entry beyond its counts: its newest trouble, and its pilots'
    time since the factory started (glideinWMS's factory monitoring: used, and wasted idle or
    failing validation)."""
    seconds = {what: n for (entry, what), n in totals.items() if entry == name}
    prefix = protocol.ATTR_MONITOR_PREFIX
    trouble = ""
    if health is not None:
        newest = (health.failing.get("newest") or [{}])[0] if health.failing else {}
        trouble = health.last_error or health.submit_problem or str(newest.get("message") or "")
    out = {protocol.ATTR_GLIDEIN_LAST_FAILURE: protocol.literal(trouble)}
    for kind in ("all", "used", "idle", "validation"):
        out[f"{prefix}PilotCoreSeconds{kind.capitalize()}"] = str(
            round(seconds.get(PILOT_SECONDS + kind, 0.0))
        )
    return out


def factory_ad(
    config: FactoryConfig,
    entry: EntryConfig,
    keys: KeyPair,
    counts: Counts,
    downtime: str | None,
    lifetime_s: int,
) -> dict[str, str]:
    """The entry's glidefactory ad: what it is, its limits, whether it is down, how busy it is."""
    ad = {
        protocol.ATTR_NAME: protocol.literal(f"{entry.name}@{config.name}"),
        protocol.ATTR_FACTORY_NAME: protocol.literal(config.name),
        protocol.ATTR_ENTRY_NAME: protocol.literal(entry.name),
        protocol.ATTR_GRIDTYPE: protocol.literal(entry.gridtype),
        protocol.ATTR_GATEKEEPER: protocol.literal(entry.gatekeeper),
        protocol.ATTR_IN_DOWNTIME: protocol.literal(bool(downtime)),
        protocol.ATTR_GLIDEIN_DOWNTIME_COMMENT: protocol.literal(downtime or ""),
        protocol.ATTR_ALLOWED_FRONTENDS: protocol.literal(",".join(entry.allowed_frontends)),
        protocol.ATTR_PUBKEY_ID: protocol.literal(keys.key_id),
        protocol.ATTR_PUBKEY_TYPE: protocol.literal(KEY_TYPE),
        protocol.ATTR_PUBKEY_VALUE: protocol.literal(keys.public_pem),
        protocol.ATTR_GLIDEIN_GLEXEC_LOCATION: protocol.literal(entry.glexec),
        protocol.ATTR_GLIDEIN_SOFTWARE_PATHS: protocol.literal(",".join(entry.software_paths)),
        protocol.ATTR_GLIDEIN_SQUID: protocol.literal(entry.squid),
        protocol.ATTR_GLIDEIN_START_EXPR: protocol.literal(entry.start_expr),
        protocol.ATTR_GLIDEIN_LIMIT_MAX_GLIDEINS: str(entry.limits.max_glideins),
        protocol.ATTR_GLIDEIN_LIMIT_MAX_IDLE: str(entry.limits.max_idle),
        protocol.ATTR_GLIDEIN_LIMIT_MAX_HELD: str(entry.limits.max_held),
        f"{protocol.ATTR_MONITOR_PREFIX}TotalStatusIdle": str(counts.idle),
        f"{protocol.ATTR_MONITOR_PREFIX}TotalStatusRunning": str(counts.running),
        f"{protocol.ATTR_MONITOR_PREFIX}TotalStatusHeld": str(counts.held),
        protocol.ATTR_GLIDEIN_ADVERTISED: str(int(time.time())),
        protocol.ATTR_LIFETIME: str(lifetime_s),
    }
    for key, value in entry.published_attributes().items():
        ad[key] = protocol.literal(value)
    ad.setdefault(protocol.ATTR_GLIDEIN_SITE, protocol.literal(entry.site))
    return ad


def client_ad(
    config: FactoryConfig,
    entry: EntryConfig,
    client: str,
    counts: Counts,
    request: Request | None,
    reasons: list[str],
    lifetime_s: int,
) -> dict[str, str]:
    prefix = protocol.ATTR_MONITOR_PREFIX
    return {
        protocol.ATTR_NAME: protocol.literal(f"{entry.name}@{config.name}@{client}"),
        protocol.ATTR_REQ_ENTRY: protocol.literal(entry.name),
        protocol.ATTR_REQ_FACTORY: protocol.literal(config.name),
        protocol.ATTR_CLIENT_NAME: protocol.literal(client),
        protocol.ATTR_GLIDEIN_SITE: protocol.literal(entry.site),
        f"{prefix}StatusIdle": str(counts.queued),
        f"{prefix}StatusUnsubmitted": str(counts.unsubmitted),
        f"{prefix}StatusRunning": str(counts.running),
        f"{prefix}StatusHeld": str(counts.held),
        f"{prefix}RequestedIdle": str(request.idle if request else 0),
        f"{prefix}RequestedMaxGlideins": str(request.max_glideins if request else 0),
        f"{prefix}LimitsHit": protocol.literal("; ".join(reasons)),
        protocol.ATTR_LIFETIME: str(lifetime_s),
    }
