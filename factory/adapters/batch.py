"""Sites driven by command-line tools: write the job's files, run the submit command, parse the id.

slurm.py (and any other CLI-driven site) is then a table of native states plus three short
methods: ``submit_argv``, ``parse_site_id`` and ``status_argv``/``parse_status``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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
    parallel_submits = 4  # submit commands in flight at once (each is a client process and a round trip)

    @abstractmethod
    def submit_argv(self, glidein: GlideinSpec, script: Path) -> list[str]: ...

    @abstractmethod
    def parse_site_id(self, stdout: str) -> str: ...

    def refused(self, stderr: str) -> bool:
        """Whether a failed submission will fail again unchanged (bad options, not authorized)."""
        return False

    def submit(self, glideins: Sequence[GlideinSpec]) -> list[SubmitOutcome]:
        """One submit command per glidein, a few at a time (a cluster's worth in flight)."""
        if len(glideins) <= 1 or self.parallel_submits <= 1:
            return [self._submit_one(g) for g in glideins]
        with ThreadPoolExecutor(max_workers=min(self.parallel_submits, len(glideins))) as pool:
            return list(pool.map(self._submit_one, glideins))

    def _submit_one(self, glidein: GlideinSpec) -> SubmitOutcome:
        try:
            script = self.stage(glidein)
            done = self.command(self.submit_argv(glidein, script), timeout=self.submit_timeout_s)
        except SiteUnavailable as exc:
            return Retry(str(exc))
        except OSError as exc:
            return Retry(f"cannot stage the glidein: {exc.strerror}")
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip()[-500:]
            return Refused(message) if self.refused(message) else Retry(message)
        try:
            return Submitted(self.parse_site_id(done.stdout))
        except (ValueError, IndexError) as exc:
            return Retry(f"cannot read the site's answer {done.stdout.strip()[:200]!r}: {exc}")

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
