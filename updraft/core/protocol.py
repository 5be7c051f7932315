"""The pool's wire protocol: every path, payload, enum and attribute name, defined once.

The API routes, the client, the frontend, the factory and the pilot all import this
module, so a grep for a field finds one definition.  It is standard library only and
must import on Python 3.9: the pilot bundles it onto bare worker nodes.

Ads travel as JSON objects mapping an attribute name to the *text of a ClassAd
expression* (``{"Cpus": "4", "GLIDEIN_Site": "\\"UCSD\\"", "START": "TARGET.RequestCpus <= 4"}``),
exactly as HTCondor stores attributes in its job queue log.  :func:`literal` and
:func:`parse_literal` convert plain Python values for clients that have no ClassAd library.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from typing import Any

from updraft.core.errors import UpdraftError

PROTOCOL_VERSION = 1
SERVICE_NAME = "updraft-pool"  # what /v1/ping answers as the service

# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------
PING = "/v1/ping"
CLUSTERS = "/v1/clusters"  # POST: reserve the next cluster id (condor_submit needs it for $(Cluster))
JOBS = "/v1/jobs"  # POST: submit one cluster
JOBS_QUERY = "/v1/jobs/query"
JOBS_SUMMARY = "/v1/jobs/summary"  # POST: counts by status grouped by attribute texts (the frontend's view)
JOBS_ACT = "/v1/jobs/act"
JOBS_ANALYZE = "/v1/jobs/analyze"
JOBS_EDIT = "/v1/jobs/edit"
JOBS_CREDENTIAL = "/v1/jobs/credential"  # POST: the owner refreshed the jobs' X.509 proxy
JOB_EVENTS = "/v1/jobs/{job_id}/events"
JOB_OUTPUT = "/v1/jobs/{job_id}/output"  # GET (owner: a tar of the spooled output)
AUTOCLUSTERS = "/v1/autoclusters"
HISTORY_QUERY = "/v1/history/query"
EVENTS = "/v1/events"  # GET ?after=ID&limit=N
EVENTS_STREAM = "/v1/events/stream"  # GET, text/event-stream
BLOBS_MISSING = "/v1/blobs/missing"
BLOB = "/v1/blobs/{digest}"
ADS = "/v1/ads"  # POST: advertise
ADS_QUERY = "/v1/ads/query"
ADS_INVALIDATE = "/v1/ads/invalidate"
PILOT_POLL = "/v1/pilot/poll"
CLAIM_SANDBOX = "/v1/claims/{claim_id}/sandbox"  # GET: the input manifest of the claimed job
CLAIM_OUTPUT = "/v1/claims/{claim_id}/output"  # PUT: a tar of the job's output
CLAIM_REPORT = "/v1/claims/{claim_id}/report"  # POST
TOKENS = "/v1/tokens"
TOKENS_RENEW = "/v1/tokens/renew"
TOKENS_REVOKE = "/v1/tokens/revoke"
ACCOUNTANT = "/v1/accountant"
ACCOUNTANT_FACTOR = "/v1/accountant/factor"  # POST (admin): a submitter's priority factor
METRICS = "/metrics"
MONITOR_PAGE = "/monitor"  # GET, text/html: the real-time monitor (no login: aggregates only)
MONITOR = "/v1/monitor"  # GET: the monitor's snapshot
MONITOR_STREAM = "/v1/monitor/stream"  # GET, text/event-stream: the events the monitor shows
MONITOR_JOB = (
    "/v1/monitor/jobs/{job_id}"  # GET: one job's events as the monitor shows them (its logging-info)
)

AUTH_HEADER = "Authorization"  # "Bearer <token>"
CLAIM_HEADER = "X-Updraft-Claim"

# ---------------------------------------------------------------------------------------------
# Enumerations (HTCondor's integers where HTCondor has them)
# ---------------------------------------------------------------------------------------------


class JobStatus(enum.IntEnum):
    IDLE = 1
    RUNNING = 2
    REMOVED = 3
    COMPLETED = 4
    HELD = 5
    TRANSFERRING_OUTPUT = 6
    SUSPENDED = 7

    @property
    def letter(self) -> str:
        """The one-letter code condor_q prints in its ST column."""
        return "IRXCH>S"[self.value - 1]


class JobAction(enum.IntEnum):
    """Actions on queued jobs; the numbers are htcondor2.JobAction's."""

    # 0 was JA_ERROR in HTCondor: never reuse it
    Hold = 1
    Release = 2
    Remove = 3
    RemoveX = 4
    Vacate = 5
    VacateFast = 6
    # 7 is JA_CLEAR_DIRTY_JOB_ATTRS in HTCondor: never reuse it
    Suspend = 8
    Continue = 9


