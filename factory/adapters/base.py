"""One interface for every kind of site: submit, status, cancel, cleanup, fetch output.

Adapters are stateless about our ids: the factory owns glidein_id, the journal and the
state; an adapter turns glideins into site ids and reports what the site says, in the
site's words (``native``) and in ours (``state``), through one table per adapter.  Every
external command goes through the injected ``run`` (argv list, timeout, never a shell),
which contract tests replace with recorded output.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from factory.errors import SiteError, SiteUnavailable
from factory.glideins import GlideinState

if TYPE_CHECKING:
    from factory.config import EntryConfig

TAG_PREFIX = "updraft"
STARTUP_SCRIPT = "glidein_startup.sh"  # the name a glidein's startup script has at the site


@dataclass(frozen=True)
class Completed:
    """What a command returned."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[..., Completed]


def run_argv(
    argv: Sequence[str],
    timeout: float = 60.0,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Completed:
    """Run a command without a shell; a timeout or a missing program means the site is unavailable."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=dict(env) if env else None,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired:
        raise SiteUnavailable(f"{argv[0]} did not answer within {timeout:.0f} s") from None
    except FileNotFoundError:
        raise SiteUnavailable(f"{argv[0]} is not installed here") from None
    return Completed(list(argv), done.returncode, done.stdout, done.stderr)


@dataclass
class GlideinSpec:
    """One glidein to start: everything an adapter needs, nothing it must remember."""

    glidein_id: str
    tag: str  # in the site job's name/description: how a restarted factory finds its glideins
    startup_script: str  # the rendered startup script (text)
    files: dict[str, bytes]  # sent with the job: the token file, never on a command line
    environment: dict[str, str]
    cpus: int
    memory_mb: int
    walltime_s: int
    frontend: str = ""


@dataclass(frozen=True)
class Submitted:
    site_id: str


@dataclass(frozen=True)
class Retry:
    reason: str


@dataclass(frozen=True)
class Refused:
    reason: str


SubmitOutcome = Submitted | Retry | Refused


@dataclass(frozen=True)
class GlideinOutput:
    """What the glidein printed: stdout ends with the pilot's final record; stderr has its log."""

    stdout: str
    stderr: str = ""


@dataclass(frozen=True)
class SiteStatus:
    state: GlideinState
    native: str = ""
    reason: str = ""
    #: HTCondor's HoldReasonCode/SubCode for a hold, where the site's own hold maps to one
    #: (HTCondor-CE gives them; a batch system's user or admin hold is 1, UserRequest)
    hold_code: int | None = None
    hold_subcode: int | None = None


@dataclass
class NoOptions:
    """This gridtype takes no options."""


class SiteAdapter(ABC):
    kind: ClassVar[str]
    native_states: ClassVar[Mapping[str, GlideinState]] = {}
    options_model: ClassVar[type] = NoOptions
    #: True: the site lists our glideins by tag (reconcile asks it); False: the site runs only
    #: what was committed after the journal recorded it (two-phase), so there is nothing to find
    finds_by_tag: ClassVar[bool] = True
    #: offered to users in errors and listings (False: an adapter for the project's own tests)
    offered: ClassVar[bool] = True

    def __init__(self, entry: EntryConfig, factory: str, work_dir: Path, run: Runner = run_argv) -> None:
        self.entry = entry
        self.factory = factory
        self.work_dir = work_dir  # the factory's own directory for this entry (scripts, outputs)
        self.run = run
        self.options = entry.adapter_options if entry.adapter_options is not None else self.options_model()

    @classmethod
    def check_entry(cls, entry: EntryConfig) -> tuple[str, str] | None:
        """A (field, message) problem with an entry for this gridtype, or None."""
        return None

    # -- the four bulk verbs ---------------------------------------------------------------------
    @abstractmethod
    def submit(self, glideins: Sequence[GlideinSpec]) -> list[SubmitOutcome]: ...

    @abstractmethod
    def status(self, site_ids: Sequence[str]) -> dict[str, SiteStatus]:
        """What the site says now; an id the site does not know is absent from the answer."""

    @abstractmethod
    def cancel(self, site_ids: Sequence[str]) -> dict[str, bool]: ...

    def commit(self, glideins: Mapping[str, str]) -> None:  # noqa: B027 - optional: only some sites need it
        """Let submitted glideins run, now that the journal has their site ids (site id -> glidein id).

        GRAM's two-phase commit, ARC's input upload.  Must be safe to repeat: a restarted
        factory commits again every glidein that may still be waiting for it.
        """

    def cleanup(self, site_ids: Sequence[str]) -> None:  # noqa: B027 - optional: most sites forget by themselves
        """Forget finished glideins at the site (purge, clean); default: nothing to do."""

    # -- the rest ----------------------------------------------------------------------------
    def fetch_output(self, site_id: str, glidein_id: str) -> GlideinOutput | None:
        """The glidein's output, if the site kept it (called once it ended, before cleanup)."""
        return None

    def find(self, tags: Sequence[str]) -> dict[str, str]:
        """tag -> site id for glideins the site has with these tags (reconciliation after a crash).

        A site that cannot answer raises SiteUnavailable: an empty answer means "not there",
        and the factory then fails those glideins.
        """
        wanted = set(tags)
        return {tag: site_id for tag, site_id in self.list_tagged().items() if tag in wanted}

    @abstractmethod
    def list_tagged(self) -> dict[str, str]:
        """tag -> site id of every glidein of this factory the site knows (raises if it cannot answer)."""

    def release(self, site_ids: Sequence[str]) -> dict[str, bool]:
        """Release held glideins; sites without holds say no."""
        return dict.fromkeys(site_ids, False)

    def renew_credential(self, site_ids: Sequence[str], proxy: Path) -> dict[str, bool]:
        """Push a renewed proxy to the CE for these glideins; sites without delegation need none."""
        return dict.fromkeys(site_ids, True)

    # -- shared helpers ----------------------------------------------------------------------
    def tag_prefix(self) -> str:
        return f"{TAG_PREFIX}_{self.factory}_".replace("-", "_")

    def map_native(self, native: str) -> GlideinState:
        return self.native_states.get(native, GlideinState.QUEUED)

    def command_vars(self) -> dict[str, str]:
        """Variables site commands need on top of the factory's environment (SLURM_CONF, ...)."""
        return {}

    def command(self, argv: list[str], timeout: float = 60.0, input: str | None = None) -> Completed:
        """Run a site command through the injected runner, with this adapter's variables."""
        variables = self.command_vars()
        extra: dict[str, Any] = {}
        if variables:
            extra["env"] = {**os.environ, **variables}
        if input is not None:
            extra["input"] = input
        return self.run(argv, timeout=timeout, **extra)

    def check(self, completed: Completed) -> Completed:
        if completed.returncode != 0:
            raise SiteError(
                self.entry.name, completed.argv, completed.returncode, completed.stderr or completed.stdout
            )
        return completed

    def stage(self, glidein: GlideinSpec) -> Path:
        """Put the startup script and the job's files in the glidein's directory; returns the script.

        Sites that transfer files (GRAM, ARC, CREAM) send them from here; batch systems on a
        shared file system read them in place.
        """
        directory = self.glidein_dir(glidein.glidein_id)
        for name, data in glidein.files.items():
            write_private(directory / name, data)
        script = directory / STARTUP_SCRIPT
        write_private(script, glidein.startup_script.encode(), 0o755)
        return script

    def forget(self, glidein_id: str) -> None:
        """Drop the factory's own files for an ended glidein (its output is saved by then)."""
        shutil.rmtree(self.work_dir / glidein_id, ignore_errors=True)

    def glidein_dir(self, glidein_id: str) -> Path:
        path = self.work_dir / glidein_id
        path.mkdir(parents=True, exist_ok=True)
        return path


def render_extras(entry: EntryConfig, glidein: GlideinSpec) -> str:
    """The entry's submit_extras template, rendered with its attributes and this glidein."""
    from jinja2 import Environment, StrictUndefined

    template = Environment(undefined=StrictUndefined).from_string(entry.submit_extras)
    attributes = entry.published_attributes()
    return template.render(entry=entry, attributes=attributes, glidein=glidein, **attributes)


def read_output(directory: Path) -> GlideinOutput | None:
    """stdout and stderr files a site (or its file transfer) left in a glidein's directory."""
    try:
        stdout = (directory / "stdout").read_text(errors="replace")
    except OSError:
        return None
    try:
        stderr = (directory / "stderr").read_text(errors="replace")
    except OSError:
        stderr = ""
    return GlideinOutput(stdout, stderr)


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def options_dict(options: Any) -> dict[str, Any]:
    return dataclasses.asdict(options) if dataclasses.is_dataclass(options) else {}


__all__ = [
    "Completed", "GlideinOutput", "GlideinSpec", "Refused", "Retry", "Runner", "SiteAdapter", "SiteStatus", "SubmitOutcome",
    "Submitted", "field", "run_argv",
]  # fmt: skip
