"""`updraft factory ...`: run the factory and look after it (entries, analyze, logs, downtimes, reconfig).

The commands that only look (entries, analyze, logs, downtime) read the factory's journal
and status file directly, so they work whether the factory runs or not; reconfig signals
the running one and reports whether it took the new file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from factory.config import ConfigError, FactoryConfig, load_factory_config
from factory.failures import failing_note, is_failing
from factory.journal import Journal
from updraft.core.errors import UpdraftError, UsageError
from updraft.core.layout import config_env
from updraft.core.tables import render_table
from updraft.service import (
    SERVICE_STATUS_FILE,
    downtime_verbs,
    duration_seconds,
    located_config,
    parse_when,
    read_json,
    service_verbs,
    setup_logging,
    signal_reload,
)

CONFIG_ENV = config_env("factory")


# -- locating the factory ---------------------------------------------------------------------
def _config_path(args: argparse.Namespace) -> Path:
    return located_config("factory", getattr(args, "config", None))


def _state(args: argparse.Namespace) -> tuple[Path, FactoryConfig | None]:
    """The factory's state directory, and its config when the file is valid (an operator may be editing it)."""
    path = _config_path(args)
    try:
        config = load_factory_config(path)
        return config.resolve(config.state_dir), config
    except ConfigError as exc:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            raise exc from None
        print(f"warning: {exc}", file=sys.stderr)
        state = Path(os.path.expanduser(str(raw.get("state_dir", "state"))))
        return (state if state.is_absolute() else path.resolve().parent / state), None


def _journal(state_dir: Path) -> Journal:
    if not (state_dir / "journal.sqlite").exists():
        raise UpdraftError(f"no factory journal in {state_dir}: has this factory ever run?")
    return Journal(state_dir / "journal.sqlite")


def _status(state_dir: Path) -> dict[str, Any]:
    return read_json(state_dir / SERVICE_STATUS_FILE)


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


# -- run, check, reconfig ---------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from factory.loop import Factory

    config = load_factory_config(_config_path(args))
    setup_logging(config.resolve(config.log_dir) if config.log_dir else None, "factory.log", args.log_level)
    factory = Factory(config)
    factory.start()
    print(
        f"factory {config.name} running (pid {os.getpid()}), staging {factory.staging_url}",
        file=sys.stderr,
        flush=True,
    )
    try:
        if args.once:
            factory.cycle()
            factory.wait_idle()
        else:
            factory.run_forever()
    finally:
        if args.drain_on_exit:
            left = factory.drain()
            if left:
                print(f"{left} glidein(s) not confirmed removed: they end by their lease", file=sys.stderr)
        factory.stop()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    args.file = str(located_config("factory", args.file))
    config = load_factory_config(Path(args.file))
    if args.json:
        from factory.config import config_summary

        _print_json({"factory": config.name, "entries": config_summary(config)})
        return 0
    entries = ", ".join(f"{e.name} ({e.gridtype}{'' if e.enabled else ', disabled'})" for e in config.entries)
    print(f"{args.file}: OK: factory {config.name}, {len(config.entries)} entries: {entries}")
    return 0


def _by_slot(config: FactoryConfig, journal: Journal, slot: str) -> Any:
    """The glidein of a slot still in the pool: its ad carries the glidein id."""
    from updraft.core import protocol
    from updraft.core.client import ClientError, PoolUnreachable
    from updraft.service import service_client

    try:
        client = service_client(config.pool, config.resolve, "factory", config.name, 15.0)
        ads = client.query_ads(
            protocol.AdType.Slot.value, f"Name == {protocol.quote(slot)}", [protocol.ATTR_GLIDEIN_ID]
        )
    except (PoolUnreachable, ClientError, UpdraftError):
        return None
    for texts in ads:
        glidein_id = protocol.ad_value(texts, protocol.ATTR_GLIDEIN_ID, "")
        if glidein_id:
            return journal.find(str(glidein_id))
    return None


def cmd_import_gwms(args: argparse.Namespace) -> int:
    from factory.importer import import_factory
    from updraft.service import finish_import

    text, report = import_factory([Path(p) for p in args.files])
    return finish_import(text, report, args.output, load_factory_config, args.json, "factory")


