"""Submit commands -> job ad attributes, as condor_submit turns them.

Each handler reads a few commands through the Context, which records what it read,
and returns attribute texts.  For proc 0 every handler runs; for later procs only the
handlers that read a command whose value changed run again, which is what makes a
100,000-proc cluster cheap.  The rules follow what HTCondor's condor_submit produces
(checked by tests/conformance against htcondor 24's Submit.jobs()).
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from updraft.core import arglist, classads, protocol
from updraft.core.errors import BadRequest
from updraft.core.protocol import HoldCode, quote
from userpool.submit.context import (
    FALSE_WORDS,
    HANDLERS,
    TRUE_WORDS,
    Context,
    SubmitEnvironment,
    handler,
    is_scheduler_universe,
    is_url,
    split_list,
)
from userpool.submit.parse import SubmitFile
from userpool.submit.units import quantity


def _string(value: str) -> str:
    return quote(value)


# =============================================================================================
# Handlers
# =============================================================================================
CONSTANTS = {
    "MyType": '"Job"',
    "TargetType": '"Machine"',
    "JobStatus": "1",
    "JobPrio": "0",
    "MaxHosts": "1",
    "MinHosts": "1",
    "CurrentHosts": "0",
    "NumCkpts": "0",
    "NumRestarts": "0",
    "NumJobStarts": "0",
    "NumJobCompletions": "0",
    "NumSystemHolds": "0",
    "ExitStatus": "0",
    "ExitBySignal": "false",
    "CommittedTime": "0",
    "CommittedSlotTime": "0",
    "CommittedSuspensionTime": "0",
    "CumulativeSlotTime": "0",
    "CumulativeSuspensionTime": "0",
    "CumulativeRemoteSysCpu": "0.0",
    "CumulativeRemoteUserCpu": "0.0",
    "RemoteSysCpu": "0.0",
    "RemoteUserCpu": "0.0",
    "RemoteWallClockTime": "0.0",
    "TotalSuspensions": "0",
    "LastSuspensionTime": "0",
    "JobSubmitMethod": "0",  # 0: condor_submit (the python bindings say 2)
}


@handler()
def constants(ctx: Context) -> dict[str, str]:
    return dict(CONSTANTS)


@handler("universe")
def universe(ctx: Context) -> dict[str, str]:
    value = (ctx.get("universe") or "vanilla").lower()
    if is_scheduler_universe(ctx):
        # the DAG job (condor_submit_dag's .condor.sub): the pool runs its own DAGMan for it
        command = os.path.basename(ctx.get("executable") or "")
        if command != protocol.DAGMAN_COMMAND:
            raise ctx.error(
                "universe",
                f"the scheduler universe runs only {protocol.DAGMAN_COMMAND} here (use condor_submit_dag),"
                f" not {command or 'nothing'}",
            )
        return {"JobUniverse": str(protocol.SCHEDULER_UNIVERSE)}
    if value not in ("vanilla", "5"):
        raise ctx.error(
            "universe",
            f"universe {value!r} is not supported: Updraft runs vanilla universe jobs in its pilots",
        )
    return {"JobUniverse": "5"}


@handler("executable", "transfer_executable", "universe")
def executable(ctx: Context) -> dict[str, str]:
    command = ctx.get("executable")
    if command is None:
        raise ctx.error(
            None, "no 'executable' command: say which program the job runs" + ctx.file.near_miss("executable")
        )
    attrs: dict[str, str] = {}
    if ctx.flag("transfer_executable", True) and not is_scheduler_universe(ctx):
        attrs["Cmd"] = _string(command if os.path.isabs(command) else os.path.join(ctx.env.cwd, command))
    else:
        attrs["Cmd"] = _string(command)
        attrs["TransferExecutable"] = "false"
    return attrs


def _bytes(path: str) -> int:
    if os.path.isdir(path):
        return sum(_bytes(os.path.join(path, child)) for child in os.listdir(path))
    return os.stat(path).st_size


def _kilobytes(path: str) -> int:
    """Sizes as condor_submit counts them: each listed file or directory rounded up to a KiB."""
    try:
        return math.ceil(_bytes(path) / 1024.0)
    except OSError:
        return 0


@handler("initialdir", "transfer_input_files", "input", "image_size", "disk_usage")
def sizes(ctx: Context) -> dict[str, str]:
    command = ctx.get("executable") or ""
    exe_kb = (
        _kilobytes(command if os.path.isabs(command) else os.path.join(ctx.env.cwd, command))
        if command
        else 0
    )
    inputs_kb = 0
    for item in split_list(ctx.get("transfer_input_files")):
        if not is_url(item):
            inputs_kb += _kilobytes(ctx.in_iwd(item.rstrip("/") if item.endswith("/") else item))
    stdin = ctx.get("input")
    if stdin and not is_url(stdin):
        inputs_kb += _kilobytes(ctx.in_iwd(stdin))
    return {
        "ExecutableSize": str(exe_kb),
        "ImageSize": ctx.expression("image_size") if ctx.get("image_size") else str(exe_kb),
        "DiskUsage": ctx.expression("disk_usage") if ctx.get("disk_usage") else str(exe_kb + inputs_kb),
        "TransferInputSizeMB": str(inputs_kb // 1024),
    }


@handler("arguments", "args")
def arguments(ctx: Context) -> dict[str, str]:
    value = ctx.get("arguments") or ctx.get("args")
    if value is None:
        return {"Arguments": '""'}
    try:
        attribute, rendered = arglist.parse_arguments(value)
    except arglist.SyntaxProblem as exc:
        raise ctx.error("arguments", f"{exc} (the arguments were: {value})") from None
    return {attribute: _string(rendered)}


@handler("environment", "getenv")
def environment(ctx: Context) -> dict[str, str]:
    env = arglist.getenv_variables(ctx.get("getenv") or "false", ctx.env.environ)
    value = ctx.get("environment")
    if value is not None:
        try:
            env.update(arglist.parse_environment(value))
        except arglist.SyntaxProblem as exc:
            raise ctx.error("environment", str(exc)) from None
    return {"Environment": _string(arglist.render_environment(env))}


@handler("input", "output", "error", "stream_input", "stream_output", "stream_error")
def standard_streams(ctx: Context) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for key, attribute, transfer, stream in (
        ("input", "In", "TransferIn", "StreamIn"),
        ("output", "Out", "TransferOut", "StreamOut"),
        ("error", "Err", "TransferErr", "StreamErr"),
    ):
        value = ctx.get(key)
        if value is None or value == "/dev/null":
            attrs[attribute] = '"/dev/null"'
            attrs[transfer] = "false"
        else:
            attrs[attribute] = _string(value)
            attrs[stream] = "true" if ctx.flag(f"stream_{key}", False) else "false"
    return attrs


@handler("initialdir")
def initial_dir(ctx: Context) -> dict[str, str]:
    iwd = ctx.iwd()
    if not os.path.isdir(iwd):
        raise ctx.error("initialdir", f"No such directory: {iwd}")
    return {"Iwd": _string(iwd)}


@handler("log", "log_xml")
def user_log(ctx: Context) -> dict[str, str]:
    value = ctx.get("log")
    attrs = {"UserLog": _string(ctx.in_iwd(value))} if value else {}
    if ctx.flag("log_xml", False):
        attrs["UserLogUseXML"] = "true"  # the pool writes the log's events as XML ClassAds
    return attrs


# -- resources ----------------------------------------------------------------------------------
STANDARD_REQUESTS = {
    "request_cpus": "RequestCpus",
    "request_memory": "RequestMemory",
    "request_disk": "RequestDisk",
    "request_gpus": "RequestGPUs",
}


def custom_requests(ctx: Context) -> dict[str, str]:
    """request_<name> for any other resource name -> Request<name>, as the user spelled it."""
    out = {}
    for key in ctx.values:
        if key.startswith("request_") and key not in STANDARD_REQUESTS and key != "request_cpu":
            out[key] = "Request" + ctx.file.original_spelling(key)[len("request_") :]
    return out


def _request_text(ctx: Context, key: str, default_unit: str | None) -> str:
    value = ctx.get(key)
    assert value is not None
    if default_unit is not None:
        amount = quantity(value, default_unit)
        if amount is not None:
            return str(amount)
    if quantity(value, "K") is None:
        try:
            number = classads.evaluate(value)
        except classads.ExpressionError:
            number = None
        if isinstance(number, float) and not isinstance(number, bool):
            return str(math.ceil(number))
    return ctx.expression(key)


@handler(
    "request_cpus", "request_memory", "request_disk", "request_gpus", "require_gpus", prefixes=("request_",)
)
def requests(ctx: Context) -> dict[str, str]:
    attrs = {
        "RequestCpus": _request_text(ctx, "request_cpus", None) if ctx.get("request_cpus") else "1",
        "RequestDisk": _request_text(ctx, "request_disk", "K") if ctx.get("request_disk") else "DiskUsage",
        "RequestMemory": _request_text(ctx, "request_memory", "M")
        if ctx.get("request_memory")
        else "ifthenelse(MemoryUsage isnt undefined,MemoryUsage,(ImageSize + 1023) / 1024)",
    }
    if ctx.get("request_gpus"):
        attrs["RequestGPUs"] = _request_text(ctx, "request_gpus", None)
    if ctx.get("require_gpus"):
        attrs["RequireGPUs"] = ctx.expression("require_gpus")
    for key, attribute in custom_requests(ctx).items():
        if ctx.get(key):
            attrs[attribute] = _request_text(ctx, key, None)
    return attrs


# -- requirements --------------------------------------------------------------------------------
def _machine_refs(text: str) -> set[str]:
    own, target = classads.references(text)
    return {name.lower() for name in own | target}


def _positive_literal(text: str) -> bool:
    """False only for a literal request of at most one unit (those add no clause)."""
    if not classads.is_literal(text):
        return True
    value = classads.number(classads.value_of_text(text))
    return not (value is not None and value <= 1)


@handler("requirements", "should_transfer_files", "when_to_transfer_output")
def requirements(ctx: Context) -> dict[str, str]:
    user = ctx.get("requirements")
    clauses: list[str] = []
    refs: set[str] = set()
    if user:
        normalized = ctx.expression("requirements")
        clauses.append(f"({normalized})")
        refs = _machine_refs(normalized)
    if "arch" not in refs:
        clauses.append('(TARGET.Arch == "X86_64")')
    # HTCondor adds the clause unless the expression names the OS itself (OpSysMajorVer and
    # OpSysVer are versions, not the OS: they do not count)
    if not refs & {"opsys", "opsysandver", "opsysname", "opsyslongname", "opsysshortname"}:
        clauses.append('(TARGET.OpSys == "LINUX")')
    clauses.append("(TARGET.Disk >= RequestDisk)")
    clauses.append("(TARGET.Memory >= RequestMemory)")
    cpus = ctx.get("request_cpus")
    if cpus and "cpus" not in refs and _positive_literal(_request_text(ctx, "request_cpus", None)):
        clauses.append("(TARGET.Cpus >= RequestCpus)")
    gpus = ctx.get("request_gpus")
    if gpus and "gpus" not in refs:
        gpu_text = _request_text(ctx, "request_gpus", None)
        if not (classads.is_literal(gpu_text) and classads.value_of_text(gpu_text) in (0, 0.0)):
            if ctx.get("require_gpus"):
                clauses.append("(countMatches(MY.RequireGPUs,TARGET.AvailableGPUs) >= RequestGPUs)")
            else:
                clauses.append("(TARGET.GPUs >= RequestGPUs)")
    for key, attribute in custom_requests(ctx).items():
        name = attribute[len("Request") :]
        if ctx.get(key) and name.lower() not in refs:
            clauses.append(f"(TARGET.{name} >= {attribute})")
    plugins = sorted(
        {
            item.split("://", 1)[0].lower()
            for item in split_list(ctx.get("transfer_input_files"))
            if is_url(item)
        }
    )
    has_transfer = "TARGET.HasFileTransfer"
    if (ctx.get("when_to_transfer_output") or "").upper() == "ON_SUCCESS":
        has_transfer += (
            ' && versioncmp(split(TARGET.CondorVersion)[1],"8.9.7") >= 0'  # ON_SUCCESS needs 8.9.7
        )
    if plugins:
        methods = " && ".join(
            f'stringListIMember("{p}",TARGET.HasFileTransferPluginMethods)' for p in plugins
        )
        has_transfer = f"TARGET.HasFileTransfer && {methods}"
    mode = (ctx.get("should_transfer_files") or "IF_NEEDED").upper()
    if mode == "YES":
        if "hasfiletransfer" not in refs:
            clauses.append(f"({has_transfer})")
    elif mode == "NO":
        if "filesystemdomain" not in refs:
            clauses.append("(TARGET.FileSystemDomain == MY.FileSystemDomain)")
    elif "hasfiletransfer" not in refs:
        if "filesystemdomain" in refs:
            clauses.append(f"({has_transfer})")
        else:
            clauses.append(f"((TARGET.FileSystemDomain == MY.FileSystemDomain) || ({has_transfer}))")
    return {"Requirements": " && ".join(clauses)}


# -- file transfer -------------------------------------------------------------------------------
@handler(
    "should_transfer_files",
    "when_to_transfer_output",
    "transfer_input_files",
    "transfer_output_files",
    "transfer_output_remaps",
)
def transfer(ctx: Context) -> dict[str, str]:
    mode = (ctx.get("should_transfer_files") or "IF_NEEDED").upper()
    if mode not in ("YES", "NO", "IF_NEEDED"):
        raise ctx.error(
            "should_transfer_files", f"should_transfer_files must be YES, NO or IF_NEEDED, not {mode!r}"
        )
    attrs = {"ShouldTransferFiles": _string(mode)}
    if mode != "NO":
        when = (ctx.get("when_to_transfer_output") or "ON_EXIT").upper()
        if when not in ("ON_EXIT", "ON_EXIT_OR_EVICT", "ON_SUCCESS"):
            raise ctx.error(
                "when_to_transfer_output",
                f"when_to_transfer_output must be ON_EXIT, ON_EXIT_OR_EVICT or ON_SUCCESS, not {when!r}",
            )
        attrs["WhenToTransferOutput"] = _string(when)
    if mode != "YES":
        attrs["FileSystemDomain"] = _string(ctx.env.filesystem_domain)
    inputs = split_list(ctx.get("transfer_input_files"))
    if inputs:
        attrs["TransferInput"] = _string(",".join(inputs))
        plugins = sorted({item.split("://", 1)[0].lower() for item in inputs if is_url(item)})
        if plugins:
            attrs["WantTransferPluginMethods"] = _string(",".join(plugins))
    outputs = split_list(ctx.get("transfer_output_files"))
    if outputs:
        attrs["TransferOutput"] = _string(",".join(outputs))
    remaps = ctx.get("transfer_output_remaps")
    if remaps:
        if remaps.startswith('"') and remaps.endswith('"') and len(remaps) >= 2:
            remaps = remaps[1:-1]
        attrs["TransferOutputRemaps"] = _string(remaps)
    return attrs


# -- scheduling ----------------------------------------------------------------------------------
@handler("rank", "priority", "prio")
def ranking(ctx: Context) -> dict[str, str]:
    attrs = {"Rank": ctx.expression("rank") if ctx.get("rank") else "0.0"}
    priority = ctx.integer("priority") if ctx.get("priority") else ctx.integer("prio")
    if priority is not None:
        attrs["JobPrio"] = str(priority)
    return attrs


POLICY_KEYS = ("periodic_hold", "periodic_release", "periodic_remove", "on_exit_hold")


@handler(
    *POLICY_KEYS, "on_exit_remove", "max_retries", "retry_until", "success_exit_code",
    *(f"{k}_reason" for k in ("periodic_hold", "periodic_release", "periodic_remove", "on_exit_hold")),
    *(f"{k}_subcode" for k in ("periodic_hold", "on_exit_hold")),
)  # fmt: skip
def job_policy(ctx: Context) -> dict[str, str]:
    attrs: dict[str, str] = {}
    names = {
        "periodic_hold": "PeriodicHold",
        "periodic_release": "PeriodicRelease",
        "periodic_remove": "PeriodicRemove",
        "on_exit_hold": "OnExitHold",
    }
    for key, attribute in names.items():
        if ctx.get(key):
            attrs[attribute] = ctx.expression(key)
        if ctx.get(f"{key}_reason"):
            attrs[attribute + "Reason"] = ctx.expression(f"{key}_reason")
        if key in ("periodic_hold", "on_exit_hold") and ctx.get(f"{key}_subcode"):
            attrs[attribute + "SubCode"] = ctx.expression(f"{key}_subcode")
    retries = ctx.integer("max_retries")
    until = ctx.get("retry_until")
    success = ctx.integer("success_exit_code")
    on_exit_remove = ctx.expression("on_exit_remove") if ctx.get("on_exit_remove") else None
    if retries is not None or until is not None or success is not None:
        if retries is not None:
            attrs["JobMaxRetries"] = str(retries)
        elif until is not None or success is not None:
            attrs["JobMaxRetries"] = "2"  # HTCondor's DEFAULT_JOB_MAX_RETRIES
        if success is not None:
            attrs["JobSuccessExitCode"] = str(success)
        parts = [
            "NumJobCompletions > JobMaxRetries",
            "ExitCode is JobSuccessExitCode" if success is not None else "ExitCode is 0",
        ]
        if until is not None:
            until_text = ctx.expression("retry_until")
            if classads.is_literal(until_text) and isinstance(classads.value_of_text(until_text), int):
                until_text = f"ExitCode is {until_text}"
            parts.append(until_text)
        if on_exit_remove is not None:
            parts.append(on_exit_remove)
        attrs["OnExitRemove"] = " || ".join(parts)
        attrs.setdefault("OnExitHold", "false")
    elif on_exit_remove is not None:
        attrs["OnExitRemove"] = on_exit_remove
    return attrs


@handler("job_lease_duration")
def lease(ctx: Context) -> dict[str, str]:
    value = ctx.get("job_lease_duration")
    if value and value.isdigit() and 0 < int(value) < 20:
        return {"JobLeaseDuration": "20"}  # HTCondor's floor: a shorter lease could not be renewed in time
    return {"JobLeaseDuration": ctx.expression("job_lease_duration") if value else "2400"}


@handler("hold")
def hold(ctx: Context) -> dict[str, str]:
    if not ctx.flag("hold", False):
        return {}
    return {
        "JobStatus": "5",
        "HoldReason": _string("submitted on hold at user's request"),
        "HoldReasonCode": str(int(HoldCode.SubmittedOnHold)),
    }


NOTIFICATION = {"never": 0, "always": 1, "complete": 2, "error": 3}


@handler("notification", "notify_user")
def notification(ctx: Context) -> dict[str, str]:
    value = (ctx.get("notification") or "never").lower()
    if value not in NOTIFICATION:
        raise ctx.error(
            "notification", f"notification must be one of {', '.join(NOTIFICATION)}, not {value!r}"
        )
    attrs = {"JobNotification": str(NOTIFICATION[value])}
    if ctx.get("notify_user"):
        attrs["NotifyUser"] = _string(ctx.get("notify_user") or "")
    return attrs


@handler("leave_in_queue")
def leave_in_queue(ctx: Context) -> dict[str, str]:
    value = ctx.get("leave_in_queue")
    if value is None:
        return {"LeaveJobInQueue": "false"}
    if value.lower() in TRUE_WORDS:
        return {"LeaveJobInQueue": "true"}
    if value.lower() in FALSE_WORDS:
        return {"LeaveJobInQueue": "false"}
    return {"LeaveJobInQueue": ctx.expression("leave_in_queue")}


@handler("concurrency_limits")
def concurrency(ctx: Context) -> dict[str, str]:
    limits = sorted({item.lower() for item in split_list(ctx.get("concurrency_limits"))})
    return {"ConcurrencyLimits": _string(",".join(limits))} if limits else {}


#: the signals a job is sent: command -> attribute
KILL_SIGNALS = {"kill_sig": "KillSig", "hold_kill_sig": "HoldKillSig", "remove_kill_sig": "RemoveKillSig"}


@handler(*KILL_SIGNALS)
def kill_signals(ctx: Context) -> dict[str, str]:
    attrs = {}
    for key, attribute in KILL_SIGNALS.items():
        value = ctx.get(key)
        if value is None:
            continue
        if value.isdigit():
            try:
                attrs[attribute] = _string(signal.Signals(int(value)).name)
            except ValueError:
                raise ctx.error(key, f"no signal number {value}") from None
            continue
        name = value.upper() if value.upper().startswith("SIG") else "SIG" + value.upper()
        if name not in signal.Signals.__members__:
            raise ctx.error(key, f"unknown signal {value!r}")
        attrs[attribute] = _string(name)
    return attrs


@handler(prefixes=("my.",))
def custom_attributes(ctx: Context) -> dict[str, str]:
    attrs = {}
    for key in ctx.values:
        if key.startswith("my."):
            name = ctx.file.original_spelling(key).split(".", 1)[1]
            if not classads.is_valid_attribute_name(name):
                raise ctx.error(key, f"{name!r} is not a valid attribute name")
            value = ctx.raw(key)
            attrs[name] = ctx.expression(key, value) if value else "undefined"
    return attrs


@handler("x509userproxy", "use_x509userproxy")
def proxy(ctx: Context) -> dict[str, str]:
    from userpool.submit.credentials import proxy_attributes

    path = ctx.get("x509userproxy")
    if path is None and ctx.flag("use_x509userproxy", False):
        path = ctx.env.environ.get("X509_USER_PROXY") or f"/tmp/x509up_u{os.getuid()}"
    if path is None:
        return {}
    try:
        return proxy_attributes(ctx.in_iwd(path))
    except BadRequest as exc:
        raise ctx.error("x509userproxy", str(exc)) from None


# =============================================================================================
# Running the handlers
# =============================================================================================
@dataclass
class HandlerRun:
    attrs: dict[str, str]
    reads: set[str] = field(default_factory=set)


def run_handlers(values: Mapping[str, str], file: SubmitFile, env: SubmitEnvironment) -> list[HandlerRun]:
    runs = []
    for spec in HANDLERS:
        ctx = Context(values, file, env)
        attrs = spec.function(ctx)
        reads = set(ctx.reads)
        if spec.prefixes:  # handlers that scan every command depend on all of them
            reads |= {k for k in values if any(k.startswith(p) for p in spec.prefixes)}
        runs.append(HandlerRun(attrs, reads))
    return runs


def merge(runs: Iterable[HandlerRun]) -> dict[str, str]:
    ad: dict[str, str] = {}
    for run in runs:
        ad.update(run.attrs)
    return ad
