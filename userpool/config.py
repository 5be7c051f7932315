"""The pool's knobs: one typed model, each with its unit and the HTCondor knob it mirrors.

Read from ``$UPDRAFT_HOME/pool.yaml`` when present, by the loader every Updraft config file
goes through (updraft.core.configfile: unknown keys refused with file:line and a suggestion,
types checked); command-line options override it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from updraft.core import protocol
from updraft.core.configfile import ConfigError, load_model
from updraft.core.layout import config_dir, system_wide


@dataclass
class MonitorConfig:
    """Who may look at the aggregates (``monitor:`` in pool.yaml)."""

    #: the monitor, its JSON and event stream, /metrics and the API document need no token (like
    #: HTCondor's READ level); false: any valid token
    public: bool = True
    #: owners' free-text reasons (hold, remove) in the monitor's events; off: only their codes
    show_reasons: bool = False


@dataclass
class MailConfig:
    """Job notifications by mail (``mail:`` in pool.yaml): HTCondor's notification/notify_user."""

    #: the SMTP relay; empty: no mail is sent (notification stays in the job's ad)
    smtp_host: str = ""
    smtp_port: int = 25
    #: STARTTLS before anything else is said (verified against the system's CAs, or ca_file's)
    starttls: bool = False
    ca_file: str = ""
    #: the From address (default: condor@ the pool's host name)
    from_address: str = ""
    #: a relay that asks for a login: the user, and a file (relative to the home) with the password
    username: str = ""
    password_file: str = ""
    #: HTCondor's EMAIL_DOMAIN: an owner without notify_user is mailed at this domain
    email_domain: str = ""
    #: the administrator's address named at the end of each message
    admin: str = ""
    subject_prefix: str = "[HTCondor]"
    timeout_s: float = 30.0


@dataclass
class WebhookConfig:
    """Every committed event POSTed as JSON to one URL (``webhook:`` in pool.yaml)."""

    url: str = ""  # empty: no webhook
    #: a file (relative to the home) whose text is sent as ``Authorization: Bearer``
    token_file: str = ""
    ca_file: str = ""  # for an https URL signed by a CA of the site's own
    timeout_s: float = 10.0
    #: an endpoint that does not take an event gets it again after 1 s, doubling up to this
    max_backoff_s: float = 60.0

    def check(self) -> tuple[str, str] | None:
        if self.url and not self.url.startswith(("http://", "https://")):
            return "url", "must be an http:// or https:// URL"
        return None