def cmd_reconfig(args: argparse.Namespace) -> int:
    path = _config_path(args)
    config = load_factory_config(path)  # refuse here first: the operator sees the error at once
    message = signal_reload(
        config.resolve(config.state_dir), "factory.pid", f"factory {config.name}", args.timeout
    )
    print(f"{message} from {path}: {len(config.entries)} entries")
    return 0


# -- entries ----------------------------------------------------------------------------------
def entry_rows(state_dir: Path, config: FactoryConfig | None) -> list[dict[str, Any]]:
    journal = _journal(state_dir)
    status = _status(state_dir)
    health = status.get("entries", {})
    counts = journal.counts()
    downtimes = {
        d.target if d.scope != "factory" else "*": d for d in journal.downtimes() if d.active(time.time())
    }
    names = sorted(
        {e for e, _ in counts} | set(health) | {e.name for e in (config.entries if config else [])}
    )

    def running_at(entry: str) -> int:
        return sum(states.get("running", 0) for (e, _), states in counts.items() if e == entry)

    rows = []
    for name in names:
        entry = config.entry(name) if config else None
        known = health.get(name, {})
        if entry is not None and not entry.enabled:
            state = "disabled"
        elif known.get("retired") or (config is not None and entry is None):
            state = "retired"
        elif name in downtimes or "*" in downtimes:
            state = "downtime"
        elif known.get("last_error"):
            state = "error"
        elif is_failing(known.get("failing") or {}, running_at(name)):
            state = "failing"
        else:
            state = "ok" if known else "unknown"
        failing = failing_note(known.get("failing") or {}, running_at(name))
        clients = sorted(c for e, c in counts if e == name) or [""]
        for client in clients:
            states = counts.get((name, client), {})
            rows.append(
                {
                    "entry": name,
                    "site": entry.site if entry else "",
                    "gridtype": entry.gridtype if entry else "",
                    "state": state,
                    "client": client,
                    "idle": states.get("queued", 0) + states.get("unsubmitted", 0),
                    "running": states.get("running", 0),
                    "held": states.get("held", 0),
                    "removing": states.get("removing", 0),
                    "limits": (
                        f"{entry.limits.max_glideins or '-'}/{entry.limits.max_idle or '-'}/{entry.limits.max_held or '-'}"
                        if entry
                        else ""
                    ),
                    "error": known.get("last_error", ""),
                    "failing": failing,
                    "failing_now": int((known.get("failing") or {}).get("count", 0) or 0),
                    "why": "; ".join(known.get("reasons", {}).get(client, [])),
                }
            )
    journal.close()
    return rows


def cmd_entries(args: argparse.Namespace) -> int:
    state_dir, config = _state(args)
    rows = entry_rows(state_dir, config)
    if args.json:
        _print_json(rows)
        return 0
    headers = [
        "ENTRY",
        "SITE",
        "TYPE",
        "STATE",
        "FRONTEND",
        "IDLE",
        "RUNNING",
        "HELD",
        "REMOVING",
        "LIMITS(tot/idle/held)",
        "NOTES",
    ]
    table = [
        [r["entry"], r["site"], r["gridtype"], r["state"], r["client"] or "-", r["idle"], r["running"], r["held"], r["removing"], r["limits"], r["error"] or r["failing"] or r["why"]]
        for r in rows
    ]  # fmt: skip
    print(render_table(headers, table, right=(5, 6, 7, 8)))
    return 0


# -- analyze, logs ------------------------------------------------------------------------------
def _by_kind(counts: dict[str, int]) -> str:
    """{"Network": 2, "WN_Resource": 1} as 'Network 2, WN_Resource 1'."""
    return ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))


