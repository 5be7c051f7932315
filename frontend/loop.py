"""The frontend process: each cycle, look at the queue, the pilots and the entries, and ask.

A cycle:

1. reads the entries (glidefactory ads) the factories offer this frontend;
2. widens the DESIRED_Sites of jobs that waited too long (overflow), before counting;
3. reads, in parallel and each with a bounded timeout: per group the idle jobs (grouped
   by the match attributes) and the running jobs (by the entry they run at), the pilots in
   the pool, the pilots that failed validation, and the factories' glidein counts;
4. per (group, entry): the request (policy.decide), with removal only after several
   cycles without demand; a group whose data is incomplete re-advertises its last requests
   and asks nothing new — missing data is never "no demand";
5. advertises one glideclient ad per (entry, group), with a short-lived pilot token sealed
   to the entry's factory, and one glideresource ad with the numbers, and records them for
   ``updraft frontend explain``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from frontend.config import ConfigError, FrontendConfig, GroupConfig, load_frontend_config
from frontend.downtime import DOWNTIMES_FILE, active_downtime
from frontend.glideclient import PilotRequest, glideclient_ad, glideresource_ad
from frontend.matching import entries_from_ads, from_their_factories, kinds_from_summary
from frontend.overflow import OverflowReport, overflow
from frontend.planner import GroupData, GroupRecord, Observation, Planner
from frontend.policy import Totals
from updraft.core import classads, payloads, protocol
from updraft.core.client import Client, ClientError, PoolUnreachable
from updraft.core.metrics import Exposition, MetricsServer
from updraft.service import (
    ServiceLoop,
    renew_token,
    service_client,
    write_json_atomically,
)

log = logging.getLogger("updraft.frontend")
#: settings a reload cannot apply: the metrics socket, the pool connection, the log
FRONTEND_RESTART_ONLY = (
    "metrics_host",
    "metrics_port",
    "pool.url",
    "pool.token_file",
    "pool.ca_file",
    "factory_pool.url",
    "factory_pool.token_file",
    "factory_pool.ca_file",
    "log_dir",
)
EXPLAIN_FILE = "explain.json"
PID_FILE = "frontend.pid"


class Frontend(ServiceLoop):
    service_name = "frontend"
    service_log = log
    restart_only = FRONTEND_RESTART_ONLY

    def __init__(self, config: FrontendConfig, client: Client | None = None) -> None:
        super().__init__(config)
        self.config = config
        self.state_dir = config.resolve(config.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.downtimes_path = downtimes_path(config)
        self.client = client or service_client(
            config.pool, config.resolve, "frontend", config.name, config.query_timeout_s
        )
        #: where the factories are: their own pool (the WMS collector), or the user pool itself
        self.factory_client = factory_pool_client(config, self.client)
        self.local = threading.local()
        self.executor = ThreadPoolExecutor(max_workers=6, thread_name_prefix="query")
        self.planner = Planner()
        self.tokens: dict[str, tuple[str, float]] = {}  # group -> (pilot token, when to mint a new one)
        self.last_ads: dict[str, list[dict[str, str]]] = {}  # group -> its glideclient ads last cycle
        self.advertised: dict[str, set[str]] = {
            protocol.AdType.GlideClient.value: set(),
            protocol.AdType.GlideResource.value: set(),
        }
        self.records: dict[str, GroupRecord] = {}
        self.totals: Counter[str] = Counter()
        self.forged_seen: dict[str, set[tuple[str, str]]] = {}  # forged factory ads said in the log
        self.metrics_server: MetricsServer | None = None
        self.validation_failing: Counter[tuple[str, str, str]] = Counter()  # (group, entry, type) -> pilots

    # -- service -----------------------------------------------------------------------------------
    def cycle_seconds(self) -> float:
        return self.config.cycle_s

    def start(self) -> None:
        (self.state_dir / PID_FILE).write_text(str(os.getpid()))
        if self.config.metrics_port >= 0 and self.metrics_server is None:
            self.metrics_server = MetricsServer(
                self.config.metrics_host, self.config.metrics_port, self.metrics
            )
            log.info("metrics at %s", self.metrics_server.start())
        log.info("frontend %s: %d group(s)", self.config.name, len(self.config.groups))

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        for ad_type, names in self.advertised.items():
            if names:
                try:
                    self.factory_client.invalidate(ad_type, sorted(names))
                except (PoolUnreachable, ClientError) as exc:
                    log.warning("could not withdraw the frontend's ads: %s", exc)
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.metrics_server is not None:
            self.metrics_server.stop()
            self.metrics_server = None
        (self.state_dir / PID_FILE).unlink(missing_ok=True)

    def reconfig(self) -> bool:
        try:
            config = load_frontend_config(self.config.path)
            if config.name != self.config.name:
                raise ConfigError(
                    self.config.path, None, "name", "the frontend's name cannot change while it runs"
                )
        except (ConfigError, OSError) as exc:
            return self.reconfig_refused(exc)
        self.reconfig_taken(config)
        self.config = config
        log.info("reconfig: %d group(s)", len(config.groups))
        self._write_status()
        return True

    def _client(self, factories: bool = False) -> Client:
        """One client per worker thread (a client keeps one connection and is not shared), for the
        user pool or for the factories' pool."""
        shared = self.factory_client if factories else self.client
        slot = "factory_client" if factories else "client"
        client: Client | None = getattr(self.local, slot, None)
        if client is None or client.token != shared.token:
            client = Client(shared.url, shared.token, shared.ca_file, self.config.query_timeout_s)
            setattr(self.local, slot, client)
        return client

    def user_pool_params(self) -> dict[str, str]:
        """What each request says of the user pool, when the factories do not read it themselves."""
        pool = self.config.pool
        if not pool.pilot_url and self.factory_client is self.client:
            return {}
        url = pool.pilot_url or self.client.url
        params = {protocol.PARAM_USER_POOL: url}
        ca_file = self.config.resolve(pool.ca_file) if pool.ca_file else self.client.ca_file
        if ca_file and url.startswith("https:"):
            params[protocol.PARAM_USER_POOL_CA] = Path(ca_file).read_text()
        return params

    # -- the cycle ---------------------------------------------------------------------------------
    def cycle(self, advertise: bool = True) -> dict[str, GroupRecord]:
        began = time.monotonic()
        renew_token(
            self.client,
            self.config.resolve(self.config.pool.token_file) if self.config.pool.token_file else None,
            "frontend",
        )
        if self.factory_client is not self.client:
            factory_pool = self.config.factory_pool
            renew_token(
                self.factory_client,
                self.config.resolve(factory_pool.token_file) if factory_pool.token_file else None,
                "frontend (factory pool)",
            )
        config = self.config
        groups = [g for g in config.groups if g.enabled]
        observation = Observation()
        try:
            factory_ads = self._believed(self.factory_client.query_ads(protocol.AdType.GlideFactory.value))
            observation.entries = entries_from_ads(factory_ads, config)
            observation.factories_seen = sorted(
                {str(protocol.ad_value(a, protocol.ATTR_FACTORY_NAME, "")) for a in factory_ads} - {""}
            )
        except (PoolUnreachable, ClientError) as exc:
            observation.errors["entries"] = f"cannot read the factories' entries: {exc}"
        reports: dict[str, OverflowReport] = {}
        if observation.entries is not None and advertise:
            sites = {e.site for e in observation.entries if e.site}
            for group in groups:
                if group.overflow is not None:
                    try:
                        reports[group.name] = overflow(self.client, group, sites)
                    except (PoolUnreachable, ClientError) as exc:
                        observation.errors[f"overflow:{group.name}"] = f"overflow skipped: {exc}"
        self._observe(observation, groups)
        down = active_downtime(self.downtimes_path, time.time())
        records = self.planner.plan(
            observation, groups, self.config.limits, reports, self.config.ignore_down_entries,
            f"the frontend is in downtime ({down.comment or 'no comment'})" if down else "",
        )  # fmt: skip
        self.totals["overflowed"] += sum(sum(r.widened.values()) for r in reports.values())
        if advertise:
            self._advertise(records, observation, groups)
            self.records = records
            self.cycles += 1
            self.last_cycle_s = time.monotonic() - began
            write_json_atomically(self.state_dir / EXPLAIN_FILE, explain_data(records, time.time()))
            self._write_status()
        return records

    def _believed(
        self, ads: list[dict[str, str]], factory_attr: str = protocol.ATTR_FACTORY_NAME
    ) -> list[dict[str, str]]:
        """The ads their factory wrote; each forged one is said in the log once (and in /metrics)."""
        kept, refused = from_their_factories(ads, factory_attr)
        seen = self.forged_seen.get(factory_attr, set())
        for name, why in refused:
            if (name, why) not in seen:
                log.warning("ignoring factory ad %s: %s", name, why)
        self.forged_seen[factory_attr] = set(refused)
        return kept

    def _observe(self, observation: Observation, groups: list[GroupConfig]) -> None:
        """Every query in parallel, each bounded by query_timeout_s; a failed one leaves None and an error."""
        fe = protocol.quote(self.config.name)
        jobs: dict[str, tuple[Future[Any], Future[Any]]] = {}
        for group in groups:
            attrs = [*group.job_refs, "RequestCpus"]
            idle = self.executor.submit(
                self._summary, f"({group.job_constraint}) && JobStatus == 1", attrs, group.old_idle_s
            )
            running = self.executor.submit(
                self._summary,
                f"({group.job_constraint}) && JobStatus == 2",
                [protocol.ATTR_MATCH_FACTORY, protocol.ATTR_MATCH_ENTRY, "RequestCpus"],
                0,
            )
            jobs[group.name] = (idle, running)
        glideins = self.executor.submit(self._ads, protocol.AdType.GlideFactoryClient.value, "", None, True)
        slots = self.executor.submit(  # every slot: the pool-wide limits count other frontends' too
            self._ads, protocol.AdType.Slot.value, "true",
            [protocol.ATTR_GLIDEIN_CLIENT, protocol.ATTR_GLIDEIN_ENTRY, protocol.ATTR_GLIDEIN_FACTORY, protocol.ATTR_GLIDEIN_CLIENT_GROUP, "State", protocol.ATTR_PILOT_STATE],
        )  # fmt: skip
        failures = self.executor.submit(
            self._ads, protocol.AdType.PilotFailure.value, f"{protocol.ATTR_GLIDEIN_CLIENT} == {fe}",
            [protocol.ATTR_GLIDEIN_ENTRY, protocol.ATTR_GLIDEIN_FACTORY, protocol.ATTR_GLIDEIN_CLIENT_GROUP, "FailureType"],
        )  # fmt: skip
        deadline = time.monotonic() + self.config.query_timeout_s + 5
        entry_cpus = {e.name: e.cpus for e in observation.entries or []}
        prefix = self.config.name + "."
        ads = self._wait(glideins, deadline, observation, "glideins")
        if ads is not None:
            observation.glideins = {}
            for texts in self._believed(ads, protocol.ATTR_REQ_FACTORY):
                client_name = str(protocol.ad_value(texts, protocol.ATTR_CLIENT_NAME, ""))
                if not client_name.startswith(prefix):
                    continue
                entry = f"{protocol.ad_value(texts, protocol.ATTR_REQ_ENTRY, '')}@{protocol.ad_value(texts, protocol.ATTR_REQ_FACTORY, '')}"
                observation.glideins[(entry, client_name[len(prefix) :])] = {
                    key[len(protocol.ATTR_MONITOR_PREFIX) :]: int(protocol.ad_value(texts, key, 0) or 0)
                    for key in texts
                    if key.startswith(protocol.ATTR_MONITOR_PREFIX + "Status")
                }
        slot_ads, failure_ads = (
            self._wait(slots, deadline, observation, "pilots"),
            self._wait(failures, deadline, observation, "failures"),
        )
        if slot_ads is not None and failure_ads is not None:
            observation.pilots = {}
            observation.pool_slots = Totals()
            for texts in slot_ads:
                state = str(protocol.ad_value(texts, protocol.ATTR_PILOT_STATE, ""))
                busy = protocol.ad_value(texts, "State", "") == "Claimed"
                kind = "busy" if busy else ("idle" if state in ("idle", "") else "other")
                observation.pool_slots.slots += 1
                observation.pool_slots.idle_slots += kind == "idle"
                if protocol.ad_value(texts, protocol.ATTR_GLIDEIN_CLIENT, "") != self.config.name:
                    continue
                observation.pilots.setdefault(_pilot_key(texts), Counter())[kind] += 1
            failing: Counter[tuple[str, str, str]] = Counter()
            for texts in failure_ads:
                key = _pilot_key(texts)
                observation.pilots.setdefault(key, Counter())["failed"] += 1
                failing[(key[1], key[0], str(protocol.ad_value(texts, "FailureType", "unknown")))] += 1
            self.validation_failing = failing
        for group in groups:
            idle, running = jobs[group.name]
            data = GroupData()
            summary = self._wait(idle, deadline, observation, f"idle jobs of {group.name}")
            if summary is not None:
                data.kinds = kinds_from_summary(summary.rows, group.job_refs)
            summary = self._wait(running, deadline, observation, f"running jobs of {group.name}")
            if summary is not None:
                data.running = {}
                for row in summary.rows:
                    factory, entry = _literal(row.key[0]), _literal(row.key[1])
                    name = f"{entry}@{factory}"
                    pilot_cpus = entry_cpus.get(name, 0)
                    share = (classads.int_of(row.key[2], 1) / pilot_cpus) if pilot_cpus else 1.0
                    data.running[name] = data.running.get(name, 0.0) + row.running * share
            observation.groups[group.name] = data

    def _summary(self, constraint: str, attrs: list[str], old_idle_s: float) -> payloads.SummaryResult:
        return self._client().summary(payloads.SummaryRequest(constraint, attrs, old_idle_s))

    def _ads(
        self, ad_type: str, constraint: str, projection: list[str] | None = None, factories: bool = False
    ) -> list[dict[str, str]]:
        return self._client(factories).query_ads(ad_type, constraint, projection or [])

    @staticmethod
    def _wait(future: Future[Any], deadline: float, observation: Observation, what: str) -> Any:
        try:
            return future.result(timeout=max(0.1, deadline - time.monotonic()))
        except FutureTimeout:
            observation.errors[what] = "no answer within the query timeout"
        except (PoolUnreachable, ClientError) as exc:
            observation.errors[what] = str(exc)
        return None

    # -- advertising ---------------------------------------------------------------------------------
    def _token(self, group: GroupConfig) -> str:
        token, renew_at = self.tokens.get(group.name, ("", 0.0))
        if token and time.time() < renew_at:
            return token
        settings = group.pilot_tokens
        result = self.client.mint_token(
            payloads.TokenRequest(
                f"{self.config.name}/{group.name}", ["pilot"], settings.lifetime_s, {"group": group.name}
            )
        )
        renew_after = settings.renew_after_s or settings.lifetime_s / 2
        self.tokens[group.name] = (result.token, time.time() + renew_after)
        return result.token

    def _advertise(
        self, records: dict[str, GroupRecord], observation: Observation, groups: list[GroupConfig]
    ) -> None:
        lifetime = self.config.advertise_lifetime_s or int(max(60, 5 * self.config.cycle_s))
        clients: list[dict[str, str]] = []
        resources: list[dict[str, str]] = []
        entries = {e.name: e for e in observation.entries or []}
        try:
            user_pool = self.user_pool_params()
        except OSError as exc:
            log.warning("cannot read the user pool's CA for the requests: %s", exc)
            observation.errors["user pool CA"] = str(exc)
            return
        for group in groups:
            record = records[group.name]
            if not record.complete:
                held = [
                    {**ad, protocol.ATTR_REQ_REMOVE_EXCESS: protocol.literal("NO")}
                    for ad in self.last_ads.get(group.name, [])
                ]
                clients += held
                log.warning(
                    "group %s: incomplete data (%s): re-advertising its last %d request(s), asking nothing new",
                    group.name,
                    "; ".join(dict.fromkeys(record.errors.values())),
                    len(held),
                )
                continue
            try:
                token = self._token(group)
            except (PoolUnreachable, ClientError) as exc:
                record.errors["token"] = f"cannot mint a pilot token: {exc}"
                clients += self.last_ads.get(group.name, [])
                continue
            params = {**group.params, **user_pool}
            if group.start_expr.strip().lower() != "true":
                params[protocol.ATTR_GLIDEIN_START_EXPR] = group.start_expr
            group_ads = []
            for name, entry_record in record.entries.items():
                decision = entry_record.decision
                request = PilotRequest(
                    decision.idle,
                    decision.max_run,
                    decision.remove,
                    decision.margin,
                    group.idle_lifetime_s,
                    params,
                    decision.remove_busy,
                )
                group_ads.append(
                    glideclient_ad(entries[name].texts, self.config.name, group.name, request, token)
                )
                resources.append(
                    glideresource_ad(
                        entries[name].texts, self.config.name, group.name, entry_record.counts, decision
                    )
                )
            self.last_ads[group.name] = group_ads
            clients += group_ads
            self.totals["requested_idle"] += sum(r.decision.idle for r in record.entries.values())
        for ad_type, ads in (
            (protocol.AdType.GlideClient.value, clients),
            (protocol.AdType.GlideResource.value, resources),
        ):
            names = {str(protocol.parse_literal(ad[protocol.ATTR_NAME])) for ad in ads}
            try:
                for start in range(0, len(ads), 5000):
                    self.factory_client.advertise(ad_type, ads[start : start + 5000], lifetime)
                gone = self.advertised[ad_type] - names
                if gone:
                    self.factory_client.invalidate(ad_type, sorted(gone))
                self.advertised[ad_type] = names
            except (PoolUnreachable, ClientError) as exc:
                log.warning("cannot advertise %s ads: %s", ad_type, exc)
                observation.errors[f"advertise {ad_type}"] = str(exc)

    # -- status and metrics --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "frontend": self.config.name,
            "pid": os.getpid(),
            "config": self.config.path,
            **self.config_status(),
            "cycles": self.cycles,
            "last_cycle_s": round(self.last_cycle_s, 3),
            "metrics_url": self.metrics_server.url if self.metrics_server else "",
            "written": time.time(),
            "groups": {
                name: {"complete": r.complete, "errors": r.errors} for name, r in self.records.items()
            },
        }

    def metrics(self) -> str:
        out = Exposition()
        requested, running, idle_jobs, idle_pilots, glideins, limits = [], [], [], [], [], []
        for group, record in self.records.items():
            for name, entry in record.entries.items():
                labels = {"group": group, "entry": name, "site": entry.site}
                requested.append((labels, entry.decision.idle))
                running.append((labels, entry.decision.max_run))
                idle_jobs.append((labels, round(entry.counts.idle_jobs, 3)))
                idle_pilots.append((labels, entry.counts.idle_slots))
                glideins.append((labels, entry.counts.glideins_queued))
                limits += [
                    ({**labels, "limit": k}, 1) for k in (*entry.decision.limits, *entry.decision.curbs)
                ]
        out.gauge(
            "updraft_frontend_requested_idle", "Idle glideins asked for, per group and entry.", requested
        )
        out.gauge("updraft_frontend_max_running", "Running glideins allowed, per group and entry.", running)
        out.gauge(
            "updraft_frontend_matching_idle_jobs", "Idle jobs matching each entry (proportional).", idle_jobs
        )
        out.gauge(
            "updraft_frontend_idle_slots", "Idle slots of the group registered at the entry.", idle_pilots
        )
        out.gauge(
            "updraft_frontend_glideins_queued",
            "The factory's glideins queued at the site for the group.",
            glideins,
        )
        out.gauge(
            "updraft_frontend_limit_triggered", "1 for each limit or curb that fired this cycle.", limits
        )
        out.gauge(
            "updraft_frontend_validation_failing",
            "Our pilots failing validation now (their pilotfailure ads), by group, entry and failure type.",
            [
                ({"group": g, "entry": e, "type": t}, n)
                for (g, e, t), n in sorted(self.validation_failing.items())
            ],
        )
        out.counter(
            "updraft_frontend_overflowed_jobs_total", "Jobs widened to overflow sites since start.",
            self.totals["overflowed"],
        )  # fmt: skip
        out.gauge(
            "updraft_frontend_data_complete",
            "1 if every query of the group answered.",
            [({"group": g}, r.complete) for g, r in self.records.items()],
        )
        out.gauge(
            "updraft_frontend_cycle_seconds", "Duration of the last cycle.", round(self.last_cycle_s, 3)
        )
        out.counter("updraft_frontend_cycles_total", "Cycles since start.", self.cycles)
        out.gauge(
            "updraft_frontend_forged_factory_ads",
            "Factory ads left out at the last look: written by another identity than the factory they name.",
            sum(len(refused) for refused in self.forged_seen.values()),
        )
        return out.render()


