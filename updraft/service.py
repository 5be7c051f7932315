"""What the factory and the frontend share as long-running services of the pool.

A pool client with the right scope, its token renewed before it expires; a loop of
cycles that reloads its config on SIGHUP and stops on SIGTERM; a status file written
atomically for the operator commands; a pid file for `reconfig`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from updraft.core.client import Client, ClientError, PoolUnreachable, token_claims
from updraft.core.errors import UpdraftError, UsageError
from updraft.core.layout import config_dir, config_env, config_file
from updraft.core.logfiles import LogFile, reopen_on_sigusr1
from updraft.core.sdnotify import notify

log = logging.getLogger("updraft.service")
SERVICE_STATUS_FILE = "status.json"  # in the service's state directory


@dataclass
class PoolSettings:
    url: str = ""  # default: UPDRAFT_POOL or the local pool's pool.json
    token_file: str = ""  # a token with the service's scope
    ca_file: str = ""


def service_client(
    pool: PoolSettings, resolve: Callable[[str], Path], scope: str, name: str, timeout: float = 60.0
) -> Client:
    """A pool client for a factory or frontend; refuses a token without the scope it needs."""
    token_file = str(resolve(pool.token_file)) if pool.token_file else None
    client = Client.from_environment(pool=pool.url or None, token_file=token_file, timeout=timeout)
    if pool.ca_file:
        client = Client(client.url, client.token, str(resolve(pool.ca_file)), timeout)
    scopes = str(token_claims(client.token).get("scope", "")).split()
    if scope not in scopes and "admin" not in scopes:
        raise UpdraftError(
            f"the {scope}'s pool token needs scope {scope}: make one with "
            f"'updraft token create --user {name} --scope {scope} -o {scope}.token' and name it in pool.token_file"
        )
    return client


def setup_logging(log_dir: Path | None, file_name: str, level: str) -> None:
    """A service's log: standard error, and a file in its log directory when it has one."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(LogFile(log_dir / file_name))
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(message)s", handlers=handlers
    )


def renew_token(client: Client, token_file: Path | None, what: str) -> None:
    """Renew the client's token once two thirds of its life have passed (and keep the file current)."""
    claims = token_claims(client.token)
    expires, issued = claims.get("exp"), claims.get("iat")
    if not isinstance(expires, (int, float)) or not isinstance(issued, (int, float)):
        return
    if expires - time.time() > (expires - issued) / 3:
        return
    try:
        client.renew_token()
    except (PoolUnreachable, ClientError) as exc:
        log.warning("could not renew the %s's pool token: %s", what, exc)
        return
    if token_file is not None:
        try:
            token_file.write_text(str(client.token) + "\n")
        except OSError as exc:  # the renewed token works in memory; a restart needs the file
            log.warning("the %s's pool token was renewed but %s cannot be written: %s", what, token_file, exc)
            return
    log.info("the %s's pool token was renewed", what)


