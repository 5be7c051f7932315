"""`updraft <noun> <verb>`: the project's own commands (the condor_* ones are separate scripts)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from updraft.core.errors import UpdraftError


def _home(value: str | None) -> Path:
    from updraft.core.client import default_home

    return Path(value).expanduser().resolve() if value else default_home()


# -- pool -------------------------------------------------------------------------------------
def cmd_pool(args: argparse.Namespace) -> int:
    from userpool.config import load_pool_config
    from userpool.server import run

    overrides = {
        "host": args.host,
        "port": args.port,
        "tls": True if args.tls else None,
        "tls_names": args.tls_name or None,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_ca": args.tls_ca,
        "periodic_interval_s": args.periodic_interval,
        "monitor_interval_s": args.monitor_interval,
        "synchronous": args.synchronous,
    }
    home = _home(args.home)
    home.mkdir(parents=True, exist_ok=True)
    config = load_pool_config(home, overrides)
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        if not args.allow_remote:
            raise UpdraftError(
                f"refusing to bind {config.host}: pass --allow-remote to serve beyond loopback"
            )
        if not (config.tls or config.tls_cert) and not args.insecure_http:
            raise UpdraftError(
                f"refusing plain HTTP on {config.host}: tokens would cross the network in clear."
                " Use --tls (with --tls-name NAME) or --tls-cert/--tls-key, or say --insecure-http"
            )
        if not (config.tls or config.tls_cert):
            print(
                f"WARNING: serving plain HTTP on {config.host} (--insecure-http): every token and job"
                " crosses the network unencrypted",
                file=sys.stderr,
                flush=True,
            )
    run(config)
    return 0


# -- tokens -----------------------------------------------------------------------------------
def cmd_token_create(args: argparse.Namespace) -> int:
    from updraft.core.payloads import TokenRequest
    from userpool.tokens import TokenSigner, parse_scopes

    scopes = parse_scopes(args.scope)
    bindings = dict(item.split("=", 1) for item in args.bind)
    home = _home(args.home)
    key_path = home / "keys" / "signing.key"
    if key_path.exists() and not args.via_pool:
        from userpool.config import load_pool_config

        signer = TokenSigner(key_path.read_bytes(), load_pool_config(home).max_token_lifetime_s)
        token, expires = signer.issue(args.user, scopes, args.lifetime, bindings)
    else:
        from updraft.core.client import Client

        result = Client.from_environment(home=home).mint_token(
            TokenRequest(args.user, sorted(s.value for s in scopes), args.lifetime, bindings)
        )
        token, expires = result.token, result.expires
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(expires))
    what = f"token for {args.user}, scopes {', '.join(sorted(s.value for s in scopes))}, expires {when}"
    if args.output:
        from userpool.home import write_private_file

        path = Path(args.output).expanduser()
        try:
            write_private_file(path, token + "\n")
        except OSError as exc:
            raise UpdraftError(f"cannot write {path}: {exc.strerror}") from None
        print(f"{what}: written to {path} (mode 0600)", file=sys.stderr)
        return 0  # the secret goes to the file only, not also to a terminal or a log
    print(f"{what}:", file=sys.stderr)
    print(token)
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from updraft.core.client import Client
    from updraft.core.payloads import RevokeRequest

    keys = Client.from_environment(pool=args.pool).revoke_tokens(
        RevokeRequest(args.token_id or "", args.subject or "", args.binding or "")
    )
    for key in keys:
        print(f"revoked {key}")
    return 0


def cmd_token_show(args: argparse.Namespace) -> int:
    from updraft.core.client import token_claims

    claims = token_claims(args.token.strip() if args.token else sys.stdin.read().strip())
    if not claims:
        raise UpdraftError("not a pool token")
    print(json.dumps(claims, indent=2, sort_keys=True))
    return 0


# -- bookkeeping ------------------------------------------------------------------------------
def _describe(event_type: str, details: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in details.items() if v not in (None, "", [], {}))


def cmd_logging_info(args: argparse.Namespace) -> int:
    from updraft.core.client import Client
    from updraft.core.protocol import parse_job_id

    parse_job_id(args.job)
    client = Client.from_environment(pool=args.pool)
    events = client.job_events(args.job)
    if args.json:
        print(json.dumps([e.to_dict() for e in events], indent=2))
        return 0
    print(f"Events of job {args.job}:")
    for event in events:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.time))
        scope = f"{event.cluster_id}.{event.proc_id}" if event.proc_id >= 0 else f"{event.cluster_id}.*"
        print(
            f"  {stamp}  {event.type:<16} {scope:<10} by {event.source:<24} {_describe(event.type, event.details)}"
        )
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    from updraft.core.client import Client

    client = Client.from_environment(pool=args.pool)
    if args.job:
        return _job_events(client, args.job, args.follow)
    if args.follow:
        for event in client.stream_events(args.after, timeout=3600):
            print(json.dumps(event.to_dict()), flush=True)
        return 0
    for event in client.events(max(0, args.after), args.limit):
        print(json.dumps(event.to_dict()))
    return 0


def _job_events(client: Any, job: str, follow: bool) -> int:
    """One job's events (JSON lines); --follow: then its new ones, until it (every proc of a
    cluster) has left the queue, as a tool subscribing to the job's life would want."""
    from updraft.core.client import ClientError
    from updraft.core.payloads import QueryRequest
    from updraft.core.protocol import parse_job_id

    _cluster_id, proc_id = parse_job_id(job)
    last = client.ping().last_event
    try:
        past = client.job_events(job)
    except ClientError as exc:
        if exc.status != 404:
            raise
        past = []
    for event in past:
        print(json.dumps(event.to_dict()), flush=True)
        last = max(last, event.id)

    def gone() -> bool:
        return not client.query(QueryRequest(ids=[job], projection=["ProcId"], limit=1)).ads

    if not follow or (past and gone()):
        return 0
    while True:
        for event in client.stream_events(last, timeout=3600, job=job):
            print(json.dumps(event.to_dict()), flush=True)
            last = max(last, event.id)
            if event.type in ("complete", "remove") and (proc_id is not None or gone()):
                return 0
        if gone():
            return 0


