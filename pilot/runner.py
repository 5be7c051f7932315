"""One user job on this pilot, from its claim to its report, in a thread of its own.

Fetch and verify the input sandbox, build the job's environment, start it (directly,
through gLExec or in bubblewrap), watch its process tree, enforce its memory and runtime
limits, obey kill/suspend/continue from the pool, send back its outputs and report how it
ended.  Anything that goes wrong on the node is reported as a hold with a clear reason:
the job never silently disappears.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pilot import process
from pilot.jobenv import JobHeld, ad_text, job_command, job_environment
from pilot.jobsandbox import fetch_inputs, output_files, send_outputs
from pilot.launch import Launcher
from updraft.core import payloads, protocol
from updraft.core.client import Client, ClientError
from updraft.core.states import StateMachine
from updraft.core.transport import PoolUnreachable


@dataclass
class RunContext:
    """What every job on the pilot shares (set up by the main loop)."""

    pool_url: str
    token: Callable[[], str]
    ca_file: str
    transport: str
    work_dir: Path
    launcher: Launcher
    slot_ad: dict[str, str]
    squid: str
    monitor_interval_s: float
    memory_enforcement: bool
    memory_floor_mb: int
    job_max_runtime_s: int
    vacate_grace_s: float
    log: Callable[[str], None]
    base_env: dict[str, str] = field(default_factory=dict)
    #: the slot ad to send with a successful exit report (claim reuse), or None
    next_slot: Callable[[Any], Optional[dict[str, str]]] = lambda job: None

    def client(self) -> Client:
        return Client(self.pool_url, self.token(), self.ca_file or None, 120.0, self.transport)


class OutcomeKind(str, enum.Enum):
    """How a job's time on this pilot ended (counted in the final record by value)."""

    EXITED = "exited"  # the process ended and its output went back: the pool judges the exit
    HELD = "held"  # the pilot held it (a sandbox it could not move, a limit it went over)
    VACATED = "vacated"  # given back to run elsewhere (the pilot ends, or went wrong itself)
    KILLED = "killed"  # the pool removed or held it: killed, no more words
    LOST = "lost"  # the pool could not be told (unreachable): its lease brings the job back


class JobOnPilot(str, enum.Enum):
    """A job's state on this pilot (the pool's JobStatus is the pool's business)."""

    STARTING = "starting"  # matched, its thread not yet at work
    DOWNLOADING = "downloading"  # fetching the input sandbox
    RUNNING = "running"  # its processes run
    SUSPENDED = "suspended"  # stopped (SIGSTOP) at the pool's word; the claim stays
    UPLOADING = "uploading"  # the processes ended; the output goes back
    DONE = "done"  # reported (or given up): the thread ends


#: the only way a job's state on the pilot changes (JobRun._enter)
JOB_ON_PILOT_STATES = StateMachine(
    "job on pilot",
    {
        JobOnPilot.STARTING: {JobOnPilot.DOWNLOADING, JobOnPilot.DONE},
        JobOnPilot.DOWNLOADING: {JobOnPilot.RUNNING, JobOnPilot.DONE},
        JobOnPilot.RUNNING: {JobOnPilot.SUSPENDED, JobOnPilot.UPLOADING, JobOnPilot.DONE},
        JobOnPilot.SUSPENDED: {JobOnPilot.RUNNING, JobOnPilot.UPLOADING, JobOnPilot.DONE},
        JobOnPilot.UPLOADING: {JobOnPilot.DONE},
        JobOnPilot.DONE: set(),
    },
)


@dataclass
class Outcome:
    claim_id: str
    job_id: str
    kind: OutcomeKind
    exit_code: Optional[int] = None
    exit_signal: Optional[int] = None
    wall_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    message: str = ""
    pilot_fault: bool = False  # the pilot, not the job, went wrong: counts toward black-hole detection
    next_matches: list[payloads.Match] = field(default_factory=list)  # handed over with the exit report


def _exit_watch(pid: int) -> Callable[[float], None]:
    """A wait for the child's exit with a timeout: a pidfd where the kernel has them (Linux 5.3),
    so a job's end is seen at once rather than at the next tick."""
    opener = getattr(os, "pidfd_open", None)
    if opener is not None:
        try:
            descriptor = opener(pid)
        except OSError:
            descriptor = -1
        if descriptor >= 0:
            import select

            def wait(timeout: float) -> None:
                try:
                    select.select([descriptor], [], [], timeout)
                except (OSError, ValueError):
                    time.sleep(timeout)

            weakref.finalize(wait, os.close, descriptor)
            return wait
    return time.sleep