def write_json_atomically(path: Path, data: Any) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=1, default=str))
    temporary.replace(path)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class ServiceLoop:
    """Cycles every ``cycle_s``; SIGHUP asks for a reconfig, SIGUSR1 reopens the log files,
    SIGTERM/SIGINT ask for a stop.  Keeps what its status file says of the config (loaded
    when, refused why, what waits for a restart) the same way for every service."""

    #: who the log lines speak of ("factory", "frontend") and the logger they go to
    service_name = "service"
    service_log = log
    #: settings a reload cannot apply (dotted paths): the sockets, the pool connection, the log
    restart_only: tuple[str, ...] = ()

    state_dir: Path

    def __init__(self, config: Any) -> None:
        self.wake = threading.Event()
        self.stopping = False
        self.reload_requested = False
        self.cycles = 0
        self.last_cycle_s = 0.0
        self.config_loaded = time.time()
        self.config_error = ""
        self.config_error_at = 0.0
        self.started_config = config  # what the sockets and the pool connection were made from
        self.restart_needed: list[str] = []

    def status(self) -> dict[str, Any]:
        raise NotImplementedError

    def _write_status(self) -> None:
        """The status file the operator commands read (atomically: they never see half of it)."""
        write_json_atomically(self.state_dir / SERVICE_STATUS_FILE, self.status())

    def reconfig_refused(self, exc: Exception) -> bool:
        """A new config that cannot be used: the running one stays, the status file says why."""
        self.config_error, self.config_error_at = str(exc), time.time()
        self.service_log.error("reconfig refused, the running config stays: %s", exc)
        self._write_status()
        return False

    def reconfig_taken(self, config: Any) -> None:
        """A new config in use: note what only a restart applies, and when it was loaded."""
        self.restart_needed = restart_only_changes(self.started_config, config, self.restart_only)
        for name in self.restart_needed:
            self.service_log.warning(
                "reconfig: %s changed: it takes effect only when the %s restarts", name, self.service_name
            )
        self.config_error = ""
        self.config_loaded = time.time()

    def config_status(self) -> dict[str, Any]:
        """The status file's part about the config, as `reconfig` and `status` read it."""
        return {
            "config_loaded": self.config_loaded,
            "config_error": self.config_error,
            "config_error_at": self.config_error_at,
            "restart_needed": self.restart_needed,
        }

    def cycle(self) -> None:
        raise NotImplementedError

    def reconfig(self) -> bool:
        raise NotImplementedError

    def cycle_seconds(self) -> float:
        raise NotImplementedError

    def run_forever(self) -> None:
        def on_hup(_signum: int, _frame: Any) -> None:
            self.reload_requested = True
            self.wake.set()

        def on_term(_signum: int, _frame: Any) -> None:
            self.stopping = True
            self.wake.set()

        signal.signal(signal.SIGHUP, on_hup)
        reopen_on_sigusr1()  # logrotate's postrotate
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        notify("READY=1")  # Type=notify units: started once the service cycles
        while not self.stopping:
            if self.reload_requested:
                self.reload_requested = False
                self.reconfig()
            began = time.monotonic()
            try:
                self.cycle()
            except Exception:  # a bug in one cycle must not stop the service
                log.exception("cycle failed")
            self.wake.wait(max(0.0, self.cycle_seconds() - (time.monotonic() - began)))
            self.wake.clear()