class HoldCode(enum.IntEnum):
    """HoldReasonCode values, HTCondor's numbers (condor_holdcodes.h)."""

    Unspecified = 0
    UserRequest = 1
    JobPolicy = 3
    CorruptedCredential = 4
    JobPolicyUndefined = 5
    FailedToCreateProcess = 6
    UnableToOpenOutput = 7
    UnableToOpenInput = 8
    DownloadFileError = 12
    UploadFileError = 13
    IwdError = 14
    SubmittedOnHold = 15
    StartdHeldJob = 21
    JobOutOfResources = 34
    JobDurationExceeded = 46
    JobExecuteExceeded = 47


class AdType(str, enum.Enum):
    """Collector ad types; the value is the ad's MyType."""

    Slot = "Machine"  # a pilot's slot
    GlideFactory = "glidefactory"  # one per factory entry
    GlideClient = "glideclient"  # a frontend's request to one entry
    GlideFactoryClient = "glidefactoryclient"  # a factory's counts for one (entry, frontend)
    GlideResource = "glideresource"  # a frontend's view of one entry, for monitoring
    PilotFailure = "pilotfailure"  # a pilot whose node failed validation

    @classmethod
    def parse(cls, text: str) -> AdType:
        for member in cls:
            if text.lower() in (member.value.lower(), member.name.lower()):
                return member
        if text.lower() in ("startd", "slots"):
            return cls.Slot
        raise ProtocolError("unknown ad type {!r} (known: {})".format(text, ", ".join(m.value for m in cls)))


class Scope(str, enum.Enum):
    """What a token allows; a token carries one or more."""

    USER = "user"  # submit jobs and act on one's own jobs
    PILOT = "pilot"  # advertise one's own slots, take and report jobs matched to them
    FACTORY = "factory"  # write glidefactory and glidefactoryclient ads
    FRONTEND = "frontend"  # write glideclient and glideresource ads, mint pilot tokens
    ADMIN = "admin"  # everything, on every job


#: which ad types each scope may write; the collector enforces it, clients may consult it
WRITABLE_AD_TYPES: Mapping[Scope, tuple[AdType, ...]] = {
    Scope.PILOT: (AdType.Slot, AdType.PilotFailure),
    Scope.FACTORY: (AdType.GlideFactory, AdType.GlideFactoryClient),
    Scope.FRONTEND: (AdType.GlideClient, AdType.GlideResource),
    Scope.ADMIN: tuple(AdType),
    Scope.USER: (),
}


class ClaimEvent(str, enum.Enum):
    """What a pilot reports about a claimed job."""

    STARTED = "started"  # the sandbox is in place and the job's process runs
    EXITED = "exited"  # the job's process ended by itself (exit code or signal)
    VACATED = "vacated"  # the pilot gave the job back unfinished (SIGTERM, end of life)
    HELD = "held"  # the pilot put the job on hold (memory or runtime limit, bad sandbox)
    SUSPENDED = "suspended"  # acknowledges a suspend command
    CONTINUED = "continued"  # acknowledges a continue command
    CREDENTIAL_REFRESHED = "credential_refreshed"  # the job's proxy in its sandbox was replaced


