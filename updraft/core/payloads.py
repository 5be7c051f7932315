"""The bodies the pool's API takes and gives: one frozen dataclass each, used by both sides.

Requests and answers travel as JSON; ``to_json``/``from_json`` convert, refusing unknown
fields by name, and the pool's routes declare these classes as their bodies and answers.
The vocabulary they use (paths, enums, attribute names, literals) is updraft.core.protocol's.
Standard library only (Python >= 3.9): the pilot bundles it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from updraft.core.protocol import ProtocolError


def _plain(value: Any) -> Any:
    """JSON-ready form of a field value; shallow where the value already is (fast for big ads)."""
    if isinstance(value, _Payload):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value] if value and isinstance(value[0], (_Payload, list, dict)) else value
    if isinstance(value, dict):
        if value and any(isinstance(v, (_Payload, list)) for v in value.values()):
            return {k: _plain(v) for k, v in value.items()}
        return value
    return value


def _dumps(data: Any) -> bytes:
    if _orjson is not None:
        return _orjson.dumps(data)
    return json.dumps(data, separators=(",", ":")).encode()


_orjson: Any
try:  # faster when the host has it; the pilot on a bare node falls back to json
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None


class _Payload:
    """to_json/from_json for the frozen dataclasses below; unknown fields are refused by name."""

    #: the same refusal where the pool's API validates a body (pydantic reads this plain dict)
    __pydantic_config__ = {"extra": "forbid"}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def to_json(self) -> bytes:
        return _dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        if not isinstance(data, Mapping):
            raise ProtocolError(f"{cls.__name__}: expected a JSON object")
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ProtocolError("{}: unknown field(s) {}".format(cls.__name__, ", ".join(unknown)))
        kwargs = {}
        for name, value in data.items():
            nested = _NESTED.get((cls.__name__, name))
            if nested is not None and value is not None:
                value = (
                    nested.from_dict(value)
                    if isinstance(value, Mapping)
                    else [nested.from_dict(v) for v in value]
                )
            kwargs[name] = value
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ProtocolError(f"{cls.__name__}: {exc}") from None

    @classmethod
    def from_json(cls, raw: bytes):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ProtocolError(f"{cls.__name__}: body is not JSON: {exc}") from None
        return cls.from_dict(data)


@dataclasses.dataclass(frozen=True)
class SandboxFile(_Payload):
    """One input file of a job, stored once in the pool's blob store by its sha256."""

    path: str  # relative path inside the job's scratch directory
    digest: str  # sha256 hex of the content
    size: int
    mode: int = 0o644


@dataclasses.dataclass(frozen=True)
class ReserveResult(_Payload):
    cluster_id: int