class JobRun:
    def __init__(
        self, match: payloads.Match, context: RunContext, on_done: Callable[[JobRun, Outcome], None]
    ) -> None:
        self.match = match
        self.context = context
        self.on_done = on_done
        self.commands: queue.Queue[tuple[str, str, dict[str, str]]] = queue.Queue()
        self.scratch = context.work_dir / "execute" / f"dir_{match.job_id}_{match.claim_id[:8]}"
        self.child: Optional[subprocess.Popen] = None
        self.env: dict[str, str] = {}
        self.started = 0.0
        self.state = JobOnPilot.STARTING
        self.thread = threading.Thread(target=self._run, name=f"job-{match.job_id}", daemon=True)

    def _enter(self, state: JobOnPilot) -> None:
        self.state = JOB_ON_PILOT_STATES.advance(self.state, state, self.match.job_id)

    # -- called by the main loop -----------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def command(self, command: str, reason: str = "", details: dict[str, str] | None = None) -> None:
        self.commands.put((command, reason, details or {}))

    @property
    def lease_s(self) -> int:
        return self.match.lease_s

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        outcome = Outcome(self.match.claim_id, self.match.job_id, OutcomeKind.LOST)
        client = self.context.client()
        try:
            outcome = self._execute(client, outcome)
        except (PoolUnreachable, ClientError) as exc:
            outcome.kind, outcome.message = OutcomeKind.LOST, f"the pool could not be told: {exc}"
            self.context.log(f"job {self.match.job_id}: {outcome.message}")
        except Exception as exc:  # never leave a claim without a word: give the job back
            outcome.kind, outcome.message, outcome.pilot_fault = (
                OutcomeKind.VACATED,
                f"pilot error: {exc!r}",
                True,
            )
            self.context.log(f"job {self.match.job_id}: {outcome.message}")
            try:
                self._kill()
                self._report(
                    client, payloads.ClaimReport(protocol.ClaimEvent.VACATED.value, message=outcome.message)
                )
            except Exception:
                outcome.kind = OutcomeKind.LOST
        finally:
            self._kill()
            client.close()
            shutil.rmtree(self.scratch, ignore_errors=True)
            self._enter(JobOnPilot.DONE)
            self.on_done(self, outcome)

    def _report(self, client: Client, report: payloads.ClaimReport) -> payloads.ReportResult:
        client.token = self.context.token()
        return client.report(self.match.claim_id, report)

    def _execute(self, client: Client, outcome: Outcome) -> Outcome:
        ad = self.match.job_ad
        timings = outcome.timings
        began = time.monotonic()
        try:
            self._enter(JobOnPilot.DOWNLOADING)
            self.scratch.mkdir(parents=True)
            (self.scratch / "tmp").mkdir()
            self.context.launcher.prepare(self.scratch)
            fetch_inputs(client, self.match, self.scratch)
            timings["download_s"] = round(time.monotonic() - began, 3)
            argv, stdin_path = job_command(ad, self.scratch)
            self.env = job_environment(ad, self.scratch, self.context, self.match)
            try:
                launched_argv, self.env = self.context.launcher.wrap(
                    argv, self.env, self.scratch, self.env.get("X509_USER_PROXY")
                )
            except PermissionError as exc:
                raise JobHeld(
                    f"cannot start the job {self.context.launcher.describe()}: {exc}",
                    protocol.HoldCode.FailedToCreateProcess,
                ) from None
            self._start(launched_argv, stdin_path)
        except JobHeld as held:
            return self._hold(client, outcome, held)
        self._report(client, payloads.ClaimReport(protocol.ClaimEvent.STARTED.value))
        self._enter(JobOnPilot.RUNNING)
        ended = self._watch(client)
        outcome.wall_s = round(time.monotonic() - self.started, 3)
        timings["run_s"] = outcome.wall_s
        kind, detail = ended
        if kind == OutcomeKind.KILLED:
            outcome.kind, outcome.message = (
                OutcomeKind.KILLED,
                detail,
            )  # removed or held in the pool: no more words
            return outcome
        if kind == OutcomeKind.VACATED:
            self._report(
                client,
                payloads.ClaimReport(protocol.ClaimEvent.VACATED.value, usage=self._usage(), message=detail),
            )
            outcome.kind, outcome.message = OutcomeKind.VACATED, detail
            return outcome
        if kind == OutcomeKind.HELD:
            code, reason = detail
            return self._hold(client, outcome, JobHeld(reason, code))
        status, rusage = detail
        outcome.exit_signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        outcome.exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        self.rusage = rusage
        uploading = time.monotonic()
        self._enter(JobOnPilot.UPLOADING)
        try:
            client.token = self.context.token()
            files = output_files(ad, self.scratch, self.match, self.started_wall())
            send_outputs(client, self.match, self.scratch, files)
        except JobHeld as held:
            return self._hold(client, outcome, held)
        timings["upload_s"] = round(time.monotonic() - uploading, 3)
        # a failure goes the long way, through a poll: the pilot looks at it (black holes) first
        succeeded = outcome.exit_code == 0 and outcome.exit_signal is None
        next_slot = self.context.next_slot(self) if succeeded else None
        report = payloads.ClaimReport(
            protocol.ClaimEvent.EXITED.value,
            outcome.exit_code,
            outcome.exit_signal,
            self._usage(),
            slot_ad=next_slot or {},
        )
        answer = self._report(client, report)
        outcome.next_matches = list(answer.matches)
        outcome.kind = OutcomeKind.EXITED
        return outcome

    def _hold(self, client: Client, outcome: Outcome, held: JobHeld) -> Outcome:
        self._kill()
        self.context.log(f"job {self.match.job_id}: held: {held.reason}")
        report = payloads.ClaimReport(
            protocol.ClaimEvent.HELD.value,
            usage=self._usage(),
            hold_reason=held.reason,
            hold_reason_code=held.code,
            hold_reason_subcode=held.subcode,
        )
        self._report(client, report)
        outcome.kind, outcome.message = OutcomeKind.HELD, held.reason
        return outcome

    # -- sandbox -------------------------------------------------------------------------------
    # -- running -------------------------------------------------------------------------------
    def _start(self, argv: list[str], stdin_path: Optional[Path]) -> None:
        stdout = open(self.scratch / "_condor_stdout", "wb")  # noqa: SIM115 - the child keeps them
        stderr = open(self.scratch / "_condor_stderr", "wb")  # noqa: SIM115
        try:
            stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL  # noqa: SIM115
        except OSError as exc:
            raise JobHeld(
                f"cannot open the job's input {stdin_path}: {exc.strerror}",
                protocol.HoldCode.UnableToOpenInput,
            ) from None
        try:
            for attempt in range(10):
                try:
                    self.child = subprocess.Popen(
                        argv,
                        cwd=self.scratch,
                        env=self.env,
                        stdin=stdin,
                        stdout=stdout,
                        stderr=stderr,
                        start_new_session=True,
                    )
                    break
                except OSError as exc:
                    # ETXTBSY: another job thread forked while this executable was still open for writing;
                    # the fork's copy of that descriptor closes at its exec, a moment later
                    if exc.errno != errno.ETXTBSY or attempt == 9:
                        raise
                    time.sleep(0.02 * (attempt + 1))
        except OSError as exc:
            raise JobHeld(
                f"Failed to execute '{argv[0]}': {exc.strerror}", protocol.HoldCode.FailedToCreateProcess
            ) from None
        finally:
            stdout.close()
            stderr.close()
            if stdin is not subprocess.DEVNULL:
                stdin.close()
        self.started = time.monotonic()
        self.peak_rss_kb = 0
        self.last_usage = process.Usage()

    def _limits(self) -> tuple[Optional[float], str, int]:
        ad = self.match.job_ad
        limits = []
        for name, code in (
            ("AllowedExecuteDuration", protocol.HoldCode.JobExecuteExceeded),
            ("AllowedJobDuration", protocol.HoldCode.JobDurationExceeded),
        ):
            value = ad_text(ad, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                limits.append((float(value), name, int(code)))
        if self.context.job_max_runtime_s > 0:
            limits.append(
                (
                    float(self.context.job_max_runtime_s),
                    "the pilot's job_max_runtime_s",
                    int(protocol.HoldCode.JobExecuteExceeded),
                )
            )
        return min(limits) if limits else (None, "", 0)

    def _watch(self, client: Client) -> tuple[OutcomeKind, Any]:
        assert self.child is not None
        pid = self.child.pid
        runtime_limit, limit_name, limit_code = self._limits()
        memory_limit_mb = (
            max(self.match.request_memory_mb, self.context.memory_floor_mb)
            if self.context.memory_enforcement
            else 0
        )
        next_sample = 0.0
        suspended_at: Optional[float] = None
        suspended_total = 0.0
        exit_watch = _exit_watch(pid)
        while True:
            try:
                done_pid, status, rusage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                return OutcomeKind.EXITED, (0, None)
            if done_pid == pid:
                return OutcomeKind.EXITED, (status, rusage)
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + self.context.monitor_interval_s
                self.last_usage = process.usage(pid)
                self.peak_rss_kb = max(self.peak_rss_kb, self.last_usage.rss_kb)
                if memory_limit_mb and self.last_usage.rss_kb / 1024.0 > memory_limit_mb:
                    used = self.last_usage.rss_kb // 1024
                    return OutcomeKind.HELD, (
                        int(protocol.HoldCode.JobOutOfResources),
                        f"Job has gone over memory limit of {memory_limit_mb} megabytes. Peak usage: {used} megabytes.",
                    )
                running_for = now - self.started - suspended_total
                if runtime_limit is not None and running_for > runtime_limit:
                    return OutcomeKind.HELD, (
                        limit_code,
                        f"The job exceeded {limit_name} of {int(runtime_limit)} seconds",
                    )
            try:
                command, reason, details = self.commands.get_nowait()
            except queue.Empty:
                exit_watch(0.05)  # returns at once when the job exits, else after 50 ms
                continue
            if command == protocol.PilotCommand.KILL.value:
                self._kill()
                return OutcomeKind.KILLED, reason or "removed or held in the pool"
            if command == "vacate":
                self._vacate()
                return OutcomeKind.VACATED, reason
            if command == protocol.PilotCommand.REFRESH_CREDENTIAL.value:
                self._refresh_credential(client, details)
            if command == protocol.PilotCommand.SUSPEND.value and suspended_at is None:
                self.context.launcher.signal(pid, pid, signal.SIGSTOP, self.env)
                suspended_at = time.monotonic()
                self._enter(JobOnPilot.SUSPENDED)
                self._report(client, payloads.ClaimReport(protocol.ClaimEvent.SUSPENDED.value))
            elif command == protocol.PilotCommand.CONTINUE.value and suspended_at is not None:
                self.context.launcher.signal(pid, pid, signal.SIGCONT, self.env)
                suspended_total += time.monotonic() - suspended_at
                suspended_at = None
                self._enter(JobOnPilot.RUNNING)
                self._report(client, payloads.ClaimReport(protocol.ClaimEvent.CONTINUED.value))

    def _refresh_credential(self, client: Client, details: dict[str, str]) -> None:
        """The owner refreshed the job's proxy in the queue: replace it in the sandbox, atomically."""
        try:
            name = protocol.safe_relative_path(details.get("path", ""))
            target = self.scratch / name
            incoming = target.with_name(target.name + ".incoming")
            client.token = self.context.token()
            client.get_blob(details["digest"], incoming, self.match.claim_id)
            if hashlib.sha256(incoming.read_bytes()).hexdigest() != details["digest"]:
                raise ValueError("the refreshed proxy arrived corrupted")
            os.chmod(incoming, 0o600)
            os.replace(incoming, target)
            glexec_copy = self.scratch / ".glexec.proxy"
            if glexec_copy.exists():
                shutil.copyfile(target, glexec_copy)
        except (KeyError, ValueError, OSError, protocol.ProtocolError, ClientError, PoolUnreachable) as exc:
            self.context.log(f"job {self.match.job_id}: could not refresh its proxy: {exc}")
            return
        self.context.log(f"job {self.match.job_id}: proxy {name} refreshed")
        self._report(
            client, payloads.ClaimReport(protocol.ClaimEvent.CREDENTIAL_REFRESHED.value, message=name)
        )

    def _vacate(self) -> None:
        """SIGTERM the job, SIGKILL it after the grace period."""
        if self.child is None or self.child.poll() is not None:
            return
        pid = self.child.pid
        self.context.launcher.signal(pid, pid, signal.SIGCONT, self.env)
        self.context.launcher.signal(pid, pid, signal.SIGTERM, self.env)
        deadline = time.monotonic() + self.context.vacate_grace_s
        while time.monotonic() < deadline and self.child.poll() is None:
            time.sleep(0.05)
        self._kill()

    def _kill(self) -> None:
        if self.child is None:
            return
        pid = self.child.pid
        if self.child.poll() is None or process.tree(pid):
            self.context.launcher.signal(pid, pid, signal.SIGKILL, self.env)
        try:
            self.child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def _usage(self) -> dict[str, float]:
        usage: dict[str, float] = {
            "RemoteWallClockTime": round(time.monotonic() - self.started, 3) if self.started else 0.0
        }
        rusage = getattr(self, "rusage", None)
        if rusage is not None:
            # ru_maxrss is not used: it counts the pilot's own image copied by fork before exec
            usage["RemoteUserCpu"] = round(rusage.ru_utime, 3)
            usage["RemoteSysCpu"] = round(rusage.ru_stime, 3)
        else:
            last = getattr(self, "last_usage", process.Usage())
            usage["RemoteUserCpu"] = round(last.user_s, 3)
            usage["RemoteSysCpu"] = round(last.system_s, 3)
        peak = getattr(self, "peak_rss_kb", 0)
        if peak:
            usage["MemoryUsage"] = max(1, (peak + 1023) // 1024)
        if self.scratch.exists():
            usage["DiskUsage"] = (
                sum(f.stat().st_size for f in self.scratch.rglob("*") if f.is_file()) // 1024 + 1
            )
        return usage

    def started_wall(self) -> float:
        return time.time() - (time.monotonic() - self.started)
