"""The DAGMan configuration a DAG runs with: HTCondor's knob names and defaults.

A DAG's ``CONFIG file`` (or condor_submit_dag's options, which win) sets them for that DAG
only, as HTCondor's per-DAG configuration does.  The file has HTCondor's configuration
syntax for the part that matters here: ``NAME = value`` lines, ``#`` comments, a trailing
backslash continuing a line.  A DAGMan knob Updraft carries out is applied; one that has no
meaning here (the engine follows the pool's event stream, not a log it polls) is accepted
and said in dagman.out; any other name is refused with its file and line, never ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: knob -> HTCondor's default (its type says how a value is read)
DEFAULTS: dict[str, bool | int] = {
    "DAGMAN_MAX_JOBS_SUBMITTED": 0,
    "DAGMAN_MAX_JOBS_IDLE": 1000,
    "DAGMAN_MAX_PRE_SCRIPTS": 20,
    "DAGMAN_MAX_POST_SCRIPTS": 20,
    "DAGMAN_ALWAYS_RUN_POST": False,
    "DAGMAN_AUTO_RESCUE": True,
    "DAGMAN_MAX_RESCUE_NUM": 100,
    "DAGMAN_RESET_RETRIES_UPON_RESCUE": True,
    "DAGMAN_DEFAULT_PRIORITY": 0,
    "DAGMAN_SUBMIT_DEPTH_FIRST": False,
    "DAGMAN_RETRY_SUBMIT_FIRST": True,
    "DAGMAN_RETRY_NODE_FIRST": False,
    "DAGMAN_MAX_SUBMIT_ATTEMPTS": 6,
    "DAGMAN_MAX_SUBMITS_PER_INTERVAL": 100,
    "DAGMAN_SUBMIT_DELAY": 0,
    "DAGMAN_HOLD_CLAIM_TIME": 20,
    "DAGMAN_PROHIBIT_MULTI_JOBS": False,
    "DAGMAN_SUPPRESS_JOB_LOGS": False,
    "DAGMAN_SUPPRESS_NOTIFICATION": False,
    "DAGMAN_DEFAULT_APPEND_VARS": False,
    "DAGMAN_NODE_JOB_FAILURE_TOLERANCE": 0,
    "DAGMAN_MAX_JOB_HOLDS": 100,
    "DAGMAN_METRICS_FILE_VERSION": 2,
    "DAGMAN_REPORT_GRAPH_METRICS": False,
    "DAGMAN_WRITE_PARTIAL_RESCUE": True,
    "DAGMAN_VERBOSITY": 3,
}
#: DAGMan knobs that mean nothing here, and why (accepted, and said in dagman.out)
WITHOUT_EFFECT = {
    "DAGMAN_USER_LOG_SCAN_INTERVAL": "the engine follows the pool's event stream instead of polling a log",
    "DAGMAN_DEBUG": "dagman.out has one level of detail",
    "DAGMAN_DEBUG_CACHE_ENABLE": "dagman.out is written line by line",
    "DAGMAN_DEBUG_CACHE_SIZE": "dagman.out is written line by line",
    "DAGMAN_PENDING_REPORT_INTERVAL": "the node status is in dagman.out at each change",
    "DAGMAN_USE_STRICT": "every warning Updraft knows is already an error",
    "DAGMAN_STARTUP_CYCLE_DETECT": "cycles are always found before anything is queued",
    "DAGMAN_ABORT_DUPLICATES": "a DAG's lock file always keeps a second engine out",
    "DAGMAN_USE_DIRECT_SUBMIT": "the engine always submits directly",
    "DAGMAN_USE_JOIN_NODES": "edges are kept as they are written",
    "DAGMAN_LOG_ON_NFS_IS_ERROR": "the nodes log is written by the pool",
    "DAGMAN_ALLOW_EVENTS": "the pool's events are never out of order for one job",
    "DAGMAN_USE_SHARED_PORT": "there is no command port",
    "DAGMAN_DISABLE_PORT": "there is no command port",
    "DAGMAN_GENERATE_SUBDAG_SUBMITS": "sub-DAG submit files are always generated",
    "DAGMAN_REMOVE_NODE_JOBS": "the pool removes a removed DAG's nodes itself",
    "DAGMAN_MUNGE_NODE_NAMES": "one DAG file is submitted at a time",
    "DAGMAN_CONDOR_SUBMIT_EXE": "nodes are submitted directly",
    "DAGMAN_CONDOR_RM_EXE": "nodes are removed directly",
    "DAGMAN_ABORT_ON_SCARY_SUBMIT": "the pool answers each submission with its cluster",
}
NOT_SUPPORTED = {
    "DAGMAN_DEFAULT_NODE_LOG": "the nodes log is always file.dag.nodes.log beside the DAG",
    "DAGMAN_PUT_FAILED_JOBS_ON_HOLD": "a failed node with no retry left fails",
    "DAGMAN_RECORD_MACHINE_ATTRS": "use job_ad_information_attrs in the node's submit file",
    "DAGMAN_NODE_RECORD_INFO": "DAGManNodeRetry is always recorded (the pool recovers with it)",
}


class KnobError(Exception):
    """A CONFIG file Updraft cannot apply, with its file and line (DAGMan's wording)."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"ERROR: {path} (line {line}): {message}")


@dataclass
class Knobs:
    """The values in force, and the knobs accepted without effect (name -> why)."""

    values: dict[str, bool | int] = field(default_factory=lambda: dict(DEFAULTS))
    ignored: dict[str, str] = field(default_factory=dict)

    def number(self, name: str) -> int:
        return int(self.values[name])

    def flag(self, name: str) -> bool:
        return bool(self.values[name])


def _value(name: str, text: str, path: str, line: int) -> bool | int:
    text = text.strip()
    default = DEFAULTS[name]
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "1", "t"):
            return True
        if lowered in ("false", "no", "0", "f"):
            return False
        raise KnobError(path, line, f"{name} must be True or False, not {text!r}")
    try:
        return int(text.strip())
    except ValueError:
        raise KnobError(path, line, f"{name} must be a whole number, not {text!r}") from None