class PilotCommand(str, enum.Enum):
    """What the pool tells a pilot to do with a claimed job."""

    KILL = "kill"  # removed or held by its owner or policy: kill the process tree, report nothing more
    SUSPEND = "suspend"
    CONTINUE = "continue"
    REFRESH_CREDENTIAL = "refresh_credential"  # the owner refreshed the job's proxy in the queue


# ---------------------------------------------------------------------------------------------
# Attribute names the components share
# ---------------------------------------------------------------------------------------------
ATTR_MY_TYPE = "MyType"
ATTR_NAME = "Name"
ATTR_AUTHENTICATED_IDENTITY = "AuthenticatedIdentity"  # stamped by the collector on every ad
ATTR_LAST_HEARD_FROM = "LastHeardFrom"
ATTR_LIFETIME = "ClassAdLifetime"
ATTR_SLOT_START = "START"
ATTR_REQUIREMENTS = "Requirements"
ATTR_RANK = "Rank"
ATTR_GLIDEIN_SITE = "GLIDEIN_Site"
ATTR_GLIDEIN_CPUS = "GLIDEIN_CPUS"  # cores a glidein of the entry gets: N, or auto | node | slot
ATTR_GLIDEIN_MAX_MEMORY = "GLIDEIN_MaxMemMBs"
ATTR_GLIDEIN_MAX_WALLTIME = "GLIDEIN_Max_Walltime"  # seconds the site lets a glidein run
ATTR_GLIDEIN_MAX_CPUTIME = "GLIDEIN_MaxCPUTime"
ATTR_GLIDEIN_START_EXPR = "GLIDEIN_Start_Expr"  # a frontend group's START, as a glidein parameter
ATTR_GLIDEIN_RANK = "GLIDEIN_Rank"
ATTR_GLIDEIN_IDLE_TIMEOUT = "GLIDEIN_Idle_Timeout"
ATTR_GLIDEIN_TAIL_TIMEOUT = "GLIDEIN_Tail_Timeout"
ATTR_GLIDEIN_PROXY_URL = "GLIDEIN_Proxy_URL"  # the site squid
ATTR_GLIDEIN_SQUID = "GLIDEIN_Squid"
ATTR_GLIDEIN_GLEXEC_USE = "GLIDEIN_Glexec_Use"  # NEVER | OPTIONAL | REQUIRED
ATTR_GLIDEIN_GLEXEC_LOCATION = "GLIDEIN_Glexec_Use_Location"
ATTR_GLIDEIN_WORK_DIR = "GLIDEIN_WORK_DIR"
ATTR_GLIDEIN_SUPPORTED_VOS = "GLIDEIN_Supported_VOs"
ATTR_GLIDEIN_SOFTWARE_PATHS = "GLIDEIN_Software_Paths"
ATTR_GLIDEIN_DOWNTIME_COMMENT = "GLIDEIN_Downtime_Comment"
ATTR_GLIDEIN_ADVERTISED = "GLIDEIN_Advertised"
ATTR_GLIDEIN_LIMIT_MAX_GLIDEINS = "GLIDEIN_Limit_MaxGlideins"
ATTR_GLIDEIN_LIMIT_MAX_IDLE = "GLIDEIN_Limit_MaxIdle"
ATTR_GLIDEIN_LIMIT_MAX_HELD = "GLIDEIN_Limit_MaxHeld"
ATTR_GLIDEIN_ENTRY = "GLIDEIN_Entry_Name"
ATTR_GLIDEIN_FACTORY = "GLIDEIN_Factory"
ATTR_GLIDEIN_NAME = "GLIDEIN_Name"
ATTR_GLIDEIN_ID = "GLIDEIN_Glidein_Id"  # the factory's id of the glidein a slot belongs to
ATTR_GLIDEIN_TO_RETIRE = "GLIDEIN_ToRetire"
ATTR_GLIDEIN_TO_DIE = "GLIDEIN_ToDie"
ATTR_DESIRED_SITES = "DESIRED_Sites"
ATTR_GLIDEIN_CLIENT = "GLIDEIN_Client"  # the frontend a pilot serves
ATTR_GLIDEIN_CLIENT_GROUP = "GLIDEIN_Client_Group"  # ... and its group
ATTR_DAEMON_START_TIME = "DaemonStartTime"  # when the pilot started (HTCondor's startd attribute)
ATTR_GLIDEIN_LAST_FAILURE = "GLIDEIN_Last_Failure"  # an entry's newest trouble, as its factory saw it
ATTR_PILOT_STATE = "PilotState"  # the pilot's own state (validating, idle, busy, retiring...)
# the frontend's overflow (the only job attributes a frontend may edit, see pool.yaml frontend_editable)
ATTR_DESIRED_SITES_ORIG = "DESIRED_Sites_Orig"
ATTR_OVERFLOWED = "Overflowed"
ATTR_OVERFLOW_TIME = "OverflowTime"
ATTR_OVERFLOW_HOME_SITES = "OverflowHomeSites"
ATTR_ALLOW_OVERFLOW = "AllowOverflow"  # a job that says false is never overflowed
# what CMS's JobRouter overflow route writes, so that monitoring built for it finds them
ATTR_DESIRED_SITES_DIFF = "DESIRED_SITES_Diff"  # the sites the overflow added
ATTR_ROUTE_TYPE = "RouteType"  # "overflow"
ATTR_HAS_BEEN_OVERFLOW_ROUTED = "HasBeenOverflowRouted"
ATTR_LAST_ROUTED = "LastRouted"
# DAGs (HTCondor's names; the retry number is Updraft's own, for recovery without a nodes log)
SCHEDULER_UNIVERSE = 7  # the DAG job's universe: it runs on the submit side, never in a pilot
DAGMAN_COMMAND = "condor_dagman"  # the only program the scheduler universe runs
ATTR_DAGMAN_JOB_ID = "DAGManJobId"  # a node job's DAG job (its cluster id)
ATTR_DAG_NODE_NAME = "DAGNodeName"
ATTR_DAG_NODE_RETRY = "DAGManNodeRetry"  # which attempt of its node a job is (0 first)
ATTR_DAG_PARENT_NODE_NAMES = "DAGParentNodeNames"
ATTR_DAG_NODES_LOG = "DAGManNodesLog"  # the DAG's nodes log: the pool writes a node's events there too
ATTR_SUBMIT_EVENT_NOTES = "SubmitEventNotes"  # "DAG Node: A" in the submit event
ATTR_DAG_ENGINE_LIVE = "DAGManEngineLive"  # Updraft's: the DAG's engine ran and did not finish (it recovers)
DAG_BINDING = "dag"  # the token binding of a DAG's engine: only it submits that DAG's nodes
# where a running job's pilot came from (recorded by the pool at match time)
ATTR_MATCH_ENTRY = "MATCH_EXP_JOB_GLIDEIN_Entry_Name"
ATTR_MATCH_FACTORY = "MATCH_EXP_JOB_GLIDEIN_Factory"
ATTR_MATCH_SITE = "MATCH_EXP_JOB_GLIDEIN_Site"

