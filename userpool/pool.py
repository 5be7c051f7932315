"""The pool: schedd, collector and negotiator in one process, behind the HTTP API.

Everything here runs on the event loop thread, so state needs no locks; the only
other thread is the store's writer.  A change becomes visible to the caller only
after ``commit`` returns, i.e. after it is on disk; events are published and
waiting pilots woken from the commit callback, so they never see a change that
could still be lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from updraft.core.errors import BadRequest, Forbidden, InsufficientStorage, NotFound, TooLarge
from updraft.core.payloads import (
    ActResult,
    EditRequest,
    Event,
    EventRequest,
    RevokeRequest,
    SubmitRequest,
    SubmitResult,
)
from updraft.core.protocol import Scope, parse_literal
from userpool.actions import JobActions
from userpool.asowner import owner_writer
from userpool.collector import Collector
from userpool.config import PoolConfig
from userpool.dag.launcher import EngineLauncher
from userpool.dagman import DagSupervisor
from userpool.delivery import Delivery
from userpool.diskspace import DiskFull, DiskGuard
from userpool.events import ComponentBudget, EventLog, Tx
from userpool.history import History
from userpool.home import StateLock
from userpool.identities import IdentityMap
from userpool.jobs import CLAIMED
from userpool.leases import Leases
from userpool.matching import MatchWorker
from userpool.monitor import Monitor
from userpool.notifications import Notifications
from userpool.outbox import OutputOutbox
from userpool.pilotdesk import PilotDesk
from userpool.queue import Job
from userpool.sandbox import BlobStore, Spool
from userpool.schedd import Schedd
from userpool.store import INSERT_REVOCATION, LIVE_REVOCATIONS, Store, StoreUnreadable
from userpool.tokens import REVOKED_ALWAYS, Identity, TokenSigner
from userpool.userlog import JobAds, UserLogs
from userpool.waiting import WaitingPolls

log = logging.getLogger("updraft.pool")
USERLOG_CURSOR = "userlog.cursor"  # the last event written to the users' logs
USERLOG_BACKLOG = 1_000_000  # events replayed into the users' logs after a restart, at most
SUBMIT_EVENT_WAIT_S = 2.0  # condor_submit answers once its submit event is in the user log, at most this late


@dataclass
class PoolStats:
    started: float = field(default_factory=time.time)
    matches: int = 0
    polls: int = 0
    submits: int = 0
    commits: int = 0


class Pool:
    def __init__(self, config: PoolConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.store = Store(config.database, config.synchronous, on_fatal=self._fatal, on_full=self._disk_full)
        self.disk = DiskGuard(config.state_dir, config.disk_reserve_mb, config.min_free_disk_mb)
        self.stats = PoolStats()
        self.stopping = False
        self.submit_host = "<127.0.0.1:0>"  # the server says where it listens: the user logs name it
        self._installing: dict[int, Any] = {}  # clusters committed, not yet in the queue
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.fatal_error: BaseException | None = None

    # =========================================================================================
    # Lifecycle
    # =========================================================================================
    def open(self) -> None:
        # forked first, while this process has one thread and holds nothing (no lock, no database, no key)
        self.writer = owner_writer()
        self.launcher = EngineLauncher()
        self.lock = StateLock(self.config.state_dir)
        try:
            self.lock.acquire()  # before anything is read: a second pool on this home stops here
        except BaseException:
            self.launcher.close()
            self.writer.close()
            raise
        try:
            self._open()
        except BaseException:
            self.store.close()
            self.launcher.close()
            self.writer.close()
            self.lock.release()
            raise

    def _open(self) -> None:
        self.disk.check()  # a pool started on a full disk starts degraded, and says so
        if self.disk.degraded:
            self.disk.release()  # room to open the queue and write pool.json
        self.store.open()
        budget = ComponentBudget(self.config.max_component_events, self.config.max_component_events_mb << 20)
        self.events = EventLog(self.store, self.clock, budget)
        self.schedd = Schedd(self.config, self.store, self.events, self.clock)
        try:
            self.schedd.load()
        except sqlite3.DatabaseError as exc:
            raise StoreUnreadable(self.config.database, exc) from None
        self.actions = JobActions(self.schedd)
        self.leases = Leases(self.schedd, self.actions)
        self.collector = Collector(
            self.clock, self.config.max_expression_terms, self.config.max_expression_depth,
            self.config.max_ads_per_author, self.config.max_ad_mb_per_author,
        )  # fmt: skip
        self.tokens = TokenSigner.from_home(self.config.signing_key, self.config.max_token_lifetime_s)
        for key, revoked in self.store.read(LIVE_REVOCATIONS, (self.clock(),)):
            self.tokens.revoke(key if ":" in key else f"jti:{key}", revoked or REVOKED_ALWAYS)
        self.blobs = BlobStore(self.config.blob_dir, self.config.max_input_file_mb << 20)
        self.spool = Spool(
            self.config.spool_dir, self.config.max_output_sandbox_mb << 20, self.config.max_output_files
        )
        self.identities = IdentityMap(self.config.identity_map_path)
        self.delivery = Delivery(self.config.home, self.spool, self.identities, self.writer)
        self.history = History(self.store, self.config.history_max_jobs)
        ads = JobAds(self.schedd.queue, self.history, self._installing)
        self.userlogs = UserLogs(
            self.config.home, self.config.home / USERLOG_CURSOR, self.identities, self.writer,
            ads.live, ads.from_history, lambda: self.submit_host,
        )  # fmt: skip
        self.userlogs.begin_at(self.events.next_id - 1)
        self.events.listeners.append(self.userlogs.published)
        self.notifications = Notifications(self.config, ads, self.events)
        self.monitor = Monitor(
            self.schedd.queue, self.collector, self.schedd.claims, self.events,
            self.config.monitor_interval_s, self.config.monitor.show_reasons, clock=self.clock,
            priorities=self.schedd.accountant.priorities, idle_by_submitter=self.schedd.index.idle_by_submitter,
        )  # fmt: skip
        self.events.listeners.append(self.monitor.outcomes.published)
        self.matcher = MatchWorker(self.schedd.negotiator)
        self.waiting = WaitingPolls(self.schedd.negotiator, self.matcher)
        self.outbox = OutputOutbox(
            self.store, self.events, self.history, self.spool, self.delivery, self.commit
        )
        self.schedd.on_idle = self.waiting.jobs_became_idle
        self.schedd.on_claim_news = self.waiting.claim_news
        self.schedd.on_completed = self.outbox.completed
        self.schedd.on_completing = self.outbox.expect
        self.userlogs.before_terminated = self.outbox.copied
        self.pilots = PilotDesk(self)
        self.dags = DagSupervisor(self, self.launcher)
        self.dags.load()
        self.schedd.check_node = self.dags.check_submission
        self.schedd.on_installed = self.dags.installed
        self.schedd.on_dag_change = self.dags.wake
        gc.freeze()  # the loaded queue lives long; see submit()

    async def start_background(self) -> None:
        self._loop = self.waiting.loop = self.outbox.loop = asyncio.get_running_loop()
        self.outbox.resume()
        self.userlogs.start(self.events.after(self.userlogs.cursor.value, USERLOG_BACKLOG))
        self.notifications.start()
        every = [
            (self.config.lease_check_interval_s, self._check_leases),
            (self.config.periodic_interval_s, self._periodic_policy),
            (self.config.collector_sweep_interval_s, self._sweep_collector),
            (self.config.accountant_interval_s, self._update_accountant),
            (3600.0, self._housekeeping),
            (self.config.disk_check_interval_s, self.disk.check),
            (self.config.monitor_interval_s, self.monitor.sample),
        ]
        for interval, work in every:
            self._tasks.append(asyncio.create_task(self._every(interval, work), name=work.__name__))
        self._tasks.append(asyncio.create_task(self.dags.run(), name="dags"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        self.release_polls()
        self.dags.stop_all()
        self.launcher.close()
        self.matcher.close()
        self.userlogs.close()
        self.notifications.close()
        self.store.close()
        self.writer.close()
        self.lock.release()

    def release_polls(self) -> None:
        """Answer every waiting long poll now (empty): the server is stopping and waits for them."""
        self.stopping = True
        self.waiting.release_all()

    async def _every(self, interval: float, work: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                result = work()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("background work %s failed", getattr(work, "__name__", work))

    def _disk_full(self) -> bool:
        """The store found the disk full (its writer thread): release the reserve, go degraded."""
        return self.disk.release()

    def refuse_new_work(self) -> None:
        """Submissions and uploads wait for disk space; what runs goes on (507)."""
        if self.disk.degraded:
            raise InsufficientStorage(self.disk.refusal())

    def _fatal(self, exc: BaseException) -> None:
        """The store could not commit what memory already holds: stop, restart from disk."""
        self.fatal_error = exc
        log.critical("stopping: the queue on disk and in memory disagree after: %s", exc)
        os._exit(70)

    # =========================================================================================
    # Committing
    # =========================================================================================
    async def commit(self, tx: Tx) -> None:
        """Write ``tx`` and wait until it is durable; then publish and run its callbacks."""
        future = self.store.write(self.events.seal(tx).batch)  # ids in the order the writer commits
        loop = asyncio.get_running_loop()

        def committed(done: concurrent.futures.Future[None]) -> None:
            if done.exception() is None:
                loop.call_soon_threadsafe(self._after_commit, tx)

        future.add_done_callback(committed)
        await asyncio.wrap_future(future)
        self.stats.commits += 1

    def _after_commit(self, tx: Tx) -> None:
        if tx.events:
            self.events.publish(tx.events)
        for callback in tx.after_commit:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed")

    # =========================================================================================
    # Users
    # =========================================================================================
    async def reserve(self, identity: Identity) -> int:
        self.refuse_new_work()
        cluster_id, batch = self.schedd.reserve(identity)
        batch.refusable = True  # an id nobody was told of yet
        try:
            await self.commit(Tx(batch=batch))
        except DiskFull:
            self.schedd.reservations.pop(cluster_id, None)
            raise InsufficientStorage(self.disk.refusal()) from None
        return cluster_id

    async def submit(self, identity: Identity, request: SubmitRequest) -> SubmitResult:
        self.refuse_new_work()
        cluster, tx = self.schedd.prepare_submit(identity, request, self.blobs.has)
        if cluster.cluster_id in self.schedd.queue.clusters:
            raise BadRequest(f"cluster {cluster.cluster_id} already exists")
        refusals = await asyncio.to_thread(
            self.delivery.initialdir_refusals, identity.subject, cluster.initial_directories()
        )
        if refusals:
            more = f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""
            raise Forbidden(refusals[0] + more)
        tx.batch.refusable = True  # nothing is in memory until install()
        self._installing[cluster.cluster_id] = cluster  # its submit event may be published first
        try:
            await self.commit(tx)
        except DiskFull:
            raise InsufficientStorage(self.disk.refusal()) from None
        finally:
            self._installing.pop(cluster.cluster_id, None)
        self.stats.submits += 1
        result = self.schedd.install(cluster)
        if result.count >= 10000:
            gc.freeze()  # long-lived: keep the cyclic collector from walking them on every pass
        submitted = [event.id for event in tx.events if event.type == "submit"]
        if submitted:  # bounded: a user's slow file system delays the answer, never the pool
            await self.userlogs.carried_out(max(submitted), SUBMIT_EVENT_WAIT_S)
        return result

    async def edit(self, identity: Identity, request: EditRequest) -> ActResult:
        """condor_qedit; a new Iwd is held to the rules of a submitted one."""
        iwd = next((text for name, text in request.attrs.items() if name.lower() == "iwd"), None)
        if iwd is not None:
            try:
                value = parse_literal(iwd)
            except ValueError:
                value = None
            if not isinstance(value, str):
                raise BadRequest("Iwd must be a string (the job's initial directory)")
            jobs, _missing = self.schedd.queue.by_ids(request.ids)
            for owner in sorted(
                {job.owner for job in jobs}
            ):  # the owners' accounts write there, not the editor's
                refusals = await asyncio.to_thread(self.delivery.initialdir_refusals, owner, [value])
                if refusals:
                    raise Forbidden(refusals[0])
        result, tx = self.actions.edit(identity, request)
        await self.commit(tx)
        return result

    async def revoke(self, identity: Identity, request: RevokeRequest) -> list[str]:
        """Admins revoke anything; a frontend revokes the tokens bound to itself (its pilots)."""
        keys = []
        if request.token_id:
            keys.append(f"jti:{request.token_id}")
        if request.subject:
            keys.append(f"sub:{request.subject}")
        if request.binding:
            if "=" not in request.binding:
                raise BadRequest("binding must be key=value, e.g. frontend=fe1")
            keys.append(f"bind:{request.binding}")
        if not keys:
            raise BadRequest("say what to revoke: token_id, subject or binding")
        if not identity.is_admin:
            own = f"bind:frontend={identity.subject}"
            if not identity.has(Scope.FRONTEND) or keys != [own]:
                raise Forbidden(f"{identity.name} may revoke only the tokens bound to itself ({own[5:]})")
        now = self.clock()
        # every token it names was issued by now and, capped at max_token_lifetime_s, is dead by
        # then: a revocation kept that long (or longer, if asked) outlives what it revokes
        until = max(request.until, now + self.config.max_token_lifetime_s)
        tx = Tx()
        tx.batch.add_many(
            INSERT_REVOCATION,
            [(k, until, now) for k in keys],
        )
        for key in keys:
            self.events.record(tx, identity.name, 0, -1, "token_revoked", {"what": key})
        await self.commit(tx)
        for key in keys:
            self.tokens.revoke(key, now)
        return keys

    async def record_event(self, identity: Identity, request: EventRequest) -> Event:
        """A component's own event (a pilot that failed validation, a factory downtime...)."""
        allowed = [
            scope.value for scope in (Scope.PILOT, Scope.FACTORY, Scope.FRONTEND) if identity.has(scope)
        ]
        if not allowed:
            raise Forbidden(f"{identity.name} may not record events")
        if not any(request.type.startswith(prefix + "_") for prefix in allowed):
            raise BadRequest(
                f"event type {request.type!r} must start with one of: {', '.join(p + '_' for p in allowed)}"
            )
        word = request.type.replace("_", "")
        if len(request.type) > 64 or not (word.isascii() and word.isalnum()):
            raise BadRequest("event type must be a short word of letters, digits and underscores")
        details = dict(request.details)
        size = len(orjson.dumps(details))
        if size > self.config.max_event_details_kb << 10:  # one event cannot take the budget's room
            raise TooLarge(
                f"event details of {size} bytes; at most {self.config.max_event_details_kb} KiB"
                " (max_event_details_kb)"
            )
        tx = Tx()
        self.events.record(tx, identity.name, 0, -1, request.type, details)
        await self.commit(tx)
        return tx.events[0]  # as numbered at the commit

    # =========================================================================================
    # Background work
    # =========================================================================================
    async def _check_leases(self) -> None:
        tx = self.leases.expire_leases()
        if tx.batch:
            await self.commit(tx)

    async def _periodic_policy(self) -> None:
        tx = self.actions.periodic()
        if tx.batch:
            await self.commit(tx)

    def _sweep_collector(self) -> None:
        self.collector.expire()

    async def _update_accountant(self) -> None:
        batch = self.schedd.accountant.update()
        if batch:
            await self.commit(Tx(batch=batch))

    async def _housekeeping(self) -> None:
        batch = self.history.prune()
        if batch:
            await self.commit(Tx(batch=batch))
        referenced = {
            f.digest
            for cluster in self.schedd.queue.clusters.values()
            for files in [cluster.inputs, *cluster.proc_inputs.values()]
            for f in files
        }
        await asyncio.to_thread(self.blobs.collect, referenced)
        self.schedd.index.maybe_compact()

    # =========================================================================================
    # Views
    # =========================================================================================
    def owner_of(self, cluster_id: int, proc_id: int) -> str:
        """The owner of a job in the queue or in the history."""
        job = self.schedd.queue.get(cluster_id, proc_id)
        if job is not None:
            return job.owner
        owner = self.history.owner_of(cluster_id, proc_id)
        if owner is None:
            raise NotFound(f"job {cluster_id}.{proc_id} is neither in the queue nor in history")
        return owner

    def job_or_404(self, job_id: str) -> Job:
        return self.schedd.job_or_404(job_id)

    def running_claims(self) -> int:
        return sum(1 for job in self.schedd.queue.jobs() if job.status in CLAIMED)

    def metrics(self) -> str:
        from userpool.poolmetrics import pool_metrics

        return pool_metrics(self)

    def not_found(self, what: str) -> NotFound:
        return NotFound(what)