def _pilot_key(texts: dict[str, str]) -> tuple[str, str]:
    """(entry@factory, group) of a pilot's slot or failure ad."""
    entry = f"{protocol.ad_value(texts, protocol.ATTR_GLIDEIN_ENTRY, '')}@{protocol.ad_value(texts, protocol.ATTR_GLIDEIN_FACTORY, '')}"
    return entry, str(protocol.ad_value(texts, protocol.ATTR_GLIDEIN_CLIENT_GROUP, ""))


def _literal(text: str | None) -> Any:
    if text is None:
        return ""
    try:
        return protocol.parse_literal(text)
    except ValueError:
        return text


def factory_pool_client(config: FrontendConfig, user_pool: Client) -> Client:
    """A client of the factories' pool (``factory_pool``), or the user pool's own when none is set."""
    if not config.factory_pool.url:
        return user_pool
    return service_client(
        config.factory_pool, config.resolve, "frontend", config.name, config.query_timeout_s
    )


def explain_data(records: dict[str, GroupRecord], now: float) -> dict[str, Any]:
    return {"time": now, "groups": {name: dataclasses.asdict(record) for name, record in records.items()}}


def downtimes_path(config: FrontendConfig) -> Path:
    """Where the frontend's own downtimes are kept (``downtimes_file``, or the state directory)."""
    if config.downtimes_file:
        return config.resolve(config.downtimes_file)
    return config.resolve(config.state_dir) / DOWNTIMES_FILE


def load_explain(state_dir: Path) -> dict[str, Any]:
    from updraft.service import read_json

    return read_json(state_dir / EXPLAIN_FILE)