def signal_reload(state_dir: Path, pid_file: str, what: str, timeout: float) -> str:
    """SIGHUP the running service and wait until its status file says it took (or refused) the config."""
    try:
        pid = int((state_dir / pid_file).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        raise UpdraftError(f"{what} is not running (no live pid in {state_dir / pid_file})") from None
    before = time.time()
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_json(state_dir / SERVICE_STATUS_FILE)
        if status.get("config_loaded", 0) > before:
            waiting = status.get("restart_needed") or []
            if waiting:
                return (
                    f"{what} (pid {pid}) reloaded its config; these settings take effect only after a restart:"
                    f" {', '.join(waiting)}"
                )
            return f"{what} (pid {pid}) reloaded its config"
        if status.get("config_error") and status.get("config_error_at", 0) > before:
            raise UpdraftError(f"{what} refused the new config: {status['config_error']}")
        time.sleep(0.2)
    raise UpdraftError(f"{what} (pid {pid}) did not confirm the reload within {timeout:.0f} s")


def terminate(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM a service's process and give it ``timeout`` to finish (a factory drains its
    glideins meanwhile); SIGKILL it after that."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def located_config(component: str, given: str | None) -> Path:
    """The component's config file (updraft/core/layout.py), or a usage error that says how to name one."""
    found = config_file(component, given)
    if found is None:
        raise UsageError(
            f"say which {component}: --config FILE (or set {config_env(component)},"
            f" or install it system-wide as {config_dir() / (component + '.yaml')})"
        )
    return found


def service_verbs(
    nouns: Any, component: str, help_text: str, config_env: str
) -> tuple[Any, Callable[..., argparse.ArgumentParser]]:
    """`updraft <component> <verb>`: its subparsers, and a function adding a verb with --config
    (unless told otherwise) and the function it runs."""
    verbs = nouns.add_parser(component, help=help_text).add_subparsers(dest="verb", required=True)

    def verb(name: str, func: Any, help_text: str, config: bool = True) -> argparse.ArgumentParser:
        parser = verbs.add_parser(name, help=help_text)
        if config:
            parser.add_argument(
                "--config",
                "-c",
                help=f"the {component}'s YAML config (default ${config_env}, else /etc/updraft/{component}.yaml)",
            )
        parser.set_defaults(func=func)
        return parser

    return verbs, verb


# -- times operators type ---------------------------------------------------------------------
def parse_when(text: str | None, default: float | None) -> float | None:
    """A time an operator types: now, +2h, '2026-12-01 08:00' or epoch seconds (the downtime verbs)."""
    if not text:
        return default
    if text == "now":
        return time.time()
    if text.startswith("+"):
        return time.time() + duration_seconds(text[1:])
    for pattern in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return time.mktime(time.strptime(text, pattern))
        except ValueError:
            continue
    try:
        return float(text)
    except ValueError:
        raise UsageError(
            f"cannot read the time {text!r}: use now, +2h, 2026-12-01 08:00 or epoch seconds"
        ) from None


def duration_seconds(text: str) -> float:
    """90, 90s, 30m, 2h, 1d as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except (ValueError, IndexError):
        raise UsageError(f"cannot read the duration {text!r}: use e.g. 90m, 2h, 1d") from None


# -- importing glideinWMS configurations ----------------------------------------------------------
def finish_import(
    text: str, report: Any, output: str | None, check: Callable[[Path], Any], as_json: bool, what: str
) -> int:
    """Write an importer's YAML (``-o``: to the file, else to stdout), prove it loads, print the summary.

    The YAML is checked with the component's own loader before anything is written, so an
    import never leaves a file that ``check`` refuses; the summary goes to stderr when the
    YAML goes to stdout, so the two can be piped apart.
    """
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        trial = Path(scratch) / f"{what}.yaml"
        trial.write_text(text)
        check(trial)  # a ConfigError here is the importer's bug: say it, write nothing
    summary = json.dumps(report.to_dict(), indent=2) if as_json else report.summary()
    if output:
        target = Path(output)
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_text(text)
        temporary.replace(target)
        print(summary)
        if not as_json:
            print(f"\nwrote {target}: check it with `updraft {what} check {target}`")
    else:
        sys.stdout.write(text)
        print(summary, file=sys.stderr)
    return 0


def downtime_verbs(verbs: Any, help_text: str) -> tuple[Any, Any, Any]:
    """The add, list and end verbs of a service's ``downtime`` command, with what they share."""
    downtime = verbs.add_parser("downtime", help=help_text)
    actions = downtime.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="declare a downtime")
    add.add_argument("--config", "-c")
    add.add_argument("--start", help="now (default), +1h, '2026-12-01 08:00' or epoch seconds")
    add.add_argument("--end", help="when it ends (default: until 'downtime end')")
    add.add_argument("--comment", default="")
    listing = actions.add_parser("list", help="current and future downtimes")
    listing.add_argument("--config", "-c")
    listing.add_argument("--all", action="store_true", help="past ones too")
    listing.add_argument("--json", action="store_true")
    end = actions.add_parser("end", help="end a downtime now")
    end.add_argument("--config", "-c")
    end.add_argument("id", type=int)
    return add, listing, end


def restart_only_changes(old: Any, new: Any, names: tuple[str, ...]) -> list[str]:
    """The settings among ``names`` (dotted paths) that differ between two configs: a reload
    cannot apply them (the sockets, the pool connection), so the service says so."""
    changed = []
    for name in names:
        before, after = old, new
        for part in name.split("."):
            before, after = getattr(before, part, None), getattr(after, part, None)
        if before != after:
            changed.append(name)
    return changed
