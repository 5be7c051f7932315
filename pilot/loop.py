"""The pilot's life: validate the node, then ask the pool for work and run it until it is time to go.

Exit statuses: 0 a normal end (idle, tail, retirement, ToDie, SIGTERM), 1 validation
failed, 2 bad parameters, 3 the pool could not be reached, 4 black hole (jobs kept
failing fast here).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from pilot import resources as resource_probe
from pilot.checks import REGISTRY, CheckContext, CheckResult, run_checks
from pilot.config import PilotConfig, load_config
from pilot.launch import DirectLauncher, Launcher
from pilot.record import PilotLog
from pilot.runner import JobOnPilot, JobRun, Outcome, OutcomeKind, RunContext
from pilot.slot import PILOT_STATES, PilotState, base_ad
from updraft.core import payloads, protocol
from updraft.core.client import Client, ClientError
from updraft.core.pilotparams import PilotConfigError
from updraft.core.pilotrecord import write_result
from updraft.core.transport import PoolUnreachable

EXIT_OK, EXIT_VALIDATION, EXIT_CONFIG, EXIT_POOL, EXIT_BLACK_HOLE = 0, 1, 2, 3, 4
BASE_ENV_NAMES = ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "USER", "LOGNAME", "SHELL")


class Pilot:
    def __init__(self, config: PilotConfig, environ: dict[str, str]) -> None:
        self.config = config
        self.environ = environ
        self.state = PilotState.STARTING
        self.host = host_name()
        suffix = f"{os.getpid()}_{random.getrandbits(16):04x}"
        self.name = f"slot1@{config.glidein_name}_{suffix}@{self.host}"
        self.log = PilotLog(f"{config.glidein_name}_{suffix}")
        self.lock = threading.Lock()
        self.running: dict[str, JobRun] = {}
        self.stop_reason = ""
        self.end_reason = ""
        self.exit_status = EXIT_OK
        self.reached_pool = False  # a poll answered at least once
        self.jobs = {"started": 0, "exited": 0, "failed": 0, "held": 0, "vacated": 0, "killed": 0, "lost": 0}
        self.job_core_s = (
            0.0  # what the jobs used of this pilot (wall time x cores): the factory's "used" hours
        )
        self.fast_failures = 0
        self.black_hole = False
        self.first_match_at: Optional[float] = None
        self.last_job_end: Optional[float] = None
        self.checks: list[CheckResult] = []
        self.token = ""
        self.start_wall = time.time()

    # =========================================================================================
    # Setting up
    # =========================================================================================
    def _work_dir(self) -> Path:
        base = (
            self.config.work_dir
            or self.environ.get("_CONDOR_SCRATCH_DIR")
            or self.environ.get("TMPDIR")
            or os.getcwd()
        )
        work = Path(base) / f"updraft-pilot-{self.log.name}"
        work.mkdir(parents=True, exist_ok=True)
        return work

    def _lifetime(self) -> None:
        """GLIDEIN_ToDie: the site's limits minus a margin and a random spread; ToRetire before it."""
        config = self.config
        limits = [v for v in (config.lifetime_s, config.max_walltime_s, config.max_cputime_s) if v > 0]
        if limits:
            life = min(limits)
            if config.lifetime_s <= 0:
                life = max(60, life - config.die_margin_s - random.uniform(0, config.die_spread_s))
        else:
            life = 10 * 365 * 86400
        self.to_die = int(self.start_wall + life)
        if config.lease_until > 0:  # a factory that lost track of this glidein still gets it back
            self.to_die = min(self.to_die, int(config.lease_until))
        before = config.retire_before_die_s or min(3600, int(life * 0.1))
        self.to_retire = int(self.to_die - before)

    def _read_token(self) -> str:
        path = self.config.token_file or self.environ.get("UPDRAFT_TOKEN_FILE", "")
        if path:
            try:
                return Path(path).read_text().strip()
            except OSError as exc:
                raise PilotConfigError(f"cannot read the token file {path}: {exc.strerror}") from None
        token = self.environ.get("UPDRAFT_TOKEN", "")
        if not token:
            raise PilotConfigError(
                "no pool token: give --token-file (a token from 'updraft token create --scope pilot')"
            )
        return token

    def _client(self) -> Client:
        return Client(self.config.pool, self.token, self.config.ca_file or None, 60.0, self.config.transport)

    # =========================================================================================
    # Running
    # =========================================================================================
    def run(self) -> int:
        began = time.monotonic()
        self.work_dir = self._work_dir()
        self.log.attach(self.work_dir / "pilot.log")
        self._lifetime()
        self.token = self._read_token()
        self.client = self._client()
        self.log(
            f"starting on {self.host} for site {self.config.site}, entry {self.config.entry}; pool {self.config.pool}"
        )
        self.log(
            f"GLIDEIN_ToRetire in {self.to_retire - int(time.time())} s, GLIDEIN_ToDie in {self.to_die - int(time.time())} s"
        )
        self._install_signals()
        self.log.stage("startup", time.monotonic() - began)
        try:
            if self.config.lease_until > 0 and time.time() >= self.config.lease_until:
                self.end_reason = "the factory's lease ran out before the glidein started"
                return self.exit_status
            if not self._validate():
                return self._fail_validation()
            self._serve()
        finally:
            self._finish()
        return self.exit_status

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            self.stop_reason = signal.Signals(signum).name

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, stop)

    def _validate(self) -> bool:
        self.state = PILOT_STATES.advance(self.state, PilotState.VALIDATING)
        started = time.monotonic()
        environ = dict(self.environ)
        context = CheckContext(self.config, self.work_dir, environ, float(self.to_die), self.token)
        self.checks = run_checks(context, REGISTRY, self.log)
        for result in self.checks:
            self.log.stage(f"check {result.name}", result.seconds, ok=result.ok)
        self.log.stage("validation", time.monotonic() - started)
        self.facts = context.facts
        if self.checks and not self.checks[-1].ok:
            return False
        found = context.facts.get("resources") or resource_probe.detect(
            self.config.cpus, self.config.memory_mb, self.config.disk_gb, self.work_dir, self.environ
        )
        self.resources = found
        self.launcher: Launcher = context.facts.get("launcher") or DirectLauncher()
        self.squid = str(context.facts.get("squid") or "")
        return True

    def _fail_validation(self) -> int:
        failed = self.checks[-1]
        self.state = PILOT_STATES.advance(self.state, PilotState.FAILED)
        if failed.name == "pool":  # nobody to report to, and not the node's fault: end now, exit 3
            self.end_reason = f"never reached the pool: {failed.message}"
            self.exit_status = EXIT_POOL
            self.log(f"validation FAILED ({failed.failure_type}, code {failed.code}): {failed.message}")
            return EXIT_POOL
        self.end_reason = f"validation failed: {failed.name}: {failed.message}"
        self.exit_status = EXIT_VALIDATION
        self.log(f"validation FAILED ({failed.failure_type}, code {failed.code}): {failed.message}")
        ad = {
            "Name": protocol.literal(self.name),
            protocol.ATTR_GLIDEIN_SITE: protocol.literal(self.config.site),
            protocol.ATTR_GLIDEIN_ENTRY: protocol.literal(self.config.entry),
            protocol.ATTR_GLIDEIN_FACTORY: protocol.literal(self.config.factory),
            protocol.ATTR_GLIDEIN_NAME: protocol.literal(self.config.glidein_name),
            protocol.ATTR_GLIDEIN_ID: protocol.literal(self.config.glidein_id),
            protocol.ATTR_GLIDEIN_CLIENT: protocol.literal(self.config.frontend),
            protocol.ATTR_GLIDEIN_CLIENT_GROUP: protocol.literal(self.config.group),
            "Machine": protocol.literal(self.host),
            "FailedCheck": protocol.literal(failed.name),
            "FailureType": protocol.literal(failed.failure_type),
            "FailureCode": str(failed.code),
            "FailureMessage": protocol.literal(failed.message),
            "FailureMetrics": protocol.literal(str(failed.metrics)),
            "FailureTime": str(int(time.time())),
        }
        try:
            self.client.advertise(
                protocol.AdType.PilotFailure.value, [ad], lifetime_s=max(3600, self.config.failure_hold_s)
            )
            self.client.record_event(
                "pilot_failed",
                {"site": self.config.site, "entry": self.config.entry, "host": self.host, "check": failed.name,
                 "type": failed.failure_type, "code": failed.code, "message": failed.message},
            )  # fmt: skip
        except (PoolUnreachable, ClientError) as exc:
            self.log(f"could not report the failure to the pool: {exc}")
        hold_until = time.monotonic() + self.config.failure_hold_s
        if self.config.failure_hold_s > 0:
            self.log(
                f"keeping this batch slot busy for {self.config.failure_hold_s} s so that the node takes no more pilots"
            )
        while time.monotonic() < hold_until and not self.stop_reason:
            time.sleep(min(1.0, max(0.0, hold_until - time.monotonic())))
        return EXIT_VALIDATION

    # -- the main loop ------------------------------------------------------------------------
    def _run_context(self) -> RunContext:
        base_env = {k: v for k, v in self.environ.items() if k in BASE_ENV_NAMES}
        return RunContext(
            self.config.pool, lambda: self.token, self.config.ca_file, self.config.transport, self.work_dir, self.launcher,
            self.slot_base, self.squid, self.config.monitor_interval_s, self.config.memory_enforcement,
            self.config.memory_floor_mb, self.config.job_max_runtime_s, float(self.config.vacate_grace_s), self.log, base_env,
            self._next_slot_ad,
        )  # fmt: skip

    def _serve(self) -> None:
        self.state = PILOT_STATES.advance(self.state, PilotState.IDLE)
        self.slot_base = base_ad(
            self.name,
            self.host, self.config, self.to_retire, self.to_die, self.launcher.kind == "glexec", self.squid,
            self.launcher.kind, self.resources.cpus, self.resources.memory_mb,
        )  # fmt: skip
        self.slot_base[protocol.ATTR_DAEMON_START_TIME] = str(int(self.start_wall))
        self.run_context = self._run_context()
        self.idle_since = time.monotonic()
        self.last_contact = time.monotonic()
        self.serving_started = time.monotonic()
        self.log(
            f"serving {self.resources.cpus} core(s), {self.resources.memory_mb} MB, {self.resources.disk_kb // 1024} MB disk; jobs run {self.launcher.describe()}"
        )
        while self.state not in (PilotState.DONE,):
            if self._should_stop():
                break
            self._maybe_renew_token()
            try:
                result = self.client.poll(self._poll_request())
            except (PoolUnreachable, ClientError) as exc:
                if self._pool_lost(exc):
                    break
                time.sleep(min(5.0, 0.5 + random.random()))
                continue
            self.last_contact = time.monotonic()
            self.reached_pool = True
            self._handle(result)
        self._stop_jobs()

    def _free(self, jobs: list[JobRun]) -> dict[str, int]:
        return {
            "cpus": self.resources.cpus - sum(j.match.request_cpus for j in jobs),
            "memory": self.resources.memory_mb - sum(j.match.request_memory_mb for j in jobs),
            "disk": self.resources.disk_kb - sum(j.match.request_disk_kb for j in jobs),
        }

    def _accepting(self) -> bool:
        return self.state in (PilotState.IDLE, PilotState.BUSY) and time.time() < self.to_retire

    def _poll_request(self) -> payloads.PollRequest:
        ad, free, accepting = self._slot_ad()
        with self.lock:
            claims = list(self.running)
            leases = [job.lease_s for job in self.running.values()]
        wait = self.config.poll_wait_s
        if leases:
            wait = min(wait, max(1.0, min(leases) / 3.0))
        else:
            wait = min(wait, max(0.5, self._idle_deadline() - time.monotonic()))
        wait = max(0.0, min(wait, self.to_die - time.time()))
        return payloads.PollRequest(ad, claims, wait, max(0, free["cpus"]) if accepting else 0)

    def _next_slot_ad(self, leaving: JobRun) -> Optional[dict[str, str]]:
        """The slot once ``leaving`` is gone, sent with its exit report so that the pool hands
        the next job over in the answer (claim reuse); None when the pilot takes no more."""
        ad, _free, accepting = self._slot_ad(leaving)
        return ad if accepting and self.config.claim_reuse else None

    def _slot_ad(self, leaving: Optional[JobRun] = None) -> tuple[dict[str, str], dict[str, int], bool]:
        """The slot ad with what is free now (or once ``leaving`` is gone), and whether it takes jobs."""
        with self.lock:
            jobs = [j for j in self.running.values() if j is not leaving]
        free = self._free(jobs)
        ad = dict(self.slot_base)
        ad.update(
            {
                "Cpus": str(max(0, free["cpus"])),
                "Memory": str(max(0, free["memory"])),
                "Disk": str(max(0, free["disk"])),
                "State": protocol.literal("Claimed" if jobs else "Unclaimed"),
                "Activity": protocol.literal("Busy" if jobs else "Idle"),
                "JobsRunning": str(len(jobs)),
                "TotalJobStarts": str(self.jobs["started"]),
                protocol.ATTR_PILOT_STATE: protocol.literal(self.state.value),
            }
        )
        accepting = self._accepting() and free["cpus"] > 0
        if not accepting:
            ad["START"] = "false"
        return ad, free, accepting

    def _idle_deadline(self) -> float:
        timeout = self.config.idle_timeout_s if self.first_match_at is None else self.config.tail_timeout_s
        return self.idle_since + timeout

    def _take(self, match: payloads.Match, replacing: Optional[JobRun] = None) -> JobRun:
        """Book a matched job (in place of ``replacing``, in one step, so that no poll in
        between sees the resources free); the caller starts it."""
        if self.first_match_at is None:
            self.first_match_at = time.monotonic()
            self.log.stage("first match", self.first_match_at - self.serving_started, job=match.job_id)
        job = JobRun(match, self.run_context, self._job_done)
        with self.lock:
            if replacing is not None:
                self.running.pop(replacing.match.claim_id, None)
            self.running[match.claim_id] = job
            self.jobs["started"] += 1
        self.log(f"job {match.job_id}: matched ({match.request_cpus} core(s), {match.request_memory_mb} MB)")
        self.state = (
            PILOT_STATES.advance(self.state, PilotState.BUSY) if self.state == PilotState.IDLE else self.state
        )
        return job

    def _handle(self, result: payloads.PollResult) -> None:
        for match in result.matches:
            self._take(match).start()
        with self.lock:
            running = dict(self.running)
        for command in result.commands:
            job = running.get(command.claim_id)
            if job is not None:
                self.log(f"job {job.match.job_id}: pool says {command.command} ({command.reason})")
                job.command(command.command, command.reason, command.details)
        for claim_id in result.unknown_claims:
            job = running.get(claim_id)
            if job is not None and job.state not in (JobOnPilot.UPLOADING, JobOnPilot.DONE):
                self.log(f"job {job.match.job_id}: the pool let go of its claim; stopping it")
                job.command(protocol.PilotCommand.KILL.value, "claim unknown to the pool")

    def _job_done(self, job: JobRun, outcome: Outcome) -> None:
        following = [self._take(match, replacing=job) for match in outcome.next_matches]
        for next_job in following:
            self.log(f"job {next_job.match.job_id}: on the claim of {outcome.job_id} (claim reuse)")
            next_job.start()
        with self.lock:
            self.running.pop(job.match.claim_id, None)
            if outcome.kind == OutcomeKind.EXITED and (outcome.exit_code or outcome.exit_signal):
                self.jobs["failed"] += 1
            self.jobs[outcome.kind.value] += 1
            self.job_core_s += outcome.wall_s * max(1, job.match.request_cpus)
            failed_fast = outcome.pilot_fault or (
                outcome.kind in (OutcomeKind.EXITED, OutcomeKind.HELD)
                and bool(outcome.exit_code or outcome.exit_signal or outcome.kind == OutcomeKind.HELD)
            )
            if failed_fast and outcome.wall_s < self.config.black_hole_seconds:
                self.fast_failures += 1
            elif outcome.kind == OutcomeKind.EXITED:
                self.fast_failures = 0
            if not self.running:
                self.idle_since = time.monotonic()
                self.last_job_end = time.monotonic()
                if self.state == PilotState.BUSY:
                    self.state = PILOT_STATES.advance(self.state, PilotState.IDLE)
        self.log.stage(
            f"job {outcome.job_id}",
            outcome.wall_s,
            outcome=outcome.kind.value,
            exit=outcome.exit_code,
            **outcome.timings,
        )
        self.log(
            f"job {outcome.job_id}: {outcome.kind.value} (exit {outcome.exit_code}, signal {outcome.exit_signal}) after {outcome.wall_s:.1f} s {outcome.message}"
        )
        if self.fast_failures >= self.config.black_hole_failures and not self.black_hole:
            self.black_hole = True
            self._black_hole()

    def _black_hole(self) -> None:
        message = f"{self.fast_failures} jobs in a row failed within {self.config.black_hole_seconds} s on this node: taking no more"
        self.log(f"black hole: {message}")
        self.end_reason = f"black hole: {message}"
        self.exit_status = EXIT_BLACK_HOLE
        with self.lock:
            if self.state in (PilotState.IDLE, PilotState.BUSY):
                self.state = PILOT_STATES.advance(self.state, PilotState.RETIRING)
        try:
            client = self._client()
            client.record_event(
                "pilot_black_hole",
                {"site": self.config.site, "entry": self.config.entry, "host": self.host, "message": message},
            )
            client.close()
        except (PoolUnreachable, ClientError):
            pass

    def _should_stop(self) -> bool:
        now = time.time()
        with self.lock:
            busy = bool(self.running)
        if self.stop_reason:
            self.end_reason = self.end_reason or f"{self.stop_reason} from the batch system"
            return True
        if now >= self.to_die:
            self.end_reason = "GLIDEIN_ToDie reached"
            return True
        if now >= self.to_retire and self.state in (PilotState.IDLE, PilotState.BUSY):
            self.log("GLIDEIN_ToRetire reached: taking no more jobs")
            self.state = PILOT_STATES.advance(self.state, PilotState.RETIRING)
        if self.state == PilotState.RETIRING and not busy:
            self.end_reason = self.end_reason or "retired"
            return True
        if not busy and self.state == PilotState.IDLE and time.monotonic() >= self._idle_deadline():
            if not self.reached_pool:  # no work is not what happened: the pool was never there
                self.end_reason = f"never reached the pool at {self.config.pool}"
                self.exit_status = EXIT_POOL
                return True
            self.end_reason = (
                "idle timeout (no job)" if self.first_match_at is None else "tail timeout (no more jobs)"
            )
            return True
        return False

    def _pool_lost(self, error: Exception) -> bool:
        silent = time.monotonic() - self.last_contact
        with self.lock:
            leases = [job.lease_s for job in self.running.values()]
        limit = min(leases) if leases else max(60.0, float(self.config.idle_timeout_s))
        self.log(f"pool unreachable for {silent:.0f} s (limit {limit:.0f} s): {error}")
        if silent > limit:
            self.end_reason = (
                f"never reached the pool at {self.config.pool} in {silent:.0f} s: {error}"
                if not self.reached_pool
                else f"lost the pool for {silent:.0f} s, longer than the job lease: stopping (no zombies)"
            )
            self.exit_status = EXIT_POOL
            with self.lock:
                jobs = list(self.running.values())
            for job in jobs:
                job.command(protocol.PilotCommand.KILL.value, "pool unreachable")
            return True
        return False

    def _maybe_renew_token(self) -> None:
        """Renew the pool token when a third of its life (at least a minute) is left."""
        from pilot.checks.credentials import jwt_claims

        claims = jwt_claims(self.token)
        expires, issued = claims.get("exp"), claims.get("iat")
        if not isinstance(expires, (int, float)):
            return
        lifetime = float(expires) - float(issued) if isinstance(issued, (int, float)) else 3600.0
        if float(expires) - time.time() > max(60.0, lifetime / 3.0):
            return
        try:
            renewed = self.client.renew_token()
        except (PoolUnreachable, ClientError) as exc:
            self.log(f"could not renew the pool token: {exc}")
            if float(expires) - time.time() < 60 and self.state in (PilotState.IDLE, PilotState.BUSY):
                self.state = PILOT_STATES.advance(self.state, PilotState.RETIRING)
                self.end_reason = "pool token not renewed"
            return
        self.token = renewed.token
        if self.config.token_file:
            try:
                Path(self.config.token_file).write_text(self.token + "\n")
            except OSError:
                pass
        self.log("pool token renewed")

    def _stop_jobs(self) -> None:
        """Vacate what still runs (ToDie, SIGTERM) and wait for the job threads to report."""
        with self.lock:
            jobs = list(self.running.values())
        if jobs:
            self.state = PILOT_STATES.advance(self.state, PilotState.VACATING)
            self.log(f"vacating {len(jobs)} job(s): {self.end_reason}")
            for job in jobs:
                job.command("vacate", self.end_reason)
            deadline = time.monotonic() + self.config.vacate_grace_s + 15
            for job in jobs:
                job.thread.join(timeout=max(0.1, deadline - time.monotonic()))

    def _finish(self) -> None:
        if not PILOT_STATES.can(self.state, PilotState.DONE):  # busy with nothing left: it vacated nothing
            self.state = PILOT_STATES.advance(self.state, PilotState.VACATING)
        self.state = PILOT_STATES.advance(self.state, PilotState.DONE)
        try:
            if hasattr(self, "slot_base"):
                self.client.invalidate(protocol.AdType.Slot.value, [self.name])
        except (PoolUnreachable, ClientError):
            pass
        self.log(f"ending: {self.end_reason or 'done'}")
        self.log(self.log.summary())
        record = {
            "glidein": self.name,
            "site": self.config.site,
            "entry": self.config.entry,
            "factory": self.config.factory,
            "host": self.host,
            "exit_status": self.exit_status,
            "status": {
                EXIT_OK: "ok",
                EXIT_VALIDATION: "validation_failed",
                EXIT_POOL: "pool_lost",
                EXIT_BLACK_HOLE: "black_hole",
            }.get(self.exit_status, "error"),
            "reason": self.end_reason,
            "checks": [c.to_dict() for c in self.checks],
            "jobs": dict(self.jobs),
            "timings": self.log.stages,
            "lifetime_s": round(time.time() - self.start_wall, 1),
            "cpus": self.resources.cpus if hasattr(self, "resources") else 0,
            "job_core_s": round(self.job_core_s, 1),
            "to_retire": getattr(self, "to_retire", 0),
            "to_die": getattr(self, "to_die", 0),
        }
        write_result(
            record,
            Path(self.config.result_file) if self.config.result_file else self.work_dir / "pilot-result.json",
        )
        try:
            self.client.close()
        except Exception:
            pass


def host_name() -> str:
    """The node's name; getfqdn() says "localhost" on hosts whose name does not resolve."""
    name = socket.getfqdn()
    return socket.gethostname() if name.startswith("localhost") else name


def main(argv: Optional[list[str]] = None) -> int:
    try:
        config = load_config(argv)
        pilot = Pilot(config, dict(os.environ))
        return pilot.run()
    except PilotConfigError as exc:
        print(f"updraft-pilot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