@dataclasses.dataclass(frozen=True)
class SubmitRequest(_Payload):
    """One cluster: the attributes common to all procs, then each proc's differences.

    ``procs[i]`` holds only the attributes of proc i that differ from ``cluster_ad``,
    as HTCondor's schedd stores them; most are empty.
    """

    cluster_id: int
    cluster_ad: dict[str, str]
    procs: list[dict[str, str]]
    inputs: list[SandboxFile] = dataclasses.field(default_factory=list)
    proc_inputs: dict[str, list[SandboxFile]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SubmitResult(_Payload):
    cluster_id: int
    first_proc: int
    count: int


@dataclasses.dataclass(frozen=True)
class QueryRequest(_Payload):
    """Select jobs (or history) by ids, owners and a ClassAd constraint.

    An empty ``projection`` returns whole ads.  ``totals`` adds counts per JobStatus of
    the selection; ``totals_only`` returns no ads at all.
    """

    constraint: str = ""
    projection: list[str] = dataclasses.field(default_factory=list)
    ids: list[str] = dataclasses.field(default_factory=list)
    owners: list[str] = dataclasses.field(default_factory=list)
    limit: int = 0
    totals: bool = False
    totals_only: bool = False


@dataclasses.dataclass(frozen=True)
class SummaryRequest(_Payload):
    """Jobs counted, not listed: grouped by the texts of ``group_by``, per status.

    Idle jobs that entered their status more than ``old_idle_s`` seconds ago are also
    counted as old idle.  A frontend with a million idle jobs reads a few hundred rows.
    """

    constraint: str = ""
    group_by: list[str] = dataclasses.field(default_factory=list)
    old_idle_s: float = 600.0


@dataclasses.dataclass(frozen=True)
class SummaryRow(_Payload):
    key: list[Any]  # the attribute texts, in group_by order (None: undefined)
    idle: int = 0
    old_idle: int = 0
    running: int = 0
    held: int = 0
    other: int = 0


@dataclasses.dataclass(frozen=True)
class SummaryResult(_Payload):
    rows: list[SummaryRow]
    jobs: int = 0
    time: float = 0.0  # the pool's clock when it counted


@dataclasses.dataclass(frozen=True)
class QueryResult(_Payload):
    ads: list[dict[str, str]]
    totals: dict[str, int] | None = None


@dataclasses.dataclass(frozen=True)
class ActRequest(_Payload):
    action: str  # a JobAction name
    ids: list[str] = dataclasses.field(default_factory=list)
    constraint: str = ""
    owners: list[str] = dataclasses.field(default_factory=list)
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class ActResult(_Payload):
    """What happened to each job asked for; ids not in ``done`` say why in the other fields."""

    done: list[str]
    not_found: list[str] = dataclasses.field(default_factory=list)
    refused: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> why
    unchanged: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> why (e.g. not held)


@dataclasses.dataclass(frozen=True)
class EditRequest(_Payload):
    """condor_qedit: set attributes of the selected jobs (owner or admin)."""

    ids: list[str]
    attrs: dict[str, str]


@dataclasses.dataclass(frozen=True)
class CredentialRequest(_Payload):
    """A refreshed proxy for jobs (already uploaded as a blob), as condor_submit's x509userproxy names it."""

    ids: list[str]
    path: str  # the file's name in the job's sandbox
    digest: str
    size: int
    expiration: int = 0  # x509UserProxyExpiration of the new proxy


@dataclasses.dataclass(frozen=True)
class AnalyzeRequest(_Payload):
    job_id: str
    constraint: str = ""  # which slots to analyze against


@dataclasses.dataclass(frozen=True)
class Event(_Payload):
    """One bookkeeping record (the seeds' L&B event): what happened to which job, when, said by whom."""

    id: int
    time: float
    source: str
    cluster_id: int
    proc_id: int  # -1: the event concerns every proc of the cluster
    type: str
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class EventRequest(_Payload):
    """An event a pilot, factory or frontend records about itself (cluster 0 in the event log)."""

    type: str  # must start with the author's scope: pilot_, factory_, frontend_
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class AdvertiseRequest(_Payload):
    ad_type: str
    ads: list[dict[str, str]]
    lifetime_s: int | None = None  # default: each ad's ClassAdLifetime, else DEFAULT_AD_LIFETIME_S


@dataclasses.dataclass(frozen=True)
class AdQuery(_Payload):
    ad_type: str = "any"
    constraint: str = ""
    projection: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class InvalidateRequest(_Payload):
    ad_type: str
    names: list[str] = dataclasses.field(default_factory=list)
    constraint: str = ""


@dataclasses.dataclass(frozen=True)
class Match(_Payload):
    """A job handed to a pilot: the claim that authorizes everything the pilot does with it."""

    claim_id: str
    job_id: str
    job_ad: dict[str, str]
    lease_s: int
    inputs: list[SandboxFile] = dataclasses.field(default_factory=list)
    request_cpus: int = 1
    request_memory_mb: int = 0
    request_disk_kb: int = 0


@dataclasses.dataclass(frozen=True)
class Command(_Payload):
    claim_id: str
    command: str  # a PilotCommand value
    reason: str = ""
    details: dict[str, str] = dataclasses.field(
        default_factory=dict
    )  # refresh_credential: path, digest, size


@dataclasses.dataclass(frozen=True)
class PollRequest(_Payload):
    """A pilot's long poll: its slot ad (free resources now), its live claims, how long it may wait.

    The poll is also the heartbeat: every claim listed has its lease renewed.
    """

    slot_ad: dict[str, str]
    claims: list[str] = dataclasses.field(default_factory=list)
    wait_s: float = 0.0
    max_matches: int = 1


@dataclasses.dataclass(frozen=True)
class PollResult(_Payload):
    matches: list[Match] = dataclasses.field(default_factory=list)
    commands: list[Command] = dataclasses.field(default_factory=list)
    unknown_claims: list[str] = dataclasses.field(default_factory=list)  # stop these jobs: the pool let go


@dataclasses.dataclass(frozen=True)
class ClaimReport(_Payload):
    event: str  # a ClaimEvent value
    exit_code: int | None = None
    exit_signal: int | None = None
    usage: dict[str, float] = dataclasses.field(
        default_factory=dict
    )  # RemoteUserCpu, RemoteSysCpu, RemoteWallClockTime, MemoryUsage...
    hold_reason: str = ""
    hold_reason_code: int = 0
    hold_reason_subcode: int = 0
    message: str = ""
    #: with an exited report, the slot as it is once this job is gone: the pool answers with the
    #: next job for it at once (claim reuse, as HTCondor's schedd starts another job on a claim)
    slot_ad: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TokenRequest(_Payload):
    subject: str
    scopes: list[str]
    lifetime_s: int = 3600
    bindings: dict[str, str] = dataclasses.field(default_factory=dict)  # e.g. frontend, group


@dataclasses.dataclass(frozen=True)
class RevokeRequest(_Payload):
    """Refuse tokens from now on: one token (its id), every token of a subject, or every token with a binding."""

    token_id: str = ""
    subject: str = ""
    binding: str = ""  # "frontend=fe1": every pilot token that frontend minted
    until: float = 0.0  # forget it no sooner than this (it is always kept until every token it names expired)


@dataclasses.dataclass(frozen=True)
class TokenResult(_Payload):
    token: str
    expires: float
    subject: str
    scopes: list[str]


# ---------------------------------------------------------------------------------------------
# Answers (the bodies of the pool's replies that are not one of the requests' results above)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ErrorDetail(_Payload):
    type: str  # the refusal's class (BadRequest, Forbidden, TooLarge, ...)
    message: str


@dataclasses.dataclass(frozen=True)
class ErrorAnswer(_Payload):
    """Every refusal: ``{"error": {"type", "message"}}`` (422s also carry the validator's ``detail``)."""

    error: ErrorDetail
    detail: list[dict[str, Any]] | None = None


@dataclasses.dataclass(frozen=True)
class PingResult(_Payload):
    service: str
    version: str
    protocol: int
    time: float
    degraded: str = ""  # why the pool refuses new work (a full disk), when it does
    last_event: int = 0  # the newest committed event: a follower that read the queue streams from here


@dataclasses.dataclass(frozen=True)
class AnalysisResult(_Payload):
    """condor_q -better-analyze of one job: the counts and the text HTCondor users read."""

    job_id: str
    status: str
    slots: int
    conditions: list[dict[str, Any]]
    rejected_by_job: int
    too_small: int
    rejected_by_slot: int
    willing: int
    text: str
    skipped_until: float | None = None  # matchmaking leaves the job out until then (too costly)


@dataclasses.dataclass(frozen=True)
class AutoclusterRow(_Payload):
    id: int
    idle: int
    submitter: str
    prio: float
    attrs: dict[str, str]


@dataclasses.dataclass(frozen=True)
class AccountantRow(_Payload):
    """condor_userprio: one submitter."""

    submitter: str
    priority: float
    factor: float
    effective: float
    in_use_cpus: float
    usage_hours: float


@dataclasses.dataclass(frozen=True)
class FactorRequest(_Payload):
    submitter: str
    factor: float


@dataclasses.dataclass(frozen=True)
class BlobsQuery(_Payload):
    digests: list[str]


@dataclasses.dataclass(frozen=True)
class MissingBlobs(_Payload):
    missing: list[str]


@dataclasses.dataclass(frozen=True)
class BlobStored(_Payload):
    digest: str
    size: int


@dataclasses.dataclass(frozen=True)
class AdCount(_Payload):
    """How many ads an advertise or invalidate touched."""

    count: int


@dataclasses.dataclass(frozen=True)
class AdsResult(_Payload):
    ads: list[dict[str, str]]


@dataclasses.dataclass(frozen=True)
class ClaimSandbox(_Payload):
    """The input manifest of a claimed job."""

    job_id: str
    inputs: list[SandboxFile]


@dataclasses.dataclass(frozen=True)
class OutputStored(_Payload):
    files: list[str]


@dataclasses.dataclass(frozen=True)
class ReportResult(_Payload):
    """A claim report's answer; after a good exit, possibly the next job for the freed resources."""

    job_id: str
    status: int
    matches: list[Match] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class RevokeResult(_Payload):
    revoked: list[str]


_NESTED: dict[tuple[str, str], Any] = {
    ("SubmitRequest", "inputs"): SandboxFile,
    ("Match", "inputs"): SandboxFile,
    ("PollResult", "matches"): Match,
    ("PollResult", "commands"): Command,
    ("SummaryResult", "rows"): SummaryRow,
    ("ClaimSandbox", "inputs"): SandboxFile,
    ("ReportResult", "matches"): Match,
    ("ErrorAnswer", "error"): ErrorDetail,
}


def proc_inputs_from_dict(data: Mapping[str, list[Mapping[str, Any]]]) -> dict[str, list[SandboxFile]]:
    return {key: [SandboxFile.from_dict(f) for f in files] for key, files in data.items()}