def cmd_analyze(args: argparse.Namespace) -> int:
    from factory.analysis import analyze

    state_dir, config = _state(args)
    journal = _journal(state_dir)
    glideins = journal.recent(time.time() - args.hours * 3600, args.entry)
    cpus = {e.name: e.cpus for e in config.entries} if config else {}
    live = {name: h.get("failing") or {} for name, h in _status(state_dir).get("entries", {}).items()}
    if args.entry:
        live = {name: v for name, v in live.items() if name == args.entry}
    results = [r.to_dict() for r in analyze(glideins, cpus, live)]
    if args.json:
        _print_json(results)
        return 0
    if not results:
        print(
            f"no glideins in the last {args.hours:g} hours"
            + (f" at entry {args.entry}" if args.entry else "")
        )
        return 0
    headers = [
        "ENTRY",
        "SUBMITTED",
        "STARTED",
        "VALIDATION FAILED",
        "CORE-H",
        "USED",
        "WASTED",
        "EFFIC",
        "JOBS",
        "JOBS/PILOT",
        "NO JOBS",
        "ENDED",
    ]
    table = []
    for r in results:
        failures = _by_kind(r["validation_failures"]) or "0"
        if r["failing_now"]:
            failures += f" (+{_by_kind(r['failing_now'])} now)"
        ended = _by_kind(r["ended"]) or "-"
        effic = f"{r['efficiency'] * 100:.0f}%" if r["efficiency"] is not None else "-"
        table.append(
            [r["entry"], r["submitted"], r["started"], failures, f"{r['core_hours']:.2f}", f"{r['used_core_hours']:.2f}",
             f"{r['wasted_core_hours']:.2f}", effic, r["jobs"], r["jobs_per_pilot_mean"], r["pilots_without_jobs"], ended]
        )  # fmt: skip
    print(f"glideins of the last {args.hours:g} hours")
    print(render_table(headers, table, right=(1, 2, 4, 5, 6, 7, 8, 9, 10)))
    return 0


def cmd_glideins(args: argparse.Namespace) -> int:
    from factory.glideins import GlideinState

    state_dir, _config = _state(args)
    if args.state and args.state not in {s.value for s in GlideinState}:
        raise UsageError(f"no state {args.state!r} (states: {', '.join(s.value for s in GlideinState)})")
    glideins = _journal(state_dir).listing(
        args.entry or "", args.state or "", args.frontend or "", args.limit
    )
    if args.json:
        _print_json([g.__dict__ | {"state": g.state.value} for g in glideins])
        return 0
    rows = [
        [g.glidein_id, g.entry, g.client or "-", g.state.value, g.native or "-", g.site_id or "-", _when(g.created), (g.reason or "")[:60]]
        for g in glideins
    ]  # fmt: skip
    print(
        render_table(
            ["GLIDEIN", "ENTRY", "FRONTEND", "STATE", "SITE STATE", "SITE ID", "CREATED", "REASON"], rows
        )
    )
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    state_dir, config = _state(args)
    journal = _journal(state_dir)
    glidein = journal.find(args.glidein)
    if glidein is None and config is not None and "@" in args.glidein:
        glidein = _by_slot(config, journal, args.glidein)  # a slot condor_status shows, still running
    if glidein is None:
        raise UpdraftError(
            f"no glidein {args.glidein!r} in the journal (give its id, tag, site id or the slot name condor_status shows)"
        )
    outputs = state_dir / "outputs"
    stdout_path, stderr_path = outputs / f"{glidein.glidein_id}.out", outputs / f"{glidein.glidein_id}.err"
    stdout = stdout_path.read_text() if stdout_path.exists() else ""
    stderr = stderr_path.read_text() if stderr_path.exists() else ""
    if not stdout and not stderr and config is not None and config.entry(glidein.entry) and glidein.site_id:
        stdout, stderr = _live_output(config, state_dir, glidein.entry, glidein.site_id, glidein.glidein_id)
    if args.json:
        _print_json(
            {"glidein": glidein.__dict__ | {"state": glidein.state.value}, "stdout": stdout, "stderr": stderr}
        )
        return 0
    print(f"glidein {glidein.glidein_id} ({glidein.tag})")
    facts = [
        ("entry", glidein.entry), ("frontend", glidein.client or "-"), ("site id", glidein.site_id or "-"),
        ("state", f"{glidein.state.value} ({glidein.native or '-'})"), ("reason", glidein.reason or "-"),
        ("created", _when(glidein.created)), ("submitted", _when(glidein.submitted)), ("started", _when(glidein.started)),
        ("ended", _when(glidein.ended)), ("releases", glidein.releases), ("lease until", _when(glidein.lease_until)),
    ]  # fmt: skip
    for name, value in facts:
        print(f"  {name:<12} {value}")
    record = glidein.record
    if record:
        print(
            f"\npilot result: {record.get('status')} (exit {record.get('exit_status')}): {record.get('reason') or '-'}"
        )
        for check in record.get("checks") or []:
            mark = "ok  " if check.get("ok") else "FAIL"
            detail = (
                ""
                if check.get("ok")
                else f" {check.get('failure_type')} {check.get('code')}: {check.get('message')}"
            )
            print(f"  {mark} {check.get('name'):<14} {check.get('seconds', 0):>7.2f} s{detail}")
        jobs = record.get("jobs") or {}
        print(f"  jobs: {', '.join(f'{k} {v}' for k, v in jobs.items() if v) or 'none'}")
    print("\n--- stdout ---\n" + (stdout or "(none collected)"))
    print("--- stderr ---\n" + (stderr or "(none collected)"))
    return 0


