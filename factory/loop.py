"""The factory process: one cycle every ``cycle_s``, each entry in a worker of its own.

A cycle reads the frontends' requests from the pool, runs one step per entry in a thread
pool (reconcile, poll, finish, held, stale, credentials, then the plan: remove, submit),
waits a bounded time for them, and advertises what it has.  An entry whose site hangs
keeps its worker busy and is skipped by the next cycles until it comes back; the others
go on.  SIGHUP reloads the config (refused if invalid), SIGTERM stops after the cycle.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.adapters import ADAPTERS
from factory.adapters.base import Runner, SiteAdapter, run_argv
from factory.advertising import cycle_ads
from factory.config import ConfigError, EntryConfig, FactoryConfig, build_entry, load_factory_config
from factory.failures import as_status, live_failures
from factory.journal import Journal
from factory.limits import Counts, Request, plan
from factory.requests import Rejected, read_requests
from factory.staging import StagingServer, digest, stage_file, stage_pilot, staging_server
from factory.startup import StagedFile
from factory.submission import Staged, for_request, remove_excess, submit
from factory.tracking import (
    PILOT_SECONDS,
    EntryContext,
    expire_leases,
    expire_stale,
    finish,
    handle_held,
    poll,
    reconcile,
    renew_credentials,
)
from updraft.core import protocol
from updraft.core.client import Client, ClientError, PoolUnreachable
from updraft.core.sealed import KeyPair
from updraft.service import (
    ServiceLoop,
    renew_token,
    service_client,
)

log = logging.getLogger("updraft.factory")
#: settings a reload cannot apply: the staging socket, the pool connection, the log
FACTORY_RESTART_ONLY = (
    "staging.host",
    "staging.port",
    "staging.dir",
    "pool.url",
    "pool.token_file",
    "pool.ca_file",
    "log_dir",
)
STAGING_PORT_FILE = "staging.port"  # the staging server's port, kept for the next run
PID_FILE = "factory.pid"
SUBMIT_BACKOFF_MAX_S = 600.0


@dataclass
class EntryHealth:
    """What the factory learned about an entry's site, between cycles."""

    reconciled: bool = False
    last_ok: float = 0.0
    last_error: str = ""
    errors_in_row: int = 0
    backoff_s: float = 0.0
    backoff_until: float = 0.0
    submit_problem: str = ""
    retired: bool = False  # removed from the config: tracked until its glideins end
    reasons: dict[str, list[str]] = field(default_factory=dict)  # client -> why it got fewer than asked
    credential_failures: list[dict[str, Any]] = field(default_factory=list)
    #: its pilots failing validation now (factory/failures.py): count, by_type, newest
    failing: dict[str, Any] = field(default_factory=dict)

    def failed_submission(self, problem: str, now: float, cycle_s: float) -> None:
        self.submit_problem = problem
        self.backoff_s = min(SUBMIT_BACKOFF_MAX_S, max(cycle_s, self.backoff_s * 2))
        self.backoff_until = now + self.backoff_s

    def good_submission(self) -> None:
        self.submit_problem, self.backoff_s, self.backoff_until = "", 0.0, 0.0


def pool_client(config: FactoryConfig) -> Client:
    return service_client(config.pool, config.resolve, "factory", config.name)


