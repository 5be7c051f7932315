"""A job's command line and environment on the pilot, as HTCondor's starter makes them.

``Cmd``/``Arguments`` (the new syntax, or ``Args``), ``In``, ``Environment``, the job and
machine ads written beside the job, and the ``_CONDOR_*`` variables jobs look for.  What
cannot be read puts the job on hold with the reason (``JobHeld``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from pilot import process
from updraft.core import arglist, payloads, protocol


class JobHeld(Exception):
    """The pilot puts the job on hold: ``code`` is a HoldReasonCode."""

    def __init__(self, reason: str, code: int, subcode: int = 0) -> None:
        self.reason = reason
        self.code = code
        self.subcode = subcode
        super().__init__(reason)


def ad_text(ad: dict[str, str], name: str, default: Any = None) -> Any:
    """An attribute's literal value, the name compared without case as ClassAds do."""
    for key, text in ad.items():
        if key.lower() == name.lower():
            try:
                return protocol.parse_literal(text)
            except ValueError:
                return default
    return default


def job_command(ad: dict[str, str], scratch: Path) -> tuple[list[str], Optional[Path]]:
    """The job's argv (Cmd and Arguments, as HTCondor reads them) and its standard input, in ``scratch``."""
    command = str(ad_text(ad, "Cmd", ""))
    if not command:
        raise JobHeld("the job has no Cmd", protocol.HoldCode.FailedToCreateProcess)
    transfer = ad_text(ad, "TransferExecutable", True)
    executable = command if transfer is False else str(scratch / os.path.basename(command))
    arguments = ad_text(ad, "Arguments", "") or ""
    try:
        args = (
            arglist.split_v2(arguments, "arguments")
            if arguments
            else str(ad_text(ad, "Args", "") or "").split()
        )
    except arglist.SyntaxProblem as exc:
        raise JobHeld(
            f"cannot parse the job's arguments: {exc}", protocol.HoldCode.FailedToCreateProcess
        ) from None
    stdin = str(ad_text(ad, "In", "/dev/null") or "/dev/null")
    stdin_path = None if stdin == "/dev/null" else scratch / os.path.basename(stdin)
    return [executable, *args], stdin_path


def job_environment(ad: dict[str, str], scratch: Path, context: Any, match: payloads.Match) -> dict[str, str]:
    """The job's environment: the pilot's base, the job's own, and what HTCondor's starter sets."""
    env = dict(context.base_env)
    raw = str(ad_text(ad, "Environment", "") or "")
    if raw:
        try:
            for item in arglist.split_v2(raw, "environment"):
                name, _, value = item.partition("=")
                if name:
                    env[name] = value
        except arglist.SyntaxProblem as exc:
            raise JobHeld(
                f"cannot parse the job's environment: {exc}", protocol.HoldCode.FailedToCreateProcess
            ) from None
    (scratch / ".job.ad").write_text("".join(f"{k} = {v}\n" for k, v in sorted(ad.items())))
    (scratch / ".machine.ad").write_text("".join(f"{k} = {v}\n" for k, v in sorted(context.slot_ad.items())))
    env.update(
        {
            "_CONDOR_SCRATCH_DIR": str(scratch),
            "_CONDOR_JOB_AD": str(scratch / ".job.ad"),
            "_CONDOR_MACHINE_AD": str(scratch / ".machine.ad"),
            "_CONDOR_SLOT": str(ad_text(context.slot_ad, "Name", "slot1")),
            "_CONDOR_JOB_IWD": str(scratch),
            "TMPDIR": str(scratch / "tmp"),
            "OMP_NUM_THREADS": str(max(1, match.request_cpus)),
            "UPDRAFT_JOB_ID": match.job_id,
            process.TAG_VARIABLE: match.claim_id[:16],
        }
    )
    proxy = ad_text(ad, "x509userproxy")
    if proxy:
        env["X509_USER_PROXY"] = str(scratch / os.path.basename(str(proxy)))
    if context.squid:
        env.setdefault("http_proxy", context.squid)
        env.setdefault("HTTP_PROXY", context.squid)
    return env
