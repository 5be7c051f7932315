"""`updraft pool`: run the pool in the foreground.

Prepares the home directory (state, signing key, a token for the local user, TLS
material when asked), serves the API with uvicorn on 127.0.0.1 by default, and
writes ``pool.json`` with the address it really bound so local clients find it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import uvicorn

from updraft.core.layout import log_dir, state_dir, system_wide
from updraft.core.logfiles import LogFile, reopen_log_files
from updraft.core.sdnotify import notify
from userpool.api import build_app
from userpool.config import PoolConfig
from userpool.connections import ConnectionLimits, guarded_protocol
from userpool.home import prepare_home, private_mode
from userpool.pool import Pool

log = logging.getLogger("updraft.pool")


def setup_logging(home: Path, level: str = "INFO") -> None:
    root = logging.getLogger()
    if any(getattr(h, "_updraft", False) for h in root.handlers):
        return
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    log_file = home / "pool.log"
    if system_wide() and home.resolve() == (state_dir() / "pool").resolve():
        log_dir().mkdir(parents=True, exist_ok=True)
        log_file = log_dir() / "pool.log"  # the host's pool logs where logrotate looks
    for handler in (logging.StreamHandler(sys.stderr), LogFile(log_file)):
        handler.setFormatter(formatter)
        handler._updraft = True
        root.addHandler(handler)
    root.setLevel(level)


def advertised_host(config: PoolConfig) -> str:
    """The name pool.json gives clients: the first TLS name, else the bound address (never 0.0.0.0)."""
    if config.tls_names:
        return config.tls_names[0]
    if config.host in ("0.0.0.0", "::"):
        import socket

        return socket.getfqdn()
    return config.host


async def serve(config: PoolConfig) -> None:
    pool = Pool(config)
    pool.open()  # takes the home's lock first: a second pool stops here
    prepare_home(config)
    app = build_app(pool)
    ssl_args = {}
    scheme = "http"
    ca_path = None
    if config.tls or config.tls_cert:
        from userpool.tlsutil import ensure_certificates

        if config.tls_cert:  # the site's own host certificate
            cert, key = Path(config.tls_cert), Path(config.tls_key)
            ca_path = Path(config.tls_ca) if config.tls_ca else None
        else:
            hosts = [*config.tls_names, config.host, "localhost", "127.0.0.1"]
            hosts = [h for h in dict.fromkeys(hosts) if h not in ("0.0.0.0", "::")]
            ca_path, cert, key = ensure_certificates(config.tls_dir, hosts)
        ssl_args = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        scheme = "https"
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,
            timeout_keep_alive=int(config.keep_alive_timeout_s),
            http=guarded_protocol(
                ConnectionLimits(
                    config.header_timeout_s, config.body_idle_timeout_s, config.max_connections_per_client
                )
            ),
            backlog=4096,
            lifespan="off",
            **ssl_args,
        )
    )
    loop = asyncio.get_running_loop()
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving  # raises the bind error
            return
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    pool.submit_host = f"<{config.host}:{port}>"
    url = f"{scheme}://{advertised_host(config)}:{port}"
    pool.dags.url, pool.dags.ca_path = url, str(ca_path) if ca_path else ""  # the DAG engines' way in
    await pool.start_background()
    info = {"url": url, "pid": os.getpid(), "ca": str(ca_path) if ca_path else None}
    pool_file = config.home / "pool.json"
    temp = pool_file.with_suffix(".tmp")
    temp.write_text(json.dumps(info, indent=1) + "\n")
    os.chmod(temp, 0o644)  # local clients of other accounts find the pool through it
    os.replace(temp, pool_file)
    log.info("pool serving at %s (home %s, %d jobs queued)", url, config.home, len(pool.schedd.queue))
    notify("READY=1")  # a Type=notify unit is started once the pool answers

    def shut_down() -> None:
        server.should_exit = True
        pool.release_polls()  # uvicorn waits for open requests: long polls would hold it up to a minute

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shut_down)
    loop.add_signal_handler(signal.SIGUSR1, reopen_log_files)  # logrotate's postrotate
    try:
        await serving
    finally:
        await pool.stop()
        try:
            if json.loads(pool_file.read_text()).get("pid") == os.getpid():
                pool_file.unlink()
        except (OSError, ValueError):
            pass
        log.info("pool stopped")


def raise_open_files_limit() -> None:
    """Every long-polling pilot holds a connection: take all the descriptors the system allows."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    log.info("open files limit %d", resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def run(config: PoolConfig) -> None:
    # the matchmaking thread holds the interpreter lock for one evaluation at a time: hand it
    # back to the request thread sooner than the default 5 ms, so requests wait less for it
    sys.setswitchinterval(0.001)
    private_mode()
    setup_logging(config.home)
    raise_open_files_limit()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(serve(config))
