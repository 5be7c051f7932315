"""Which submit commands Updraft knows: those its handlers read, those it accepts and ignores,
and those of HTCondor's it does not support, refused by name."""

from __future__ import annotations

from collections.abc import Iterable

# the modules whose handlers register themselves when imported
import userpool.submit.accounting
import userpool.submit.simple  # noqa: F401
from userpool.submit.context import ALIASES, HANDLERS
from userpool.submit.parse import SubmitFile
from userpool.submit.translate import STANDARD_REQUESTS

UNSUPPORTED = {
    "docker_image": "docker universe",
    "container_image": "container universe",
    "grid_resource": "grid universe: submit to the pool, the factory does the grid part",
    "machine_count": "parallel universe",
    "vm_type": "vm universe",
    "vm_memory": "vm universe",
    "vm_disk": "vm universe",
    "deferral_time": "job deferral",
    "deferral_window": "job deferral",
    "cron_minute": "crondor jobs",
    "cron_hour": "crondor jobs",
    "cron_day_of_month": "crondor jobs",
    "cron_month": "crondor jobs",
    "cron_day_of_week": "crondor jobs",
    "transfer_plugins": "custom file transfer plugins",
    "run_as_owner": "run_as_owner (jobs run under the pilot, or under gLExec)",
    "max_materialize": "late materialization",
    "requestcpus": "spell it request_cpus",
    # HTCondor translates these into more than an attribute (its requirements, its file transfer)
    "checkpoint_exit_code": "self-checkpointing jobs",
    "transfer_checkpoint_files": "self-checkpointing jobs",
    "checkpoint_destination": "self-checkpointing jobs",
    "cuda_version": "matching on the CUDA version of the GPU driver",
    "encrypt_execute_directory": "encrypted execute directories",
    "encrypt_input_files": "per-file encryption",
    "encrypt_output_files": "per-file encryption",
    "dont_encrypt_input_files": "per-file encryption",
    "dont_encrypt_output_files": "per-file encryption",
    "preserve_relative_paths": "preserve_relative_paths (inputs keep their directories only through transfer_input_files)",
    "tool_daemon_cmd": "tool daemons",
    "shell": "shell jobs (give an executable)",
    "use_scitoken": "SciTokens for file transfer",
    "use_scitokens": "SciTokens for file transfer",
    "docker_network_type": "docker universe",
    "docker_override_entrypoint": "docker universe",
    "docker_pull_policy": "docker universe",
    "docker_send_credentials": "docker universe",
    "aws_access_key_id_file": "cloud storage credentials for file transfer",
    "aws_secret_access_key_file": "cloud storage credentials for file transfer",
    "aws_region": "cloud storage credentials for file transfer",
    "gs_access_key_id_file": "cloud storage credentials for file transfer",
    "gs_secret_access_key_file": "cloud storage credentials for file transfer",
    "s3_access_key_id_file": "cloud storage credentials for file transfer",
    "s3_secret_access_key_file": "cloud storage credentials for file transfer",
    "java_vm_args": "java universe",
    "java_vm_arguments": "java universe",
    "java_vm_arguments2": "java universe",
    "jar_files": "java universe",
    "parallel_script_shadow": "parallel universe",
    "parallel_script_starter": "parallel universe",
    "environment2": "spell it environment (the new syntax is recognised there)",
}

#: accepted, with no effect here (kept for submit files written for a full HTCondor)
IGNORED = (
    "copy_to_spool", "getenv_allowlist", "want_remote_io", "skip_filechecks", "job_lease_duration_limit",
    "rendezvousdir", "job_priority",
)  # fmt: skip

BUILTIN_MACROS = {
    "arch",
    "opsys",
    "opsysandver",
    "opsysmajorver",
    "opsysver",
    "spool",
    "islinux",
    "iswindows",
    "submit_file",
}


def known_command(key: str) -> bool:
    if any(key in names for names in ALIASES.values()):
        return True
    for spec in HANDLERS:
        if key in spec.keys or any(key.startswith(p) for p in spec.prefixes):
            return True
    return key in IGNORED


def check_commands(file: SubmitFile, item_names: Iterable[str]) -> list[str]:
    """Refuse what HTCondor refuses or Updraft does not support; the warnings for the rest.

    HTCondor takes any other name as a macro (real submit files carry variables for included
    files, ``if`` lines and ``$CHOICE``), and ``request_<name>`` as a custom resource, so those
    are accepted; one that looks like a misspelt command gets a did-you-mean warning.
    """
    import difflib
    import re

    names = {n.lower() for n in item_names}
    all_values = "\n".join(file.raw_values.values())
    known_list = sorted({k for spec in HANDLERS for k in spec.keys} | set(IGNORED))
    warnings: list[str] = []
    for key in file.raw_values:
        if key in UNSUPPORTED:
            raise file.error(key, f"'{key}' is not supported by Updraft ({UNSUPPORTED[key]})")
        where = f"{file.path}, line {file.line_of(key)}"
        if key.startswith("request_") and key not in STANDARD_REQUESTS:
            typo = difflib.get_close_matches(key, list(STANDARD_REQUESTS), n=1, cutoff=0.8)
            if typo:  # a custom resource to HTCondor; more likely a typo of a standard one
                warnings.append(f"{where}: '{key}' asks for a custom resource (did you mean '{typo[0]}'?)")
            continue
        if known_command(key) or key in names or key in BUILTIN_MACROS:
            continue
        if re.search(r"\$\w*\(\s*" + re.escape(key) + r"\b", all_values, re.IGNORECASE):
            continue  # a macro the file uses
        close = difflib.get_close_matches(key, known_list, n=1, cutoff=0.75)
        if close:
            warnings.append(
                f"{where}: '{key}' is not a submit command, taken as a macro (did you mean '{close[0]}'?)"
            )
    return warnings