# -- pilot ------------------------------------------------------------------------------------
def cmd_pilot_build(args: argparse.Namespace) -> int:
    from pilot.build import build

    output = Path(args.output)
    digest = build(output)
    print(f"pilot bundle {output} ({output.stat().st_size} bytes)", file=sys.stderr)
    print(f"sha256 {digest}")
    return 0


def _add_component(nouns: Any, component: str) -> None:
    """``updraft factory|frontend ...``; on a host without that role's packages, a word saying so."""
    try:
        module = importlib.import_module(f"{component}.cli")
    except ImportError as exc:
        missing = exc.name or str(exc)

        def not_installed(_args: argparse.Namespace) -> int:
            raise UpdraftError(
                f"the {component} is not installed on this host ({missing} is missing):"
                f" pip install 'updraft[{component}]'"
            )

        placeholder = nouns.add_parser(component, help=f"the {component} (not installed here)")
        placeholder.add_argument("rest", nargs=argparse.REMAINDER)
        placeholder.set_defaults(func=not_installed)
        return
    module.add_commands(nouns)


#: `updraft q` is condor_q, `updraft submit` condor_submit, ...: the HTCondor user commands under
#: Updraft's own name, for hosts where HTCondor's are installed too (docs/deploy.md)
USER_COMMANDS = {
    "submit": "userpool.cli.condor_submit:main",
    "q": "userpool.cli.condor_q:main",
    "rm": "userpool.cli.condor_act:main_rm",
    "hold": "userpool.cli.condor_act:main_hold",
    "release": "userpool.cli.condor_act:main_release",
    "suspend": "userpool.cli.condor_act:main_suspend",
    "continue": "userpool.cli.condor_act:main_continue",
    "status": "userpool.cli.condor_status:main",
    "history": "userpool.cli.condor_history:main",
    "transfer_data": "userpool.cli.condor_transfer_data:main",
    "userprio": "userpool.cli.condor_userprio:main",
    "wait": "userpool.cli.condor_wait:main",
    "qedit": "userpool.cli.condor_qedit:main",
    "submit_dag": "userpool.cli.condor_submit_dag:main",
}


