"""Sites driven by command-line tools: write the job's files, run the submit command, parse the id.

slurm.py (and any other CLI-driven site) is then a table of native states plus three short
methods: ``submit_argv``, ``parse_site_id`` and ``status_argv``/``parse_status``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

from factory.adapters.base import (
    GlideinOutput,
    GlideinSpec,
    Refused,
    Retry,
    SiteAdapter,
    SubmitOutcome,
    Submitted,
    read_output,
)
from factory.errors import SiteError, SiteUnavailable


class BatchAdapter(SiteAdapter):
    submit_timeout_s = 60.0

    @abstractmethod
    def submit_argv(self, glidein: GlideinSpec, script: Path) -> list[str]: ...

    @abstractmethod
    def parse_site_id(self, stdout: str) -> str: ...

    def refused(self, stderr: str) -> bool:
        """Whether a failed submission will fail again unchanged (bad options, not authorized)."""
        return False

    def submit(self, glideins: Sequence[GlideinSpec]) -> list[SubmitOutcome]:
        outcomes: list[SubmitOutcome] = []
        for glidein in glideins:
            try:
                script = self.stage(glidein)
                done = self.command(self.submit_argv(glidein, script), timeout=self.submit_timeout_s)
            except SiteUnavailable as exc:
                outcomes.append(Retry(str(exc)))
                continue
            except OSError as exc:
                outcomes.append(Retry(f"cannot stage the glidein: {exc.strerror}"))
                continue
            if done.returncode != 0:
                message = (done.stderr or done.stdout).strip()[-500:]
                outcomes.append(Refused(message) if self.refused(message) else Retry(message))
                continue
            try:
                outcomes.append(Submitted(self.parse_site_id(done.stdout)))
            except (ValueError, IndexError) as exc:
                outcomes.append(Retry(f"cannot read the site's answer {done.stdout.strip()[:200]!r}: {exc}"))
        return outcomes

    def fetch_output(self, site_id: str, glidein_id: str) -> GlideinOutput | None:
        """The batch system wrote stdout/stderr into the glidein's directory (a shared file system)."""
        return read_output(self.work_dir / glidein_id)

    def cleanup(self, site_ids: Sequence[str]) -> None:
        """The batch system forgets finished jobs by itself; the staged files go with the glidein's directory."""

    def checked(self, argv: list[str], timeout: float = 60.0) -> str:
        done = self.command(argv, timeout=timeout)
        if done.returncode != 0:
            raise SiteError(self.entry.name, argv, done.returncode, done.stderr or done.stdout)
        return done.stdout
