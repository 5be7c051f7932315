"""The staging area: the pilot bundle and check scripts, served read-only over HTTP to glideins.

Files are named by their content (``updraft-pilot-<sha12>.pyz``), so a glidein always
fetches exactly the bytes its startup script expects, even across a reconfig.  The same
server answers ``/metrics`` for Prometheus.
"""

from __future__ import annotations

import hashlib
import http.server
import logging
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path

from factory.startup import StagedFile
from pilot.build import build
from updraft.core import protocol
from updraft.core.metrics import BackgroundServer, send_metrics

log = logging.getLogger("updraft.factory")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stage_pilot(directory: Path) -> StagedFile:
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / ".pilot-build.pyz"
    sha = build(temporary)
    name = f"updraft-pilot-{sha[:12]}.pyz"
    temporary.replace(directory / name)
    return StagedFile(name, sha)


def stage_file(directory: Path, source: Path) -> StagedFile:
    sha = digest(source)
    name = f"{source.stem}-{sha[:12]}{source.suffix}"
    target = directory / name
    if not target.exists():
        shutil.copyfile(source, target)
    return StagedFile(name, sha)


class _Handler(http.server.SimpleHTTPRequestHandler):
    metrics: Callable[[], str] = staticmethod(lambda: "")

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == protocol.METRICS:
            send_metrics(self, self.metrics())
            return
        super().do_GET()

    def list_directory(self, path: str):
        self.send_error(403, "no listing")
        return None

    def log_message(self, format: str, *args: object) -> None:
        pass


class StagingServer(BackgroundServer):
    def __init__(self, directory: Path, host: str, port: int, metrics: Callable[[], str]) -> None:
        handler = type("StagingHandler", (_Handler,), {"metrics": staticmethod(metrics)})
        super().__init__(host, port, partial(handler, directory=str(directory)), "staging")


def staging_server(
    directory: Path, host: str, port: int, metrics: Callable[[], str], remembered: Path
) -> StagingServer:
    """The staging server, on the port of the last run when none is configured (``remembered``).

    Glideins still queued at a site fetch the pilot from the URL written into their startup
    script: a factory restarted on a new port would fail them all.
    """
    if port == 0 and remembered.exists():
        try:
            return StagingServer(directory, host, int(remembered.read_text()), metrics)
        except (OSError, ValueError) as exc:
            log.warning("staging: the port of the last run is not free (%s): taking another", exc)
    server = StagingServer(directory, host, port, metrics)
    remembered.write_text(f"{server.server.server_address[1]}\n")
    return server