@dataclass
class PoolSettings:
    """The knobs of pool.yaml (updraft pool's options override them)."""

    host: str = "127.0.0.1"
    port: int = 9618
    #: serve HTTPS with a CA and server certificate generated into home/tls
    tls: bool = False
    #: the names clients use for the pool (DNS names or addresses): in the generated certificate,
    #: and the first one in pool.json's URL (a host serving 0.0.0.0 is reached by a name)
    tls_names: list[str] = field(default_factory=list)
    #: a site's own host certificate and key instead of the generated ones (e.g. /etc/grid-security)
    tls_cert: str = ""
    tls_key: str = ""
    #: the CA that signs tls_cert, handed to clients and glideins (default: none needed beyond the system's)
    tls_ca: str = ""
    #: SQLite synchronous mode; FULL also survives an OS crash, NORMAL only a process crash
    synchronous: str = "FULL"
    #: PERIODIC_EXPR_INTERVAL: how often periodic_hold/release/remove are evaluated
    periodic_interval_s: float = 60.0
    #: a claim granted this long before a poll of its pilot that does not list it was never
    #: heard of by the pilot (the answer was lost): its job runs again without waiting for the lease
    forgotten_claim_s: float = 30.0
    #: how often expired claim leases are looked for
    lease_check_interval_s: float = 1.0
    #: how often expired collector ads are dropped
    collector_sweep_interval_s: float = 10.0
    #: how often user priorities are decayed and saved
    accountant_interval_s: float = 60.0
    #: how often the monitor samples jobs and pilots for its charts
    monitor_interval_s: float = 30.0
    #: PRIORITY_HALFLIFE
    priority_halflife_s: float = 86400.0
    #: DEFAULT_PRIO_FACTOR
    default_prio_factor: float = 1.0
    #: the longest a pilot's poll may wait for work
    max_poll_wait_s: float = 60.0
    #: how long a slot shape's match results are reused (time() in START makes them age)
    match_shape_ttl_s: float = 30.0
    #: an ad attribute may stand for at most this many terms once the attributes it refers to are
    #: written out (a reference read twice counts twice): ~3 ms of evaluation; larger ads are refused
    max_expression_terms: int = 20_000
    #: and refer through at most this many levels of attributes
    max_expression_depth: int = 100
    #: ads of one type one author may hold in the collector; past it the author's new names are
    #: refused.  All the pilots of one frontend count as one author (it names their tokens as it
    #: likes), so it is about the most slots one frontend may have (a factory's glidefactoryclient
    #: ads are entries x groups: far fewer)
    max_ads_per_author: int = 200_000
    #: and this much of them (MiB of names and expressions), whatever their number
    max_ad_mb_per_author: int = 1024
    #: a component's own event (a pilot's failed validation, a factory's reconfig) belongs to no
    #: job, so it does not leave with a job's history: its details may be this large (KiB) at most
    max_event_details_kb: int = 64
    #: and of such pool-wide events this many are kept, of at most this many MiB of details in all;
    #: past either, the oldest tenth is removed (EVENT_LOG_MAX_SIZE in spirit: a pilot token could
    #: otherwise fill the pool's disk, and a full disk stops new work for everyone)
    max_component_events: int = 1_000_000
    max_component_events_mb: int = 256
    #: one autocluster's evaluation against one slot may take this long (ms); one that takes
    #: longer is left out of matchmaking for match_penalty_s, with an event saying why
    match_eval_budget_ms: float = 50.0
    match_penalty_s: float = 600.0
    #: a connection must have sent its request's headers this long after its first byte
    header_timeout_s: float = 20.0
    #: a request body that stops arriving this long is cut off
    body_idle_timeout_s: float = 60.0
    #: an idle connection between two requests is closed after this long
    keep_alive_timeout_s: float = 75.0
    #: connections one client address may hold at once (pilots behind one NAT share an address)
    max_connections_per_client: int = 4096
    #: the largest JSON request body (a submission of a big cluster is the largest there is)
    max_request_body_mb: int = 128
    max_input_file_mb: int = 1024
    max_input_sandbox_mb: int = 4096
    max_output_sandbox_mb: int = 4096
    #: files and directories one job's output may hold (each tar member and each directory it makes)
    max_output_files: int = 10_000
    #: space kept in reserve (state/disk.reserve) for running jobs' writes when the disk fills up
    disk_reserve_mb: int = 16
    #: below this much free space the pool refuses new work (507) and goes on with what runs
    min_free_disk_mb: int = 32
    #: how often the free space is looked at
    disk_check_interval_s: float = 10.0
    #: MAX_JOBS_PER_SUBMISSION
    max_jobs_per_submission: int = 1_000_000
    #: MAX_HISTORY_ROTATIONS in spirit: history rows kept before the oldest are pruned
    history_max_jobs: int = 2_000_000
    #: job attributes a frontend identity may edit on any job (overflow widens DESIRED_Sites)
    frontend_editable: list[str] = field(
        default_factory=lambda: [
            protocol.ATTR_DESIRED_SITES,
            protocol.ATTR_DESIRED_SITES_ORIG,
            protocol.ATTR_OVERFLOW_TIME,
            protocol.ATTR_OVERFLOWED,
            protocol.ATTR_OVERFLOW_HOME_SITES,
            protocol.ATTR_DESIRED_SITES_DIFF,
            protocol.ATTR_ROUTE_TYPE,
            protocol.ATTR_HAS_BEEN_OVERFLOW_ROUTED,
            protocol.ATTR_LAST_ROUTED,
        ]
    )
    #: the longest a token may live, however it was made (minted, renewed, `updraft token create`):
    #: longer ones are refused, and a revocation is kept this long so it outlives what it revokes
    max_token_lifetime_s: int = 365 * 86400
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    mail: MailConfig = field(default_factory=MailConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    #: DAGs: a PRE or POST script running longer than this is killed and counts as failed
    #: (Updraft's own knob: HTCondor has none, and a hung script would hold its DAG for ever)
    dag_script_timeout_s: float = 3600.0
    #: a DAG's engine that dies by a signal is started again (recovering) this many times, then
    #: its DAG job is held with the reason
    dag_engine_restarts: int = 3
    #: a removed DAG's engine has this long to run its FINAL node and write its rescue DAG
    dag_remove_grace_s: float = 3600.0
    #: DAG jobs (the scheduler universe) running at once: HTCondor's START_SCHEDULER_UNIVERSE
    #: default (TotalSchedulerJobsRunning < 500), and MAX_RUNNING_SCHEDULER_JOBS_PER_OWNER
    max_running_scheduler_jobs: int = 500
    max_running_scheduler_jobs_per_owner: int = 200
    #: token subject -> local account (userpool/identities.py); relative to the home
    identity_map: str = "identity.map"

    def check(self) -> tuple[str, str] | None:
        if self.synchronous.upper() not in SYNCHRONOUS:
            return "synchronous", f"must be one of {', '.join(SYNCHRONOUS)}"
        if bool(self.tls_cert) != bool(self.tls_key):
            return "tls_cert", "a host certificate needs its key (tls_cert and tls_key together)"
        return None

    def settle(self) -> None:
        self.synchronous = self.synchronous.upper()


@dataclass
class PoolConfig(PoolSettings):
    """The settings and where the pool lives (its home: state, keys, spool, pool.yaml)."""

    home: Path = Path(".")

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    @property
    def database(self) -> Path:
        return self.state_dir / "queue.db"

    @property
    def blob_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    @property
    def tls_dir(self) -> Path:
        return self.home / "tls"

    @property
    def identity_map_path(self) -> Path:
        return self.home / self.identity_map

    @property
    def signing_key(self) -> Path:
        return self.home / "keys" / "signing.key"


SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def load_pool_config(home: Path, overrides: dict[str, Any] | None = None) -> PoolConfig:
    """The config for ``home``: its pool.yaml if it exists (else /etc/updraft/pool.yaml when
    installed system-wide), read as every Updraft config file is (file:line for every mistake),
    then ``overrides`` (the command line)."""
    path = home / "pool.yaml"
    if not path.exists() and system_wide():  # installed for the host: /etc/updraft/pool.yaml
        path = config_dir() / "pool.yaml"
    settings = load_model(PoolSettings, path)[0] if path.exists() else PoolSettings()
    values = {knob.name: getattr(settings, knob.name) for knob in dataclasses.fields(PoolSettings)}
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    config = PoolConfig(home=home, **values)
    problem = config.check()
    if problem:
        raise ConfigError(path, None, *problem)
    config.settle()
    return config