# -- factory <-> frontend exchange (through the collector, as in glideinWMS) -----------------------
# glidefactory ads (one per entry, Name "<entry>@<factory>")
ATTR_FACTORY_NAME = "FactoryName"
ATTR_ENTRY_NAME = "EntryName"
ATTR_GRIDTYPE = "GLIDEIN_GridType"
ATTR_GATEKEEPER = "GLIDEIN_Gatekeeper"
ATTR_IN_DOWNTIME = "GLIDEIN_In_Downtime"
ATTR_ALLOWED_FRONTENDS = "GLIDEIN_Allowed_Frontends"
ATTR_PUBKEY_ID = "PubKeyID"
ATTR_PUBKEY_TYPE = "PubKeyType"
ATTR_PUBKEY_VALUE = "PubKeyValue"
# glideclient ads (a frontend group's request to one entry, Name "<entry>@<factory>@<frontend>.<group>")
ATTR_REQ_NAME = "ReqName"  # "<entry>@<factory>"
ATTR_REQ_FACTORY = "ReqFactory"
ATTR_REQ_ENTRY = "ReqEntry"
ATTR_CLIENT_NAME = "ClientName"  # "<frontend>.<group>"
ATTR_FRONTEND_NAME = "FrontendName"
ATTR_GROUP_NAME = "GroupName"
ATTR_REQ_IDLE = "ReqIdleGlideins"
ATTR_REQ_MAX_RUN = "ReqMaxGlideins"
ATTR_REQ_REMOVE_EXCESS = "ReqRemoveExcess"  # NO | WAIT | IDLE | ALL
ATTR_REQ_REMOVE_MARGIN = "ReqRemoveExcessMargin"
ATTR_REQ_REMOVE_BUSY = "ReqRemoveExcessBusy"  # true: ALL may remove glideins running jobs (asked explicitly)
ATTR_REQ_IDLE_LIFETIME = "ReqIdleLifetime"
ATTR_REQ_PUBKEY_ID = "ReqPubKeyID"
ATTR_REQ_ENC_KEY = "ReqEncKeyCode"  # the request's symmetric key, sealed with the factory's public key
ENC_PARAM_PREFIX = "GlideinEncParam"  # GlideinEncParamToken: sealed with the symmetric key
PARAM_PREFIX = "GlideinParam"  # GlideinParamGLIDEIN_Start_Expr, GlideinParamGLIDEIN_Glexec_Use, ...
#: the user pool the request's pilots join (glideinWMS's GLIDEIN_Collector) and the CA its
#: certificate is signed with (PEM): params the factory takes for itself, never passed on as-is
PARAM_USER_POOL = "GLIDEIN_Collector"
PARAM_USER_POOL_CA = "GLIDEIN_Collector_CA"
# glidefactoryclient ads (a factory's counts for one (entry, client), Name "<entry>@<factory>@<client>")
ATTR_MONITOR_PREFIX = "GlideinMonitor"  # GlideinMonitorStatusIdle, ...Running, ...Held, ...RequestedIdle