class Factory(ServiceLoop):
    service_name = "factory"
    service_log = log
    restart_only = FACTORY_RESTART_ONLY

    def __init__(self, config: FactoryConfig, run: Runner = run_argv, client: Client | None = None) -> None:
        super().__init__(config)
        self.config = config
        self.state_dir = config.resolve(config.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(self.state_dir / "journal.sqlite")
        self.keys = KeyPair.load_or_create(self.state_dir / "factory.key")
        self.outputs = self.state_dir / "outputs"
        self.run = run
        self.client = client or pool_client(config)
        self.entries: dict[str, EntryConfig] = {}
        self.adapters: dict[str, SiteAdapter] = {}
        self.health: dict[str, EntryHealth] = {}
        self.checks: dict[str, tuple[StagedFile, ...]] = {}
        self.workers: dict[str, Future[None]] = {}
        self.executor = ThreadPoolExecutor(
            max_workers=max(1, config.status_concurrency), thread_name_prefix="entry"
        )
        self.lock = threading.RLock()
        self.requests: dict[tuple[str, str], Request] | None = None
        self.rejected: list[Rejected] = []
        self.pool_error = ""
        self.staging: StagingServer | None = None
        self.pilot: StagedFile | None = None
        self.advertised: dict[str, set[str]] = {
            protocol.AdType.GlideFactory.value: set(),
            protocol.AdType.GlideFactoryClient.value: set(),
        }
        self.totals: Counter[tuple[str, str]] = Counter()  # (entry, what) -> count since start
        self.draining = False
        #: client -> the user pool its last request named ("" : this factory's own pool)
        self.user_pools: dict[str, str] = {}

    # =========================================================================================
    # Start, reconfig, stop
    # =========================================================================================
    def start(self) -> None:
        staging = self.config.resolve(self.config.staging.dir)
        self.pilot = stage_pilot(staging)
        self.staging = staging_server(
            staging, self.config.staging.host, self.config.staging.port, self.metrics,
            self.state_dir / STAGING_PORT_FILE,
        )  # fmt: skip
        self.staging.start()
        self._apply(self.config)
        self._adopt_retired()
        (self.state_dir / PID_FILE).write_text(str(os.getpid()))
        log.info(
            "factory %s: %d entries, staging at %s",
            self.config.name,
            len(self.config.entries),
            self.staging_url,
        )
        self._event(
            "factory_started", {"factory": self.config.name, "entries": [e.name for e in self.config.entries]}
        )

    @property
    def staging_url(self) -> str:
        if self.config.staging.url:
            return self.config.staging.url
        return self.staging.url if self.staging else ""

    def _apply(self, config: FactoryConfig) -> None:
        """Take a (validated) config: new adapters for every entry, old entries kept while they have glideins."""
        staging = config.resolve(config.staging.dir)
        checks: dict[str, tuple[StagedFile, ...]] = {}
        for entry in config.entries:
            staged = []
            for check in [*config.custom_checks, *entry.custom_checks]:
                source = config.resolve(check.path)
                file = stage_file(staging, source)
                staged.append(StagedFile(file.name, file.sha256, check.type))
            checks[entry.name] = tuple(staged)
        with self.lock:
            old_names = set(self.entries)
            self.config = config
            self.checks = checks
            for entry in config.entries:
                self.entries[entry.name] = entry
                self.adapters[entry.name] = self._adapter(entry)
                health = self.health.setdefault(entry.name, EntryHealth())
                health.retired = False
                self.journal.set_meta(f"entry:{entry.name}", _snapshot(entry))
            for name in old_names - {e.name for e in config.entries}:
                self.health[name].retired = True
                log.info("entry %s left the config: its glideins are tracked until they end", name)

    def _adapter(self, entry: EntryConfig) -> SiteAdapter:
        work_dir = self.state_dir / "entries" / entry.name
        work_dir.mkdir(parents=True, exist_ok=True)
        return ADAPTERS[entry.gridtype](entry, self.config.name, work_dir, self.run)

    def _adopt_retired(self) -> None:
        """Entries no longer in the config whose glideins live on: rebuilt from the journal's snapshot."""
        configured = {e.name for e in self.config.entries}
        pending = {g.entry for g in self.journal.live()} | {g.entry for g in self.journal.uncleaned()}
        for name in sorted(pending - configured):
            snapshot = self.journal.get_meta(f"entry:{name}")
            if snapshot is None:
                log.error(
                    "glideins of entry %s are in the journal but its config is unknown: cannot track them",
                    name,
                )
                continue
            entry = build_entry(snapshot)
            self.entries[name] = entry
            self.adapters[name] = self._adapter(entry)
            self.health[name] = EntryHealth(retired=True)
            log.info("entry %s is not in the config: tracking its glideins until they end", name)

    def reconfig(self) -> bool:
        """Reload the config file; an invalid one is refused and the running config stays."""
        try:
            config = load_factory_config(self.config.path)
            if config.name != self.config.name:
                raise ConfigError(
                    self.config.path, None, "name", "the factory's name cannot change while it runs"
                )
            if config.resolve(config.state_dir) != self.state_dir:
                raise ConfigError(
                    self.config.path,
                    None,
                    "state_dir",
                    "the state directory cannot change while the factory runs",
                )
            self._apply(config)
        except (ConfigError, OSError) as exc:
            return self.reconfig_refused(exc)
        self.reconfig_taken(config)
        log.info("reconfig: %d entries", len(config.entries))
        self._event("factory_reconfig", {"factory": config.name, "entries": [e.name for e in config.entries]})
        self._write_status()
        return True

    def stop(self, deadline_s: float = 30.0) -> None:
        self.stopping = True
        self.wake.set()
        _, pending = wait(list(self.workers.values()), timeout=deadline_s)
        self.executor.shutdown(wait=False, cancel_futures=True)
        for ad_type, names in self.advertised.items():
            if names:
                try:
                    self.client.invalidate(ad_type, sorted(names))
                except (PoolUnreachable, ClientError) as exc:
                    log.warning("could not withdraw the factory's ads: %s", exc)
        if self.staging:
            self.staging.stop()
        if not pending:
            self.journal.close()
        (self.state_dir / PID_FILE).unlink(missing_ok=True)

    def drain(self, timeout: float = 60.0) -> int:
        """Remove every live glidein and wait until the sites confirm; returns how many are left."""
        from factory.tracking import cancel

        self.draining = True
        self.wait_idle(timeout)
        now = time.time()
        with self.lock:
            contexts = [
                EntryContext(self.config, self.entries[n], a, self.journal, self.outputs)
                for n, a in self.adapters.items()
            ]
        for ctx in contexts:
            live = [g for g in self.journal.live(ctx.name) if not g.remove_requested]
            if live:
                try:
                    cancel(ctx, live, "the factory is draining", now)
                except Exception as exc:  # an unreachable site: its glideins end by their lease
                    log.warning("%s: cannot remove glideins while draining: %s", ctx.name, exc)
        deadline = time.monotonic() + timeout
        while self.journal.live() and time.monotonic() < deadline:
            self.cycle()
            self.wait_idle(max(1.0, deadline - time.monotonic()))
            time.sleep(0.2)
        return len(self.journal.live())

    def cycle_seconds(self) -> float:
        return self.config.cycle_s

    # =========================================================================================
    # The cycle
    # =========================================================================================
    def cycle(self) -> None:
        began = time.monotonic()
        self._renew_token()
        self._read_requests()
        self._read_failures()
        with self.lock:
            names = sorted(self.entries)
        started: list[Future[None]] = []
        for name in names:
            running = self.workers.get(name)
            if running is not None and not running.done():
                self.health[name].last_error = "the previous cycle's step is still running (the site is slow)"
                continue
            future = self.executor.submit(self._entry_step, name)
            self.workers[name] = future
            started.append(future)
        wait(started, timeout=self.config.status_timeout_s)
        self._advertise()
        self._forget_retired()
        if self.cycles % 60 == 0:
            self.journal.prune(time.time() - self.config.keep_ended_days * 86400)
        self.cycles += 1
        self.last_cycle_s = time.monotonic() - began
        self._write_status()

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait for every entry's step to finish (tests and --once)."""
        wait(list(self.workers.values()), timeout=timeout)

    def _read_requests(self) -> None:
        try:
            ads = self.client.query_ads(
                protocol.AdType.GlideClient.value, f'{protocol.ATTR_REQ_FACTORY} == "{self.config.name}"'
            )
        except (PoolUnreachable, ClientError) as exc:
            # no data is not "no demand": keep nothing, submit nothing, remove nothing
            self.requests, self.pool_error = None, f"cannot read the requests: {exc}"
            log.warning("%s", self.pool_error)
            return
        self.pool_error = ""
        with self.lock:
            config = self.config
        requests, rejected = read_requests(ads, config, self.keys)
        known = {(r.name, r.why) for r in self.rejected}
        for item in rejected:
            if (item.name, item.why) not in known:
                log.warning("request %s refused: %s", item.name, item.why)
        self.requests, self.rejected = requests, rejected

    def _read_failures(self) -> None:
        """Pilots failing validation now, per entry (kept from the last cycle when the pool is silent)."""
        found = live_failures(self.client, self.config.name)
        if found is None:
            return
        with self.lock:
            for name, health in self.health.items():
                health.failing = as_status(found.get(name, []))

    def _entry_step(self, name: str) -> None:
        with self.lock:
            entry, adapter, health = self.entries[name], self.adapters[name], self.health[name]
            config = self.config
            checks = self.checks.get(name, ())
            requests = self.requests
        ctx = EntryContext(config, entry, adapter, self.journal, self.outputs)
        now = time.time()
        idle_lifetimes = {c: r.idle_lifetime_s for (e, c), r in (requests or {}).items() if e == name}
        try:
            reconcile(ctx, now, None if health.reconciled else config.unknown_glideins == "adopt")
            health.reconciled = True
            poll(ctx, now)
            finish(ctx)
            handle_held(ctx, now)
            expire_stale(ctx, now, idle_lifetimes)
            proxy, proxy_id = self._proxy(config)
            health.credential_failures = renew_credentials(ctx, proxy, proxy_id)
        except Exception as exc:  # the site cannot tell us now: act on nothing, try again next cycle
            health.last_error = f"{type(exc).__name__}: {exc}"
            health.errors_in_row += 1
            log.warning("%s: %s", name, health.last_error)
            expire_leases(ctx, now)
            self._count(ctx)
            return
        health.last_ok, health.last_error, health.errors_in_row = now, "", 0
        if not health.retired and self.pilot is not None:
            self._carry_out_plans(ctx, health, requests, checks, proxy_id, now)
        self._count(ctx)

    def _carry_out_plans(
        self, ctx: EntryContext, health: EntryHealth, requests: dict[tuple[str, str], Request] | None,
        checks: tuple[StagedFile, ...], proxy_id: str, now: float,
    ) -> None:  # fmt: skip
        entry, config = ctx.entry, ctx.config
        counts = self.journal.counts(entry.name)
        entry_counts = Counts()
        for states in counts.values():
            entry_counts = entry_counts.add(Counts.from_states(states))
        clients = {client for (_, client) in counts} | {c for (e, c) in (requests or {}) if e == entry.name}
        per_frontend: dict[str, Counts] = {}  # glideinWMS keys its per-frontend limits by frontend, not group
        for (_, client), states in counts.items():
            name = client.split(".", 1)[0]
            per_frontend[name] = per_frontend.get(name, Counts()).add(Counts.from_states(states))
        slots: dict[str, bool] | None = None  # glidein id -> its pilot runs a job (read when needed)
        staged = Staged(
            self.pilot,
            checks,
            self.staging_url,
            config.pool.pilot_url or self.client.url,
            self._pool_ca(config),
        )
        for client in sorted(clients):
            request = requests.get((entry.name, client)) if requests is not None else None
            frontend = request.frontend if request else client.split(".", 1)[0]
            held_back = self._held_back(entry, client, now, health)
            client_counts = Counts.from_states(counts.get((entry.name, client), {}))
            frontend_counts = per_frontend.setdefault(client.split(".", 1)[0], Counts())
            decided = plan(
                request,
                client_counts,
                frontend_counts,
                entry_counts,
                entry.limits,
                entry.limits_for(frontend, config.frontend_limits),
                entry.pacing,
                held_back,
            )
            health.reasons[client] = decided.reasons
            if request is not None:
                self.user_pools[client] = request.user_pool
            user_pool = self.user_pools.get(client, "")
            foreign = bool(user_pool) and user_pool != staged.pool_url
            if decided.removals:
                if decided.remove_running and slots is None and not foreign:
                    slots = self._busy_glideins(entry)
                # pilots in another user pool are not seen here: never take one for idle
                remove_excess(ctx, client, decided, now, None if foreign else slots)
            if decided.submit and request is not None:
                result = submit(ctx, request, decided.submit, for_request(staged, request), proxy_id)
                entry_counts.unsubmitted += result.submitted + result.in_doubt
                frontend_counts.unsubmitted += result.submitted + result.in_doubt
                if result.problem:
                    health.failed_submission(result.problem, now, config.cycle_s)
                    decided.reasons.append(result.problem)
                elif result.submitted:
                    health.good_submission()

    def _pool_ca(self, config: FactoryConfig) -> bytes:
        """The CA the pool's certificate is signed with, for the glideins (the factory's own, or pool.json's)."""
        path = config.resolve(config.pool.ca_file) if config.pool.ca_file else self.client.ca_file
        if not path or not self.client.url.startswith("https"):
            return b""
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            log.warning("cannot read the pool's CA %s for the glideins: %s", path, exc)
            return b""

    def _busy_glideins(self, entry: EntryConfig) -> dict[str, bool] | None:
        """Glidein id -> whether its pilot runs a job, from the slots in the pool (None: cannot tell)."""
        constraint = (
            f"{protocol.ATTR_GLIDEIN_FACTORY} == {protocol.quote(self.config.name)}"
            f" && {protocol.ATTR_GLIDEIN_ENTRY} == {protocol.quote(entry.name)}"
        )
        try:
            ads = self.client.query_ads(
                protocol.AdType.Slot.value, constraint, [protocol.ATTR_GLIDEIN_ID, "State"]
            )
        except (PoolUnreachable, ClientError) as exc:
            log.warning(
                "%s: cannot tell idle pilots from busy ones (%s): no running glidein removed", entry.name, exc
            )
            return None
        busy: dict[str, bool] = {}
        for texts in ads:
            glidein = str(protocol.ad_value(texts, protocol.ATTR_GLIDEIN_ID, "") or "")
            if glidein:
                busy[glidein] = busy.get(glidein, False) or protocol.ad_value(texts, "State", "") == "Claimed"
        return busy

    def _held_back(self, entry: EntryConfig, client: str, now: float, health: EntryHealth) -> str | None:
        """Why no glidein may be submitted now (downtime, disabled, back-off), or None."""
        if self.draining:
            return "the factory is draining"
        if not entry.enabled:
            return "the entry is disabled"
        downtime = self.journal.in_downtime(entry.name, client, now)
        if downtime is not None:
            target = "" if downtime.scope == "factory" else f" {downtime.target}"
            return f"{downtime.scope}{target} in downtime" + (
                f" ({downtime.comment})" if downtime.comment else ""
            )
        if health.backoff_until > now:
            return f"backing off for {health.backoff_until - now:.0f} s after: {health.submit_problem}"
        return None

    def _count(self, ctx: EntryContext) -> None:
        with self.lock:
            for what, n in ctx.happened.items():
                self.totals[(ctx.name, what)] += n
        interesting = {
            k: v
            for k, v in ctx.happened.items()
            if k != "credential_renewed" and not k.startswith(PILOT_SECONDS)
        }
        if interesting:
            self._event("factory_entry_activity", {"entry": ctx.name, "site": ctx.entry.site, **interesting})

    def _proxy(self, config: FactoryConfig) -> tuple[Path | None, str]:
        if not config.credential.proxy:
            return None, ""
        path = config.resolve(config.credential.proxy)
        try:
            return path, digest(path)[:16]
        except OSError:
            return None, ""

    def _forget_retired(self) -> None:
        with self.lock:
            for name, health in list(self.health.items()):
                if not health.retired or (name in self.workers and not self.workers[name].done()):
                    continue
                if self.journal.live(name) or any(g.entry == name for g in self.journal.uncleaned()):
                    continue
                log.info("entry %s: its last glidein ended; no longer tracked", name)
                for table in (self.entries, self.adapters, self.health, self.workers):
                    table.pop(name, None)

    def _renew_token(self) -> None:
        token_file = self.config.resolve(self.config.pool.token_file) if self.config.pool.token_file else None
        renew_token(self.client, token_file, "factory")

    # =========================================================================================
    # Advertising, status, metrics
    # =========================================================================================
    def _advertise(self) -> None:
        with self.lock:
            config = self.config
            health = dict(self.health)
            totals = Counter(self.totals)
        lifetime = config.advertise_lifetime_s or int(max(60, 5 * config.cycle_s))
        downtimes = {}
        for entry in config.entries:
            if not entry.enabled:  # not advertised: no need to look up its downtime
                continue
            downtime = self.journal.in_downtime(entry.name)
            if downtime:
                downtimes[entry.name] = downtime.comment or f"{downtime.scope} downtime"
        factory_ads, client_ads = cycle_ads(
            config, self.keys, self.journal.counts(), downtimes, health, self.requests or {}, totals, lifetime
        )
        for ad_type, ads in (
            (protocol.AdType.GlideFactory.value, factory_ads),
            (protocol.AdType.GlideFactoryClient.value, client_ads),
        ):
            names = {str(protocol.parse_literal(ad[protocol.ATTR_NAME])) for ad in ads}
            try:
                if ads:
                    self.client.advertise(ad_type, ads, lifetime)
                gone = self.advertised[ad_type] - names
                if gone:
                    self.client.invalidate(ad_type, sorted(gone))
                self.advertised[ad_type] = names
            except (PoolUnreachable, ClientError) as exc:
                self.pool_error = f"cannot advertise: {exc}"
                log.warning("%s", self.pool_error)

    def _event(self, kind: str, details: dict[str, Any]) -> None:
        try:
            self.client.record_event(kind, details)
        except (PoolUnreachable, ClientError) as exc:
            log.debug("event %s not recorded: %s", kind, exc)

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {
                "factory": self.config.name,
                "pid": os.getpid(),
                "config": self.config.path,
                **self.config_status(),
                "staging_url": self.staging_url,
                "cycles": self.cycles,
                "written": time.time(),
                "last_cycle_s": round(self.last_cycle_s, 3),
                "pool_error": self.pool_error,
                "requests": sorted(f"{e}/{c}" for e, c in (self.requests or {})),
                "rejected": [dataclasses.asdict(r) for r in self.rejected],
                "entries": {name: dataclasses.asdict(h) for name, h in self.health.items()},
            }

    def metrics(self) -> str:
        from factory.metrics import factory_metrics

        return factory_metrics(self)


# -- entry snapshots: how a restarted factory tracks glideins of an entry no longer configured -------
def _snapshot(entry: EntryConfig) -> dict[str, Any]:
    data = dataclasses.asdict(entry)
    data.pop("adapter_options", None)
    return data
