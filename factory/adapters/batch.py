"""Sites driven by command-line tools: write the job's files, run the submit command, parse the id.

slurm.py (and any other CLI-driven site) is then a table of native states plus three short
methods: ``submit_argv``, ``parse_site_id`` and ``status_argv``/``parse_status``.  Where the
commands run is this base's business: on the factory host with a shared file system, or on
a login host over SSH (``options.ssh``, remote.py) with the glidein's files copied there.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePath
from typing import Any

from factory.adapters.base import (
    STARTUP_SCRIPT,
    Completed,
    GlideinOutput,
    GlideinSpec,
    Refused,
    Retry,
    SiteAdapter,
    SubmitOutcome,
    Submitted,
    read_output,
)
from factory.adapters.remote import BatchOptions, SshShell, check_ssh, pack, unpack
from factory.errors import SiteError, SiteUnavailable


class BatchAdapter(SiteAdapter):
    options_model: type = BatchOptions
    submit_timeout_s = 60.0
    parallel_submits = 4  # submit commands in flight at once (each is a client process and a round trip)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ssh = getattr(self.options, "ssh", "")
        #: the login host's shell when the commands run over SSH, else None (the factory host)
        self.remote = SshShell(self.options, self.work_dir.parent / ".ssh") if ssh else None

    @classmethod
    def check_entry(cls, entry: Any) -> tuple[str, str] | None:
        options = entry.adapter_options
        return check_ssh(options) if isinstance(options, BatchOptions) else None

    @abstractmethod
    def submit_argv(self, glidein: GlideinSpec, script: PurePath) -> list[str]: ...

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
        except (SiteUnavailable, SiteError) as exc:
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
        """The batch system wrote stdout/stderr into the glidein's directory (here, or on the login host).

        A login host that cannot be reached raises SiteUnavailable: the output is fetched
        again next cycle, never given up for lost.
        """
        if self.remote is None:
            return read_output(self.work_dir / glidein_id)
        self._remote_base()
        done = self._remote(self.remote.download_script(glidein_id))
        if done.returncode != 0:
            return None
        files = unpack(done.stdout)
        if "stdout" not in files:
            return None
        return GlideinOutput(
            files["stdout"].decode(errors="replace"), files.get("stderr", b"").decode(errors="replace")
        )

    def cleanup(self, site_ids: Sequence[str]) -> None:
        """The batch system forgets finished jobs by itself; the staged files go with the glidein's directory."""

    def stage(self, glidein: GlideinSpec) -> PurePath:  # type: ignore[override]
        """The glidein's files in its directory: here, or (over SSH) only on the login host."""
        if self.remote is None:
            return super().stage(glidein)
        base = self._remote_base()
        files = {name: (data, 0o600) for name, data in glidein.files.items()}
        files[STARTUP_SCRIPT] = (glidein.startup_script.encode(), 0o755)
        self.check(self._remote(self.remote.upload_script(glidein.glidein_id), input=pack(files)))
        return base / glidein.glidein_id / STARTUP_SCRIPT

    def forget(self, glidein_id: str) -> None:
        """Drop the glidein's directory here and, over SSH, on the login host."""
        if self.remote is not None:
            self._remote_base()
            self._remote(self.remote.remove_script(glidein_id))
        super().forget(glidein_id)

    def command(self, argv: list[str], timeout: float = 60.0, input: str | None = None) -> Completed:
        """A batch command, run here or on the login host (a dropped connection is SiteUnavailable)."""
        if self.remote is None:
            return super().command(argv, timeout=timeout, input=input)
        return self._run_remote(self.remote.wrap(argv, self.command_vars()), timeout, input)

    def _remote(self, script: str, input: str | None = None, timeout: float = 60.0) -> Completed:
        assert self.remote is not None
        return self._run_remote(self.remote.wrap_script(script), timeout, input)

    def _run_remote(self, argv: list[str], timeout: float, input: str | None) -> Completed:
        assert self.remote is not None
        done = self.run(argv, timeout=timeout, **({"input": input} if input is not None else {}))
        failed = self.remote.unreachable(done.returncode, done.stderr)
        if failed is not None:
            raise failed
        return done

    def _remote_base(self) -> PurePath:
        """The glideins' directory on the login host (made and learnt once per factory run)."""
        assert self.remote is not None
        if self.remote.base is None:
            self.remote.set_base(self.check(self._remote(self.remote.base_script())).stdout)
        assert self.remote.base is not None
        return self.remote.base

    def checked(self, argv: list[str], timeout: float = 60.0) -> str:
        done = self.command(argv, timeout=timeout)
        if done.returncode != 0:
            raise SiteError(self.entry.name, argv, done.returncode, done.stderr or done.stdout)
        return done.stdout