DEFAULT_AD_LIFETIME_S = 900  # HTCondor's CLASSAD_LIFETIME
DEFAULT_JOB_LEASE_DURATION_S = 2400  # condor_submit's default JobLeaseDuration

# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class ProtocolError(UpdraftError):
    """A payload or identifier that does not follow this protocol."""


# ---------------------------------------------------------------------------------------------
# Job ids
# ---------------------------------------------------------------------------------------------
_JOB_ID = re.compile(r"^(\d{1,18})(?:\.(\d{1,18}))?$")  # ids fit SQLite's 64-bit integers


def parse_job_id(text: str) -> tuple[int, int | None]:
    """'12.3' -> (12, 3); '12' -> (12, None) meaning the whole cluster."""
    match = _JOB_ID.match(text.strip())
    if not match:
        raise ProtocolError(f"{text!r} is not a job id (expected CLUSTER or CLUSTER.PROC)")
    cluster, proc = match.groups()
    return int(cluster), (int(proc) if proc is not None else None)


def format_job_id(cluster_id: int, proc_id: int) -> str:
    return f"{cluster_id}.{proc_id}"


# ---------------------------------------------------------------------------------------------
# The size of an ad the pool takes (a job's, or one in the collector)
# ---------------------------------------------------------------------------------------------
MAX_AD_ATTRIBUTES = 2000
MAX_EXPRESSION_TEXT = 128 * 1024  # characters in one attribute's expression
#: a collector ad, all its names and texts together: a slot or a factory's entry is a few KiB,
#: and the collector keeps up to max_ads_per_author of them for each identity
MAX_COLLECTOR_AD_CHARS = 1 << 20