def parse_knobs(text: str, path: str, base: Knobs | None = None) -> Knobs:
    knobs = base or Knobs()
    pending, first = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if not pending:
            first = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole, pending = pending + line, ""
        name, equals, value = whole.partition("=")
        name = name.strip().upper()
        if not equals or not name:
            raise KnobError(path, first, f"expected NAME = value, not {whole!r}")
        if name in DEFAULTS:
            knobs.values[name] = _value(name, value, path, first)
        elif name in WITHOUT_EFFECT:
            knobs.ignored[name] = WITHOUT_EFFECT[name]
        elif name in NOT_SUPPORTED:
            raise KnobError(path, first, f"{name} is not supported by Updraft: {NOT_SUPPORTED[name]}")
        elif name.startswith("DAGMAN_"):
            raise KnobError(path, first, f"unknown DAGMan knob {name}")
        else:
            raise KnobError(path, first, f"{name}: only DAGMan's knobs (DAGMAN_*) apply to a DAG")
    if not knobs.flag("DAGMAN_WRITE_PARTIAL_RESCUE"):
        raise KnobError(
            path, first, "DAGMAN_WRITE_PARTIAL_RESCUE = False (full rescue DAGs) is not supported"
        )
    return knobs


def read_knobs(path: str, base: Knobs | None = None) -> Knobs:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise KnobError(path, 0, f"cannot read the DAG's CONFIG file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KnobError(path, 0, "the DAG's CONFIG file is not text") from None
    return parse_knobs(text, path, base)


def with_options(knobs: Knobs, options: Mapping[str, int]) -> Knobs:
    """condor_submit_dag's -maxjobs, -maxidle, -maxpre and -maxpost win over the file (when given)."""
    names = {
        "maxjobs": "DAGMAN_MAX_JOBS_SUBMITTED", "maxidle": "DAGMAN_MAX_JOBS_IDLE",
        "maxpre": "DAGMAN_MAX_PRE_SCRIPTS", "maxpost": "DAGMAN_MAX_POST_SCRIPTS",
    }  # fmt: skip
    for option, value in options.items():
        if value:
            knobs.values[names[option]] = int(value)
    return knobs