def _live_output(
    config: FactoryConfig, state_dir: Path, entry_name: str, site_id: str, glidein_id: str
) -> tuple[str, str]:
    from factory.adapters import ADAPTERS

    entry = config.entry(entry_name)
    assert entry is not None
    adapter = ADAPTERS[entry.gridtype](entry, config.name, state_dir / "entries" / entry.name)
    try:
        output = adapter.fetch_output(site_id, glidein_id)
    except Exception:
        return "", ""
    return (output.stdout, output.stderr) if output else ("", "")


# -- downtimes --------------------------------------------------------------------------------
def cmd_downtime_add(args: argparse.Namespace) -> int:
    state_dir, config = _state(args)
    scopes = [(s, t) for s, t in (("entry", args.entry), ("frontend", args.frontend)) if t]
    if args.all_entries:
        scopes.append(("factory", "*"))
    if len(scopes) != 1:
        raise UsageError("say what is down: one of --entry E, --frontend F, --all-entries")
    scope, target = scopes[0]
    if scope == "entry" and config is not None and config.entry(target) is None:
        from updraft.core.configfile import suggest

        raise UsageError(
            f"no entry {target!r} in the factory's config{suggest(target, [e.name for e in config.entries])}"
        )
    start = parse_when(args.start, time.time())
    end = (
        parse_when(args.end, None)
        if args.end
        else (start + duration_seconds(args.duration) if args.duration else None)
    )
    if end is not None and start is not None and end <= start:
        raise UsageError("the downtime ends before it starts")
    if end is not None and end <= time.time():
        raise UsageError(f"that window has already ended ({_when(end)}): there is nothing to declare")
    journal = Journal(state_dir / "journal.sqlite")
    if scope == "frontend":
        _warn_unknown_frontend(target, config, journal)
    downtime_id = journal.add_downtime(scope, target, start or time.time(), end, args.comment)
    journal.close()
    print(
        f"downtime {downtime_id}: {scope} {target} from {_when(start)} until {_when(end) if end else 'ended by hand'}"
    )
    return 0


def _warn_unknown_frontend(name: str, config: FactoryConfig | None, journal: Journal) -> None:
    """A frontend no entry names and no glidein came from is likely a typo: say so (it may still be meant)."""
    from updraft.core.configfile import suggest

    known = {f for e in (config.entries if config else []) for f in e.allowed_frontends if f != "*"}
    known |= {client.split(".", 1)[0] for _, client in journal.counts()}
    known |= {g.client.split(".", 1)[0] for g in journal.recent(time.time() - 30 * 86400)}
    if name not in known:
        print(
            f"warning: no entry names frontend {name!r} and no glidein came from it{suggest(name, sorted(known))}"
            + (f" (frontends seen: {', '.join(sorted(known))})" if known else ""),
            file=sys.stderr,
        )


