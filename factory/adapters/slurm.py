"""Slurm: sbatch / squeue / scontrol / scancel against a real cluster (a table and a few methods)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

from factory.adapters.base import GlideinSpec, SiteStatus, render_extras
from factory.adapters.batch import BatchAdapter
from factory.adapters.remote import BatchOptions
from factory.errors import SiteError, SiteUnavailable
from factory.glideins import GlideinState

HELD_REASONS = ("JobHeldUser", "JobHeldAdmin")


@dataclass
class SlurmOptions(BatchOptions):
    partition: str = ""  # default: the entry's gatekeeper, else the cluster's default
    sbatch: str = "sbatch"
    squeue: str = "squeue"
    scontrol: str = "scontrol"
    scancel: str = "scancel"
    extra_args: list[str] = field(
        default_factory=list
    )  # more sbatch options (also: the entry's submit_extras)
    slurm_conf: str = ""  # SLURM_CONF for the commands (a private cluster)


class SlurmAdapter(BatchAdapter):
    kind = "slurm"
    options_model = SlurmOptions
    native_states = {
        "PENDING": GlideinState.QUEUED,
        "CONFIGURING": GlideinState.QUEUED,
        "REQUEUED": GlideinState.QUEUED,
        "RUNNING": GlideinState.RUNNING,
        "COMPLETING": GlideinState.RUNNING,
        "RESIZING": GlideinState.RUNNING,
        "SUSPENDED": GlideinState.HELD,
        "COMPLETED": GlideinState.COMPLETED,
        "CANCELLED": GlideinState.REMOVED,
        "FAILED": GlideinState.FAILED,
        "TIMEOUT": GlideinState.FAILED,
        "NODE_FAIL": GlideinState.FAILED,
        "BOOT_FAIL": GlideinState.FAILED,
        "DEADLINE": GlideinState.FAILED,
        "OUT_OF_MEMORY": GlideinState.FAILED,
        "PREEMPTED": GlideinState.FAILED,
        "SPECIAL_EXIT": GlideinState.FAILED,
    }

    def command_vars(self) -> dict[str, str]:
        return {"SLURM_CONF": self.options.slurm_conf} if self.options.slurm_conf else {}

    def submit_argv(self, glidein: GlideinSpec, script: PurePath) -> list[str]:
        directory = script.parent
        argv = [
            self.options.sbatch, "--parsable", f"--job-name={glidein.tag}", f"--chdir={directory}",
            f"--output={directory}/stdout", f"--error={directory}/stderr", "--export=NONE",
            f"--cpus-per-task={max(1, glidein.cpus)}",
        ]  # fmt: skip
        if glidein.memory_mb:
            argv.append(f"--mem={glidein.memory_mb}M")
        if glidein.walltime_s:
            argv.append(f"--time={max(1, (glidein.walltime_s + 59) // 60)}")
        partition = self.options.partition or self.entry.gatekeeper
        if partition:
            argv.append(f"--partition={partition}")
        argv += self.options.extra_args
        if self.entry.submit_extras:
            argv += shlex.split(render_extras(self.entry, glidein))
        return [*argv, str(script)]

    def parse_site_id(self, stdout: str) -> str:
        site_id = stdout.strip().split(";")[0].splitlines()[-1].strip()
        if not site_id.isdigit():
            raise ValueError("sbatch --parsable printed no job id")
        return site_id

    def refused(self, stderr: str) -> bool:
        return any(
            words in stderr
            for words in ("Invalid", "invalid", "not allowed", "Unrecognized", "unrecognized option")
        )

    def status(self, site_ids: Sequence[str]) -> dict[str, SiteStatus]:
        if not site_ids:
            return {}
        argv = [self.options.squeue, "-h", "--states=all", "-o", "%i|%T|%r", "-j", ",".join(site_ids)]
        done = self.command(argv)
        if done.returncode != 0 and "Invalid job id" not in done.stderr:
            raise SiteError(self.entry.name, argv, done.returncode, done.stderr)
        out: dict[str, SiteStatus] = {}
        for line in done.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) < 2 or parts[0] not in site_ids:
                continue
            native, reason = parts[1], parts[2] if len(parts) > 2 else ""
            state, hold = self.map_native(native), (None, None)
            if native == "PENDING" and reason in HELD_REASONS:
                state, hold = GlideinState.HELD, (1, 0)  # scontrol hold: HTCondor's UserRequest
            out[parts[0]] = SiteStatus(
                state, native if reason in ("None", "") else f"{native} ({reason})", reason, *hold
            )
        if len(site_ids) == 1 and not out and done.returncode != 0:
            return {}
        return out

    def cancel(self, site_ids: Sequence[str]) -> dict[str, bool]:
        if not site_ids:
            return {}
        done = self.command([self.options.scancel, *site_ids])
        return dict.fromkeys(site_ids, done.returncode == 0)

    def release(self, site_ids: Sequence[str]) -> dict[str, bool]:
        if not site_ids:
            return {}
        done = self.command([self.options.scontrol, "release", ",".join(site_ids)])
        return dict.fromkeys(site_ids, done.returncode == 0)

    def list_tagged(self) -> dict[str, str]:
        done = self.command([self.options.squeue, "-h", "--states=all", "-o", "%i|%j"])
        if done.returncode != 0:  # "not found" must never be read from a site that did not answer
            raise SiteUnavailable(f"squeue failed: {(done.stderr or done.stdout).strip()[-300:]}")
        prefix = self.tag_prefix()
        found = {}
        for line in done.stdout.splitlines():
            site_id, _, name = line.strip().partition("|")
            if name.startswith(prefix):
                found[name] = site_id
        return found
