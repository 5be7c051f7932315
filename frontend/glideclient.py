"""A frontend group's request to one factory entry, as the glideclient ad the factory reads.

The numbers travel in the clear; the pilot token is sealed to the factory's public key
(from its glidefactory ad), so only the addressed factory can read it, as glideinWMS does
with ReqEncKeyCode and GlideinEncParam*.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from updraft.core import protocol as p
from updraft.core.sealed import new_request_key, seal


@dataclass(frozen=True)
class PilotRequest:
    idle: int  # idle glideins wanted at the site
    max_glideins: int  # ceiling on this group's glideins at the entry
    remove: str = "NO"  # NO | WAIT | IDLE | ALL: what to do with the excess
    margin: int = 0
    idle_lifetime_s: int = 0  # glideins idle at the site longer than this are removed (0: the factory's)
    params: Mapping[str, str] = field(default_factory=dict)  # GlideinParam<Name>: start expr, gLExec use...


def glideclient_ad(
    factory_ad: Mapping[str, str], frontend: str, group: str, request: PilotRequest, token: str
) -> dict[str, str]:
    """The glideclient ad for one (entry, group); ``factory_ad`` is the entry's glidefactory ad (texts)."""
    entry = str(p.parse_literal(factory_ad[p.ATTR_ENTRY_NAME]))
    factory = str(p.parse_literal(factory_ad[p.ATTR_FACTORY_NAME]))
    client = f"{frontend}.{group}"
    ad = {
        p.ATTR_NAME: p.literal(f"{entry}@{factory}@{client}"),
        p.ATTR_REQ_NAME: p.literal(f"{entry}@{factory}"),
        p.ATTR_REQ_FACTORY: p.literal(factory),
        p.ATTR_REQ_ENTRY: p.literal(entry),
        p.ATTR_CLIENT_NAME: p.literal(client),
        p.ATTR_FRONTEND_NAME: p.literal(frontend),
        p.ATTR_GROUP_NAME: p.literal(group),
        p.ATTR_REQ_IDLE: p.literal(int(request.idle)),
        p.ATTR_REQ_MAX_RUN: p.literal(int(request.max_glideins)),
        p.ATTR_REQ_REMOVE_EXCESS: p.literal(request.remove.upper()),
        p.ATTR_REQ_REMOVE_MARGIN: p.literal(int(request.margin)),
        p.ATTR_REQ_IDLE_LIFETIME: p.literal(int(request.idle_lifetime_s)),
    }
    for name, value in request.params.items():
        ad[p.PARAM_PREFIX + name] = p.literal(str(value))
    if token:
        public_pem = str(p.parse_literal(factory_ad[p.ATTR_PUBKEY_VALUE]))
        key, sealed_key = new_request_key(public_pem)
        ad[p.ATTR_REQ_PUBKEY_ID] = factory_ad[p.ATTR_PUBKEY_ID]
        ad[p.ATTR_REQ_ENC_KEY] = p.literal(sealed_key)
        ad[p.ENC_PARAM_PREFIX + "Token"] = p.literal(seal(key, token))
    return ad


def glideresource_ad(
    factory_ad: Mapping[str, str], frontend: str, group: str, counts: Any, decision: Any
) -> dict[str, str]:
    """The frontend's view of one (entry, group) for monitoring: the numbers and what limited the request."""
    entry = str(p.parse_literal(factory_ad[p.ATTR_ENTRY_NAME]))
    factory = str(p.parse_literal(factory_ad[p.ATTR_FACTORY_NAME]))
    prefix = "GlideClientMonitor"
    ad = {
        p.ATTR_NAME: p.literal(f"{entry}@{factory}@{frontend}.{group}"),
        p.ATTR_REQ_ENTRY: p.literal(entry),
        p.ATTR_REQ_FACTORY: p.literal(factory),
        p.ATTR_CLIENT_NAME: p.literal(f"{frontend}.{group}"),
        p.ATTR_FRONTEND_NAME: p.literal(frontend),
        p.ATTR_GROUP_NAME: p.literal(group),
        p.ATTR_GLIDEIN_SITE: factory_ad.get(p.ATTR_GLIDEIN_SITE, p.literal("")),
        f"{prefix}JobsIdle": p.literal(round(float(counts.idle_jobs), 3)),
        f"{prefix}JobsOldIdle": p.literal(round(float(counts.old_idle_jobs), 3)),
        f"{prefix}JobsRunning": p.literal(round(float(counts.running_jobs), 3)),
        f"{prefix}GlideinsQueued": p.literal(int(counts.glideins_queued)),
        f"{prefix}GlideinsRunning": p.literal(int(counts.glideins_running)),
        f"{prefix}GlideinsHeld": p.literal(int(counts.glideins_held)),
        f"{prefix}PilotsIdle": p.literal(int(counts.idle_slots)),
        f"{prefix}PilotsBusy": p.literal(int(counts.busy_slots)),
        f"{prefix}PilotsFailed": p.literal(int(counts.failed_pilots)),
        f"{prefix}RequestedIdle": p.literal(int(decision.idle)),
        f"{prefix}RequestedMaxRun": p.literal(int(decision.max_run)),
        f"{prefix}RemoveExcess": p.literal(decision.remove),
        f"{prefix}LimitsTriggered": p.literal(", ".join(f"{k} ({v})" for k, v in decision.limits.items())),
        f"{prefix}CurbsTriggered": p.literal(", ".join(f"{k} ({v})" for k, v in decision.curbs.items())),
    }
    return ad