def cmd_downtime_list(args: argparse.Namespace) -> int:
    state_dir, _ = _state(args)
    journal = _journal(state_dir)
    now = time.time()
    downtimes = journal.downtimes(include_past=args.all, now=now)
    journal.close()
    if args.json:
        _print_json([d.__dict__ | {"active": d.active(now)} for d in downtimes])
        return 0
    if not downtimes:
        print("no downtimes")
        return 0
    rows = [
        [
            d.id,
            d.scope,
            d.target,
            _when(d.start),
            _when(d.end) if d.end else "-",
            "yes" if d.active(now) else "no",
            d.comment,
        ]
        for d in downtimes
    ]
    print(render_table(["ID", "SCOPE", "TARGET", "START", "END", "ACTIVE", "COMMENT"], rows, right=(0,)))
    return 0


def cmd_downtime_end(args: argparse.Namespace) -> int:
    state_dir, _ = _state(args)
    journal = _journal(state_dir)
    ended = journal.end_downtime(args.id)
    journal.close()
    if not ended:
        raise UpdraftError(f"no current downtime {args.id} (see 'updraft factory downtime list')")
    print(f"downtime {args.id} ended")
    return 0


# -- the parser -------------------------------------------------------------------------------
def add_commands(nouns: Any) -> None:
    verbs, verb = service_verbs(nouns, "factory", "the glidein factory", CONFIG_ENV)

    run = verb("run", cmd_run, "run the factory in the foreground")
    run.add_argument("--once", action="store_true", help="one cycle, then stop (glideins keep running)")
    run.add_argument("--drain-on-exit", action="store_true", help="remove every glidein when stopping")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    check = verb("check", cmd_check, "validate a config file (file:line errors)", config=False)
    check.add_argument("file", nargs="?", help=f"default: ${CONFIG_ENV}, else /etc/updraft/factory.yaml")
    check.add_argument("--json", action="store_true", help="print the config as the factory reads it")
    imported = verb(
        "import-gwms", cmd_import_gwms, "a glideinWMS factory's entries (glideinWMS.xml, config.d/) as Updraft YAML",
        config=False,
    )  # fmt: skip
    imported.add_argument("files", nargs="+", metavar="FILE_OR_DIR")
    imported.add_argument("-o", "--output", help="write the YAML here (default: standard output)")
    imported.add_argument("--json", action="store_true", help="the summary as JSON")
    reconfig = verb("reconfig", cmd_reconfig, "make the running factory reload its config (like SIGHUP)")
    reconfig.add_argument("--timeout", type=float, default=60.0)
    entries = verb("entries", cmd_entries, "entries with their state, glideins per frontend and limits")
    entries.add_argument("--json", action="store_true")
    analyze = verb(
        "analyze", cmd_analyze, "what the glideins did: starts, validation failures, hours used and wasted"
    )
    analyze.add_argument("--entry")
    analyze.add_argument("--hours", type=float, default=24.0)
    analyze.add_argument("--json", action="store_true")
    listing = verb("glideins", cmd_glideins, "the glideins in the journal, newest first")
    listing.add_argument("--entry")
    listing.add_argument(
        "--state", help="unsubmitted, queued, running, held, completed, failed, removed, lost"
    )
    listing.add_argument("--frontend", help="a frontend, or frontend.group")
    listing.add_argument("--limit", type=int, default=1000)
    listing.add_argument("--json", action="store_true")
    logs = verb("logs", cmd_logs, "a glidein's output and its validation result")
    logs.add_argument("glidein", help="glidein id, tag, site job id, or the slot name condor_status shows")
    logs.add_argument("--json", action="store_true")

    add, listing, end = downtime_verbs(verbs, "stop new submissions for a while")
    add.add_argument("--entry", help="one entry")
    add.add_argument("--frontend", help="every request of one frontend")
    add.add_argument("--all-entries", action="store_true", help="the whole factory")
    add.add_argument("--duration", help="instead of --end: 90m, 2h, 1d")
    add.set_defaults(func=cmd_downtime_add)
    listing.set_defaults(func=cmd_downtime_list)
    end.set_defaults(func=cmd_downtime_end)
