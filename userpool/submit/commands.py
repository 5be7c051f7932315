"""Which submit commands Updraft knows: those its handlers read, those it accepts and ignores,
and those of HTCondor's it does not support, refused by name."""

from __future__ import annotations

from collections.abc import Iterable

from userpool.submit.context import HANDLERS
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
}

#: accepted, with no effect here (kept for submit files written for a full HTCondor)
IGNORED = (
    "copy_to_spool", "getenv_allowlist", "want_remote_io", "buffer_size", "buffer_block_size",
    "dagman_log", "submit_event_notes", "email_attributes", "encrypt_input_files", "encrypt_output_files",
    "dont_encrypt_input_files", "dont_encrypt_output_files", "skip_filechecks", "image_size", "job_lease_duration_limit",
    "rendezvousdir", "stack_size", "want_io_proxy", "use_oauth_services", "ulog_execute_attrs", "job_priority",
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
    for spec in HANDLERS:
        if key in spec.keys or any(key.startswith(p) for p in spec.prefixes):
            return True
    return key in IGNORED


def check_commands(file: SubmitFile, item_names: Iterable[str]) -> None:
    """Refuse unknown commands, unless some value uses them as a macro; explain unsupported ones."""
    import difflib
    import re

    names = {n.lower() for n in item_names}
    all_values = "\n".join(file.raw_values.values())
    known_list = sorted({k for spec in HANDLERS for k in spec.keys} | set(IGNORED))
    for key in file.raw_values:
        if key in UNSUPPORTED:
            raise file.error(key, f"'{key}' is not supported by Updraft ({UNSUPPORTED[key]})")
        if key.startswith("request_") and key not in STANDARD_REQUESTS:
            typo = difflib.get_close_matches(key, list(STANDARD_REQUESTS), n=1, cutoff=0.8)
            if typo:  # request_<anything> is a custom resource, but not one this close to a standard one
                raise file.error(key, f"unknown submit command '{key}' (did you mean '{typo[0]}'?)")
        if known_command(key) or key in names or key in BUILTIN_MACROS:
            continue
        if re.search(r"\$\w*\(\s*" + re.escape(key) + r"\b", all_values, re.IGNORECASE):
            continue  # a macro the file uses
        close = difflib.get_close_matches(key, known_list, n=1, cutoff=0.75)
        hint = (
            f" (did you mean '{close[0]}'?)"
            if close
            else " (not a submit command, and no value uses it as $(" + key + "))"
        )
        raise file.error(key, f"unknown submit command '{key}'{hint}")
