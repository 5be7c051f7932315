"""A frontend group's request to one factory entry, as the glideclient ad the factory reads.

The numbers travel in the clear; the pilot token is sealed to the factory's public key
(from its glidefactory ad), so only the addressed factory can read it, as glideinWMS does
with ReqEncKeyCode and GlideinEncParam*.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from updraft.core import protocol
from updraft.core.sealed import new_request_key, seal


@dataclass(frozen=True)
class PilotRequest:
    idle: int  # idle glideins wanted at the site
    max_glideins: int  # ceiling on this group's glideins at the entry
    remove: str = "NO"  # NO | WAIT | IDLE | ALL: what to do with the excess
    margin: int = 0
    idle_lifetime_s: int = 0  # glideins idle at the site longer than this are removed (0: the factory's)
    params: Mapping[str, str] = field(default_factory=dict)  # GlideinParam<Name>: start expr, gLExec use...
    remove_busy: bool = False  # ALL may take glideins that run jobs (the operator asked for it)


def glideclient_ad(
    factory_ad: Mapping[str, str], frontend: str, group: str, request: PilotRequest, token: str
) -> dict[str, str]:
    """The glideclient ad for one (entry, group); ``factory_ad`` is the entry's glidefactory ad (texts)."""
    entry = str(protocol.parse_literal(factory_ad[protocol.ATTR_ENTRY_NAME]))
    factory = str(protocol.parse_literal(factory_ad[protocol.ATTR_FACTORY_NAME]))
    client = f"{frontend}.{group}"
    ad = {
        protocol.ATTR_NAME: protocol.literal(f"{entry}@{factory}@{client}"),
        protocol.ATTR_REQ_NAME: protocol.literal(f"{entry}@{factory}"),
        protocol.ATTR_REQ_FACTORY: protocol.literal(factory),
        protocol.ATTR_REQ_ENTRY: protocol.literal(entry),
        protocol.ATTR_CLIENT_NAME: protocol.literal(client),
        protocol.ATTR_FRONTEND_NAME: protocol.literal(frontend),
        protocol.ATTR_GROUP_NAME: protocol.literal(group),
        protocol.ATTR_REQ_IDLE: protocol.literal(int(request.idle)),
        protocol.ATTR_REQ_MAX_RUN: protocol.literal(int(request.max_glideins)),
        protocol.ATTR_REQ_REMOVE_EXCESS: protocol.literal(request.remove.upper()),
        protocol.ATTR_REQ_REMOVE_MARGIN: protocol.literal(int(request.margin)),
        protocol.ATTR_REQ_REMOVE_BUSY: protocol.literal(bool(request.remove_busy)),
        protocol.ATTR_REQ_IDLE_LIFETIME: protocol.literal(int(request.idle_lifetime_s)),
    }
    for name, value in request.params.items():
        ad[protocol.PARAM_PREFIX + name] = protocol.literal(str(value))
    if token:
        public_pem = str(protocol.parse_literal(factory_ad[protocol.ATTR_PUBKEY_VALUE]))
        key, sealed_key = new_request_key(public_pem)
        ad[protocol.ATTR_REQ_PUBKEY_ID] = factory_ad[protocol.ATTR_PUBKEY_ID]
        ad[protocol.ATTR_REQ_ENC_KEY] = protocol.literal(sealed_key)
        ad[protocol.ENC_PARAM_PREFIX + "Token"] = protocol.literal(seal(key, token))
    return ad


def glideresource_ad(
    factory_ad: Mapping[str, str], frontend: str, group: str, counts: Any, decision: Any
) -> dict[str, str]:
    """The frontend's view of one (entry, group) for monitoring: the numbers and what limited the request."""
    entry = str(protocol.parse_literal(factory_ad[protocol.ATTR_ENTRY_NAME]))
    factory = str(protocol.parse_literal(factory_ad[protocol.ATTR_FACTORY_NAME]))
    prefix = "GlideClientMonitor"
    ad = {
        protocol.ATTR_NAME: protocol.literal(f"{entry}@{factory}@{frontend}.{group}"),
        protocol.ATTR_REQ_ENTRY: protocol.literal(entry),
        protocol.ATTR_REQ_FACTORY: protocol.literal(factory),
        protocol.ATTR_CLIENT_NAME: protocol.literal(f"{frontend}.{group}"),
        protocol.ATTR_FRONTEND_NAME: protocol.literal(frontend),
        protocol.ATTR_GROUP_NAME: protocol.literal(group),
        protocol.ATTR_GLIDEIN_SITE: factory_ad.get(protocol.ATTR_GLIDEIN_SITE, protocol.literal("")),
        f"{prefix}JobsIdle": protocol.literal(round(float(counts.idle_jobs), 3)),
        f"{prefix}JobsOldIdle": protocol.literal(round(float(counts.old_idle_jobs), 3)),
        f"{prefix}JobsRunning": protocol.literal(round(float(counts.running_jobs), 3)),
        f"{prefix}GlideinsQueued": protocol.literal(int(counts.glideins_queued)),
        f"{prefix}GlideinsRunning": protocol.literal(int(counts.glideins_running)),
        f"{prefix}GlideinsHeld": protocol.literal(int(counts.glideins_held)),
        f"{prefix}PilotsIdle": protocol.literal(int(counts.idle_slots)),
        f"{prefix}PilotsRegistered": protocol.literal(int(counts.slots)),
        f"{prefix}PilotsBusy": protocol.literal(int(counts.busy_slots)),
        f"{prefix}PilotsFailed": protocol.literal(int(counts.failed_pilots)),
        f"{prefix}RequestedIdle": protocol.literal(int(decision.idle)),
        f"{prefix}RequestedMaxRun": protocol.literal(int(decision.max_run)),
        f"{prefix}RemoveExcess": protocol.literal(decision.remove),
        f"{prefix}LimitsTriggered": protocol.literal(
            ", ".join(f"{k} ({v})" for k, v in decision.limits.items())
        ),
        f"{prefix}CurbsTriggered": protocol.literal(
            ", ".join(f"{k} ({v})" for k, v in decision.curbs.items())
        ),
    }
    return ad
