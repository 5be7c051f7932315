"""Submit commands HTCondor turns into one job attribute each, and the commands' other spellings.

Found by asking htcondor 24's own translation, command by command (the conformance corpus
keeps examples): each of these sets one attribute from its value, as a string, a ClassAd
expression, a boolean, or a path in the job's initial directory.  Updraft records them as
HTCondor does; most mean nothing to a pilot, but tools and policies read them from the ad.
"""

from __future__ import annotations

import os

from updraft.core import protocol
from updraft.core.protocol import quote
from userpool.submit.context import Context, handler

STRING, EXPRESSION, BOOLEAN, PATH = "string", "expression", "boolean", "path"

#: command -> (attribute, how the value is written)
SIMPLE: dict[str, tuple[str, str]] = {
    "batch_name": ("JobBatchName", STRING),
    "job_machine_attrs": ("JobMachineAttrs", STRING),
    "job_max_vacate_time": ("JobMaxVacateTime", EXPRESSION),
    "want_graceful_removal": ("WantGracefulRemoval", EXPRESSION),
    "max_idle": ("JobMaterializeMaxIdle", EXPRESSION),
    "allowed_job_duration": ("AllowedJobDuration", EXPRESSION),
    "allowed_execute_duration": ("AllowedExecuteDuration", EXPRESSION),
    "coresize": ("CoreSize", EXPRESSION),
    "periodic_vacate": ("PeriodicVacate", EXPRESSION),
    "next_job_start_delay": ("NextJobStartDelay", EXPRESSION),
    "max_job_retirement_time": ("MaxJobRetirementTime", EXPRESSION),
    "job_ad_information_attrs": ("JobAdInformationAttrs", STRING),
    "description": ("JobDescription", STRING),
    "job_batch_id": ("JobBatchId", STRING),
    "max_transfer_input_mb": ("MaxTransferInputMB", EXPRESSION),
    "max_transfer_output_mb": ("MaxTransferOutputMB", EXPRESSION),
    "want_checkpoint": ("WantCheckpoint", EXPRESSION),
    "append_files": ("AppendFiles", STRING),
    "batch_id": ("JobBatchId", STRING),
    "buffer_block_size": ("BufferBlockSize", EXPRESSION),
    "buffer_files": ("BufferFiles", EXPRESSION),
    "buffer_size": ("BufferSize", EXPRESSION),
    "compress_files": ("CompressFiles", STRING),
    "concurrency_limits_expr": ("ConcurrencyLimits", EXPRESSION),
    "container_target_dir": ("ContainerTargetDir", STRING),
    "core_size": ("CoreSize", EXPRESSION),
    "dag_node_name": (protocol.ATTR_DAG_NODE_NAME, STRING),
    "dagman_job_id": (protocol.ATTR_DAGMAN_JOB_ID, EXPRESSION),
    "dagman_log": (protocol.ATTR_DAG_NODES_LOG, PATH),
    "delegate_job_gsi_credentials_lifetime": ("DelegateJobGSICredentialsLifetime", EXPRESSION),
    "email_attributes": ("EmailAttributes", STRING),
    "erase_output_and_error_on_restart": ("EraseOutputAndErrorOnRestart", BOOLEAN),
    "fetch_files": ("FetchFiles", STRING),
    "file_remaps": ("FileRemaps", EXPRESSION),
    "job_machine_attrs_history_length": ("JobMachineAttrsHistoryLength", EXPRESSION),
    "jobset": ("JobSetName", STRING),
    "keep_claim_idle": ("KeepClaimIdle", EXPRESSION),
    "kill_sig_timeout": ("KillSigTimeout", EXPRESSION),
    "load_profile": ("LoadProfile", BOOLEAN),
    "local_files": ("LocalFiles", STRING),
    "manifest": ("ManifestDesired", BOOLEAN),
    "manifest_dir": ("ManifestDir", STRING),
    "match_list_length": ("LastMatchListLength", EXPRESSION),
    "materialize_max_idle": ("JobMaterializeMaxIdle", EXPRESSION),
    "mount_under_scratch": ("MountUnderScratch", STRING),
    "noop_job": ("IsNoopJob", EXPRESSION),
    "noop_job_exit_code": ("NoopJobExitCode", EXPRESSION),
    "noop_job_exit_signal": ("NoopJobExitSignal", EXPRESSION),
    "output_destination": ("OutputDestination", STRING),
    "output_directory": ("OutputDirectory", PATH),
    "primary_unix_group": ("PrimaryUnixGroup", STRING),
    "public_input_files": ("PublicInputFiles", STRING),
    "remote_initialdir": ("RemoteIwd", STRING),
    "scitokens_file": ("ScitokensFile", PATH),
    "skip_if_dataflow": ("SkipIfDataflow", BOOLEAN),
    "stack_size": ("StackSize", EXPRESSION),
    "starter_debug": ("JobStarterDebug", STRING),
    "submit_event_notes": (protocol.ATTR_SUBMIT_EVENT_NOTES, STRING),
    "submit_event_user_notes": ("SubmitEventUserNotes", STRING),
    "transfer_container": ("TransferContainer", BOOLEAN),
    "ulog_execute_attrs": ("UserLogExecuteEventAttrs", STRING),
    "use_oauth_services": ("OAuthServicesNeeded", STRING),
    "want_io_proxy": ("WantIOProxy", BOOLEAN),
    "want_job_networking": ("WantJobNetworking", BOOLEAN),
}


@handler(*SIMPLE, "starter_log")
def simple_commands(ctx: Context) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for command, (attribute, kind) in SIMPLE.items():
        value = ctx.get(command)
        if value is None:
            continue
        if kind == STRING:
            attrs[attribute] = quote(value)
        elif kind == BOOLEAN:
            attrs[attribute] = "true" if ctx.flag(command, False) else "false"
        elif kind == PATH:
            attrs[attribute] = quote(value if os.path.isabs(value) else ctx.in_iwd(value))
        else:
            attrs[attribute] = ctx.expression(command)
    starter_log = ctx.get("starter_log")
    if starter_log:
        attrs["JobStarterLog"] = quote(ctx.in_iwd(starter_log))
        attrs.setdefault("JobStarterDebug", "true")
    return attrs