def run_user_command(name: str, argv: list[str]) -> int:
    """condor_<name> with these arguments (its own parser, messages and exit codes)."""
    module, _, function = USER_COMMANDS[name].partition(":")
    return int(getattr(importlib.import_module(module), function)(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="updraft", description="Updraft: pilot-based workload management.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    nouns = parser.add_subparsers(dest="noun", required=True, metavar="COMMAND")

    pool = nouns.add_parser("pool", help="run the pool (schedd, collector, negotiator) in the foreground")
    pool.add_argument(
        "--home",
        help="state directory (default: $UPDRAFT_HOME, ~/.updraft, or /var/lib/updraft/pool system-wide)",
    )
    pool.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    pool.add_argument("--port", type=int, default=None, help="port (default 9618; 0 picks a free one)")
    pool.add_argument(
        "--tls", action="store_true", help="serve HTTPS with a CA generated in the home directory"
    )
    pool.add_argument(
        "--periodic-interval", type=float, default=None, help="seconds between periodic policy passes"
    )
    pool.add_argument(
        "--monitor-interval", type=float, default=None, help="seconds between the monitor's samples (30)"
    )
    pool.add_argument("--synchronous", default=None, help="SQLite synchronous mode (FULL, NORMAL)")
    pool.add_argument(
        "--allow-remote", action="store_true", help="serve beyond loopback (with --tls, or --insecure-http)"
    )
    pool.add_argument(
        "--tls-name", action="append", metavar="NAME",
        help="a name clients use for the pool: in its certificate, the first in pool.json (repeatable)",
    )  # fmt: skip
    pool.add_argument(
        "--tls-cert", metavar="FILE", help="the host's own certificate (e.g. /etc/grid-security/hostcert.pem)"
    )
    pool.add_argument("--tls-key", metavar="FILE", help="its private key")
    pool.add_argument("--tls-ca", metavar="FILE", help="the CA that signs it, for clients and glideins")
    pool.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow plain HTTP beyond loopback (tokens in clear: tests only)",
    )
    pool.set_defaults(func=cmd_pool)

    token = nouns.add_parser("token", help="pool tokens")
    verbs = token.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="mint a token; the token is the last line printed")
    create.add_argument("--user", required=True, help="the identity (subject) of the token")
    create.add_argument(
        "--scope", action="append", required=True, help="user, pilot, factory, frontend, admin (repeatable)"
    )
    create.add_argument("--lifetime", type=int, default=7 * 86400, help="seconds (default one week)")
    create.add_argument(
        "--bind", action="append", default=[], metavar="KEY=VALUE", help="bind the token (e.g. frontend=fe1)"
    )
    create.add_argument(
        "--output", "-o", help="write the token to this file (mode 0600, directories made) instead of stdout"
    )
    create.add_argument("--home", help="pool home holding the signing key")
    create.add_argument(
        "--via-pool", action="store_true", help="ask the running pool instead of signing locally"
    )
    create.set_defaults(func=cmd_token_create)
    revoke = verbs.add_parser("revoke", help="refuse tokens from now on (renewals included)")
    revoke.add_argument("--token-id", help="one token, by its jti")
    revoke.add_argument("--subject", help="every token of this subject")
    revoke.add_argument(
        "--binding", metavar="KEY=VALUE", help="every token with this binding, e.g. frontend=fe1"
    )
    revoke.add_argument("--pool")
    revoke.set_defaults(func=cmd_token_revoke)
    show = verbs.add_parser("show", help="print a token's claims (not verified)")
    show.add_argument("token", nargs="?")
    show.set_defaults(func=cmd_token_show)

    pilot = nouns.add_parser("pilot", help="the pilot (glidein)")
    pilot_verbs = pilot.add_subparsers(dest="verb", required=True)
    build = pilot_verbs.add_parser("build", help="write the pilot as one self-contained file (a zipapp)")
    build.add_argument("-o", "--output", default="updraft-pilot.pyz")
    build.set_defaults(func=cmd_pilot_build)

    proxy = nouns.add_parser("proxy", help="job credentials")
    proxy_verbs = proxy.add_subparsers(dest="verb", required=True)
    refresh = proxy_verbs.add_parser(
        "refresh", help="send jobs their renewed X.509 proxy (running ones get it at once)"
    )
    refresh.add_argument("jobs", nargs="+", help="CLUSTER or CLUSTER.PROC")
    refresh.add_argument("--file", help="the new proxy (default: each job's x509userproxy path)")
    refresh.add_argument("--pool")
    refresh.set_defaults(func=lambda args: __import__("updraft.proxy", fromlist=["refresh"]).refresh(args))

    info = nouns.add_parser("logging-info", help="every recorded event of a job")
    info.add_argument("job", help="CLUSTER.PROC (or CLUSTER)")
    info.add_argument("--pool")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_logging_info)

    for component in ("factory", "frontend"):
        _add_component(nouns, component)

    from updraft.deploy import add_commands

    add_commands(nouns)
    for name in USER_COMMANDS:  # listed in --help; main() hands them their arguments untouched
        nouns.add_parser(name, help=f"condor_{name}, under Updraft's name", add_help=False)

    events = nouns.add_parser("events", help="the pool's event log (JSON lines)")
    events.add_argument("--pool")
    events.add_argument("--after", type=int, default=0)
    events.add_argument("--limit", type=int, default=1000)
    events.add_argument("--follow", "-f", action="store_true", help="stream new events as they happen")
    events.add_argument(
        "--job", help="one job's events (CLUSTER or CLUSTER.PROC); with --follow, until it ends"
    )
    events.set_defaults(func=cmd_events)
    return parser


def main(argv: list[str] | None = None) -> int:
    from updraft.core.client import ClientError, PoolUnreachable

    words = sys.argv[1:] if argv is None else argv
    if words and words[0] in USER_COMMANDS:
        return run_user_command(words[0], words[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ClientError, PoolUnreachable, UpdraftError) as exc:
        if args.debug:
            raise
        message = exc.message if isinstance(exc, ClientError) else str(exc)
        print(f"updraft {args.noun}: {message}", file=sys.stderr)
        return getattr(exc, "exit_status", 1)


if __name__ == "__main__":
    sys.exit(main())
