"""The frontends' requests (glideclient ads), read and authenticated, and the ads the factory publishes."""

from __future__ import annotations

import time
from dataclasses import dataclass

from factory.config import EntryConfig, FactoryConfig
from factory.limits import Counts, Request
from updraft.core import protocol as p
from updraft.core.sealed import KEY_TYPE, KeyPair, SealError, open_sealed


@dataclass
class Rejected:
    name: str
    why: str


def read_requests(
    ads: list[dict[str, str]], config: FactoryConfig, keys: KeyPair
) -> tuple[dict[tuple[str, str], Request], list[Rejected]]:
    """Requests addressed to our entries, keyed by (entry, client), and what was refused and why.

    A request counts only if the identity the pool authenticated is the frontend it names,
    and that frontend may use the entry.
    """
    accepted: dict[tuple[str, str], Request] = {}
    rejected: list[Rejected] = []
    for texts in ads:
        name = str(p.ad_value(texts, p.ATTR_NAME, "?"))
        entry_name = str(p.ad_value(texts, p.ATTR_REQ_ENTRY, ""))
        client = str(p.ad_value(texts, p.ATTR_CLIENT_NAME, ""))
        frontend = str(p.ad_value(texts, p.ATTR_FRONTEND_NAME, ""))
        author = str(p.ad_value(texts, p.ATTR_AUTHENTICATED_IDENTITY, ""))
        if author != f"frontend:{frontend}" and author != "admin":
            rejected.append(
                Rejected(name, f"written by {author or 'nobody'}, claims to come from frontend {frontend!r}")
            )
            continue
        entry = config.entry(entry_name)
        if entry is None:
            rejected.append(Rejected(name, f"no entry {entry_name!r} in this factory"))
            continue
        if not entry.allows(frontend):
            rejected.append(Rejected(name, f"frontend {frontend!r} may not use entry {entry_name}"))
            continue
        params = {
            key[len(p.PARAM_PREFIX) :]: str(p.ad_value(texts, key, ""))
            for key in texts
            if key.startswith(p.PARAM_PREFIX)
        }
        token = ""
        sealed_key = p.ad_value(texts, p.ATTR_REQ_ENC_KEY)
        sealed_token = p.ad_value(texts, p.ENC_PARAM_PREFIX + "Token")
        if sealed_key and sealed_token:
            if p.ad_value(texts, p.ATTR_REQ_PUBKEY_ID) not in (None, keys.key_id):
                rejected.append(Rejected(name, "sealed for another key of this factory (an old one?)"))
                continue
            try:
                token = open_sealed(keys.open_key(str(sealed_key)), str(sealed_token))
            except SealError as exc:
                rejected.append(Rejected(name, str(exc)))
                continue
        try:
            request = Request(
                entry=entry_name,
                client=client or frontend,
                frontend=frontend,
                idle=max(0, int(p.ad_value(texts, p.ATTR_REQ_IDLE, 0))),
                max_glideins=max(0, int(p.ad_value(texts, p.ATTR_REQ_MAX_RUN, 0))),
                remove=str(p.ad_value(texts, p.ATTR_REQ_REMOVE_EXCESS, "NO")).upper(),
                margin=max(0, int(p.ad_value(texts, p.ATTR_REQ_REMOVE_MARGIN, 0))),
                idle_lifetime_s=max(0, int(p.ad_value(texts, p.ATTR_REQ_IDLE_LIFETIME, 0))),
                params=params,
                token=token,
            )
        except (TypeError, ValueError) as exc:
            rejected.append(Rejected(name, f"unreadable numbers: {exc}"))
            continue
        accepted[(entry_name, request.client)] = request
    return accepted, rejected


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
        p.ATTR_NAME: p.literal(f"{entry.name}@{config.name}"),
        p.ATTR_FACTORY_NAME: p.literal(config.name),
        p.ATTR_ENTRY_NAME: p.literal(entry.name),
        p.ATTR_GRIDTYPE: p.literal(entry.gridtype),
        p.ATTR_GATEKEEPER: p.literal(entry.gatekeeper),
        p.ATTR_IN_DOWNTIME: p.literal(bool(downtime)),
        "GLIDEIN_Downtime_Comment": p.literal(downtime or ""),
        p.ATTR_ALLOWED_FRONTENDS: p.literal(",".join(entry.allowed_frontends)),
        p.ATTR_PUBKEY_ID: p.literal(keys.key_id),
        p.ATTR_PUBKEY_TYPE: p.literal(KEY_TYPE),
        p.ATTR_PUBKEY_VALUE: p.literal(keys.public_pem),
        "GLIDEIN_Glexec_Use_Location": p.literal(entry.glexec),
        "GLIDEIN_Software_Paths": p.literal(",".join(entry.software_paths)),
        "GLIDEIN_Squid": p.literal(entry.squid),
        "GLIDEIN_Start_Expr": p.literal(entry.start_expr),
        "GLIDEIN_Limit_MaxGlideins": str(entry.limits.max_glideins),
        "GLIDEIN_Limit_MaxIdle": str(entry.limits.max_idle),
        "GLIDEIN_Limit_MaxHeld": str(entry.limits.max_held),
        f"{p.ATTR_MONITOR_PREFIX}TotalStatusIdle": str(counts.idle),
        f"{p.ATTR_MONITOR_PREFIX}TotalStatusRunning": str(counts.running),
        f"{p.ATTR_MONITOR_PREFIX}TotalStatusHeld": str(counts.held),
        "GLIDEIN_Advertised": str(int(time.time())),
        p.ATTR_LIFETIME: str(lifetime_s),
    }
    for key, value in entry.attributes.items():
        ad[key] = p.literal(value)
    ad.setdefault(p.ATTR_GLIDEIN_SITE, p.literal(entry.site))
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
    prefix = p.ATTR_MONITOR_PREFIX
    return {
        p.ATTR_NAME: p.literal(f"{entry.name}@{config.name}@{client}"),
        p.ATTR_REQ_ENTRY: p.literal(entry.name),
        p.ATTR_REQ_FACTORY: p.literal(config.name),
        p.ATTR_CLIENT_NAME: p.literal(client),
        p.ATTR_GLIDEIN_SITE: p.literal(entry.site),
        f"{prefix}StatusIdle": str(counts.queued),
        f"{prefix}StatusUnsubmitted": str(counts.unsubmitted),
        f"{prefix}StatusRunning": str(counts.running),
        f"{prefix}StatusHeld": str(counts.held),
        f"{prefix}RequestedIdle": str(request.idle if request else 0),
        f"{prefix}RequestedMaxGlideins": str(request.max_glideins if request else 0),
        f"{prefix}LimitsHit": p.literal("; ".join(reasons)),
        p.ATTR_LIFETIME: str(lifetime_s),
    }