# ---------------------------------------------------------------------------------------------
# Sandbox paths: shared by condor_submit, the pool and the pilot so all three refuse the same names
# ---------------------------------------------------------------------------------------------
MAX_PATH_DEPTH = 32


def safe_relative_path(path: str) -> str:
    """``path`` normalised as a relative path that stays inside its sandbox, or ProtocolError."""
    if not isinstance(path, str) or not path:
        raise ProtocolError("empty sandbox path")
    if "\x00" in path or "\\" in path:
        raise ProtocolError(f"sandbox path {path!r} has a NUL or backslash")
    if path.startswith("/"):
        raise ProtocolError(f"sandbox path {path!r} is absolute")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise ProtocolError(f"sandbox path {path!r} names the sandbox itself")
    if any(p == ".." for p in parts):
        raise ProtocolError(f"sandbox path {path!r} escapes its directory")
    if len(parts) > MAX_PATH_DEPTH:
        raise ProtocolError(f"sandbox path {path!r} is nested too deep")
    return "/".join(parts)


# ---------------------------------------------------------------------------------------------
# ClassAd literals without a ClassAd library
# ---------------------------------------------------------------------------------------------
def literal(value: Any) -> str:
    """The ClassAd expression text for a plain Python value."""
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return 'real("%s")' % ("NaN" if math.isnan(value) else ("INF" if value > 0 else "-INF"))
        return repr(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, (list, tuple)):
        return "{ " + ", ".join(literal(v) for v in value) + " }"
    raise ProtocolError(f"no ClassAd literal for {value!r}")


def quote(text: str) -> str:
    """A ClassAd string literal (backslash and double quote escaped).

    A ClassAd string cannot hold a NUL (HTCondor's C strings end there, classad2 refuses
    it): it is dropped, so that what a pilot or a user reports never makes an ad unreadable.
    """
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return '"' + escaped.replace("\0", "") + '"'


_UNESCAPE = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "r": "\r", "b": "\b", "f": "\f"}


def parse_literal(text: str) -> Any:
    """The Python value of a literal expression text; raises ValueError for anything else.

    Enough for the pilot and simple clients; real expressions need classad2.
    """
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("undefined", ""):
        return None
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        out = []
        i = 1
        while i < len(text) - 1:
            char = text[i]
            if char == "\\" and i + 1 < len(text) - 1:
                out.append(_UNESCAPE.get(text[i + 1], text[i + 1]))
                i += 2
                continue
            if char == '"':
                raise ValueError(f"not a single string literal: {text}")
            out.append(char)
            i += 1
        return "".join(out)
    try:
        return int(text)
    except ValueError:
        pass
    return float(text)  # raises ValueError for expressions


# ---------------------------------------------------------------------------------------------
# Payloads
# ---------------------------------------------------------------------------------------------
Ad = dict[str, str]


def forged_author(texts: Mapping[str, str], scope: Scope, name: str) -> str:
    """Why an ad that says it comes from ``name`` (a factory, a frontend) is not to be believed,
    or "" when the pool authenticated its writer as that very component (or an admin).

    Any holder of a factory token may advertise a glidefactory ad, and any frontend a request:
    what an ad claims about its author counts only when the collector's stamp agrees.
    """
    author = str(ad_value(texts, ATTR_AUTHENTICATED_IDENTITY, ""))
    if author in (f"{scope.value}:{name}", "admin"):
        return ""
    return f"written by {author or 'nobody'}, claims to come from {scope.value} {name!r}"


def ad_value(texts: Mapping[str, str], name: str, default: Any = None) -> Any:
    """The literal value of one attribute of an ad's texts; ``default`` when absent or not a literal."""
    text = texts.get(name)
    if text is None:
        return default
    try:
        return parse_literal(text)
    except ValueError:
        return default
