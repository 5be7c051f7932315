"""Glideins as local processes: the embedded default and the demo's sites.

Each glidein gets a worker-node directory of its own, runs detached in its own session
(so it outlives a factory restart), under coreutils ``timeout`` for the entry's wall-clock
limit, with its cores given to the pilot.  The session, not a process group, is the
glidein: ``timeout`` moves itself and the pilot into a group of their own.  Everything the adapter needs to know later is
in that directory: the pid, the exit code, a cancel marker, the output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from factory.adapters.base import (
    GlideinOutput,
    GlideinSpec,
    Retry,
    SiteAdapter,
    SiteStatus,
    SubmitOutcome,
    Submitted,
    read_output,
    write_private,
)
from factory.glideins import GlideinState

#: a cancelled glidein still running after this long is killed (its pilot had SIGTERM's grace)
CANCEL_GRACE_S = 15.0


@dataclass
class LocalOptions:
    root: str = ""  # where the worker-node directories go (default: the factory's state dir)
    walltime_s: int = 0  # 0: the entry's GLIDEIN_Max_Walltime, else unlimited
    max_running: int = 0  # the "site's" slots: glideins beyond this wait queued (0: no limit)
    paused: bool = False  # the site's queue is stopped: glideins wait queued (a drained site)


class LocalAdapter(SiteAdapter):
    kind = "local"
    options_model = LocalOptions
    native_states = {
        "queued": GlideinState.QUEUED,
        "held": GlideinState.HELD,
        "running": GlideinState.RUNNING,
        "exited 0": GlideinState.COMPLETED,
        "walltime exceeded": GlideinState.FAILED,
        "cancelled": GlideinState.REMOVED,
    }

    def root(self) -> Path:
        base = Path(self.options.root) if self.options.root else self.work_dir
        base.mkdir(parents=True, exist_ok=True)
        return base

    def _dir(self, site_id: str) -> Path:
        return self.root() / site_id

    def submit(self, glideins: Sequence[GlideinSpec]) -> list[SubmitOutcome]:
        outcomes: list[SubmitOutcome] = []
        for glidein in glideins:
            node = self._dir(glidein.tag)
            try:
                node.mkdir(parents=True, exist_ok=False)
                for name, data in glidein.files.items():
                    write_private(node / name, data)
                write_private(node / "glidein_startup.sh", glidein.startup_script.encode(), 0o755)
                env_lines = "".join(f"{k}={v}\n" for k, v in sorted(glidein.environment.items()))
                write_private(node / "environment", env_lines.encode())
                walltime = self.options.walltime_s or glidein.walltime_s
                (node / "walltime").write_text(str(walltime))
                (node / "queued").write_text("")
            except OSError as exc:
                outcomes.append(Retry(f"cannot make the worker-node directory {node}: {exc.strerror}"))
                continue
            outcomes.append(Submitted(glidein.tag))
        self._start_queued()
        return outcomes

    def _running_count(self) -> int:
        return sum(
            1
            for node in self.root().iterdir()
            if (node / "pid").exists() and not (node / "exit_code").exists()
        )

    def _start_queued(self) -> None:
        """Start queued glideins while the site has free slots (the 'batch system' of this adapter)."""
        if self.options.paused:
            return
        limit = self.options.max_running
        waiting = sorted(
            (n for n in self.root().iterdir() if (n / "queued").exists() and not (n / "held").exists()),
            key=lambda n: n.stat().st_mtime,
        )
        running = self._running_count() if limit else 0
        for node in waiting:
            if limit and running >= limit:
                return
            self._launch(node)
            running += 1

    def _launch(self, node: Path) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "LANG": "C.UTF-8",
        }
        for line in (node / "environment").read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        env["_CONDOR_SCRATCH_DIR"] = str(node)
        walltime = int((node / "walltime").read_text() or 0)
        command = ["/bin/sh", "glidein_startup.sh"]
        if walltime > 0:
            command = ["timeout", "--signal=TERM", "--kill-after=60", str(walltime), *command]
        # the exit code is written by the shell that waits, so it is there even if the factory is not
        wrapper = "sh -c '\"$@\" > stdout 2> stderr; echo $? > exit_code' wrapper " + " ".join(
            _quote(c) for c in command
        )
        process = subprocess.Popen(
            ["/bin/sh", "-c", wrapper], cwd=node, env=env, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        (node / "pid").write_text(str(process.pid))
        (node / "queued").unlink(missing_ok=True)
        with _CHILDREN_LOCK:
            _CHILDREN.append(process)

    @staticmethod
    def _reap() -> None:
        """Collect exited wrappers so that they do not linger as zombies (and look alive)."""
        with _CHILDREN_LOCK:  # every entry's worker thread reaps, and they share the list
            _CHILDREN[:] = [process for process in _CHILDREN if process.poll() is None]

    def status(self, site_ids: Sequence[str]) -> dict[str, SiteStatus]:
        self._reap()
        self._start_queued()
        sessions = _sessions()
        out: dict[str, SiteStatus] = {}
        for site_id in site_ids:
            node = self._dir(site_id)
            if not node.is_dir():
                continue
            cancelled = node / "cancelled"
            if cancelled.exists() and _alive(node, sessions):
                # as a batch system does: SIGTERM again (a process group born after the first),
                # SIGKILL once the vacate grace is over
                late = time.time() - cancelled.stat().st_mtime > CANCEL_GRACE_S
                signal_glidein(node, signal.SIGKILL if late else signal.SIGTERM, sessions)
            if cancelled.exists() and not _alive(node, sessions):
                out[site_id] = SiteStatus(GlideinState.REMOVED, "cancelled")
            elif (node / "exit_code").exists():
                code = (node / "exit_code").read_text().strip()
                if code == "0":
                    out[site_id] = SiteStatus(GlideinState.COMPLETED, "exited 0")
                elif code in ("124", "137"):
                    out[site_id] = SiteStatus(
                        GlideinState.FAILED, "walltime exceeded", "killed at the wall-clock limit"
                    )
                else:
                    out[site_id] = SiteStatus(
                        GlideinState.FAILED, f"exited {code}", f"the glidein exited with {code}"
                    )
            elif (node / "queued").exists() and (node / "held").exists():  # the "site's admin" held it
                reason = (node / "held").read_text().strip() or "held by the site"
                out[site_id] = SiteStatus(GlideinState.HELD, "held", reason)
            elif (node / "queued").exists():
                out[site_id] = SiteStatus(GlideinState.QUEUED, "queued")
            elif _alive(node, sessions):
                out[site_id] = SiteStatus(GlideinState.RUNNING, "running")
            else:  # started, not running, no exit code: killed without its shell
                out[site_id] = SiteStatus(
                    GlideinState.FAILED, "vanished", "the glidein's processes are gone without an exit code"
                )
        return out

    def release(self, site_ids: Sequence[str]) -> dict[str, bool]:
        """A held glidein (a ``held`` file in its directory, as a site's admin holds a job) queues again."""
        done = {}
        for site_id in site_ids:
            held = self._dir(site_id) / "held"
            done[site_id] = held.exists()
            held.unlink(missing_ok=True)
        self._start_queued()
        return done

    def cancel(self, site_ids: Sequence[str]) -> dict[str, bool]:
        done = {}
        sessions = _sessions()
        for site_id in site_ids:
            node = self._dir(site_id)
            if not node.is_dir():
                done[site_id] = False
                continue
            (node / "cancelled").write_text("")
            (node / "queued").unlink(missing_ok=True)
            signal_glidein(node, signal.SIGTERM, sessions)  # the pilot vacates its jobs on SIGTERM
            done[site_id] = True
        return done

    def cleanup(self, site_ids: Sequence[str]) -> None:
        import shutil

        sessions = _sessions()
        for site_id in site_ids:
            node = self._dir(site_id)
            if node.is_dir() and not _alive(node, sessions):
                shutil.rmtree(node, ignore_errors=True)

    def fetch_output(self, site_id: str, glidein_id: str) -> GlideinOutput | None:
        return read_output(self._dir(site_id))

    def list_tagged(self) -> dict[str, str]:
        prefix = self.tag_prefix()
        return {
            node.name: node.name
            for node in self.root().iterdir()
            if node.name.startswith(prefix) and node.is_dir()
        }

    def find(self, tags: Sequence[str]) -> dict[str, str]:
        return {tag: tag for tag in tags if self._dir(tag).is_dir()}


_CHILDREN: list[subprocess.Popen[bytes]] = []
_CHILDREN_LOCK = threading.Lock()


def _pid(node: Path) -> int:
    try:
        return int((node / "pid").read_text())
    except (OSError, ValueError):
        return 0


def _sessions() -> dict[int, set[int]]:
    """The live process groups of every session, from /proc ({} where there is no /proc)."""
    groups: dict[int, set[int]] = {}
    try:
        entries = os.scandir("/proc")
    except OSError:
        return groups
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    data = stat.read()
            except OSError:
                continue
            fields = data[data.rindex(b")") + 2 :].split()  # state ppid pgrp session ...
            if fields[0] != b"Z":
                groups.setdefault(int(fields[3]), set()).add(int(fields[2]))
    return groups


def signal_glidein(node: Path, signum: int, sessions: dict[int, set[int]] | None = None) -> None:
    """Signal every process group of the glidein in worker-node directory ``node``."""
    pid = _pid(node)
    if not pid:
        return
    if sessions is None:
        sessions = _sessions()
    for group in sessions.get(pid, {pid}):
        try:
            os.killpg(group, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(node: Path, sessions: dict[int, set[int]]) -> bool:
    """Any process left in the glidein's session (its wrapper's pid is the session id)."""
    pid = _pid(node)
    if not pid:
        return False
    if sessions:
        return pid in sessions
    try:  # no /proc: the wrapper's own group is all that can be seen
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
