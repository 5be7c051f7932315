"""`updraft frontend ...`: run it, check a config, reload it, and see why it asked for what it asked."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from frontend.config import FrontendConfig, GroupConfig, load_frontend_config
from updraft.core import classads, payloads, protocol
from updraft.core.errors import UpdraftError, UsageError
from updraft.core.layout import config_env
from updraft.core.tables import render_table
from updraft.service import downtime_verbs, located_config, service_verbs, setup_logging, signal_reload

CONFIG_ENV = config_env("frontend")


def _config(args: argparse.Namespace) -> FrontendConfig:
    return load_frontend_config(located_config("frontend", getattr(args, "config", None)))


def cmd_run(args: argparse.Namespace) -> int:
    from frontend.loop import Frontend

    config = _config(args)
    setup_logging(config.resolve(config.log_dir) if config.log_dir else None, "frontend.log", args.log_level)
    frontend = Frontend(config)
    frontend.start()
    print(
        f"frontend {config.name} running (pid {os.getpid()}), {len(config.groups)} group(s)",
        file=sys.stderr,
        flush=True,
    )
    try:
        if args.once:
            frontend.cycle()
        else:
            frontend.run_forever()
    finally:
        frontend.stop()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    args.file = str(located_config("frontend", args.file))
    config = load_frontend_config(Path(args.file))
    if args.json:
        import dataclasses

        print(json.dumps(dataclasses.asdict(config), indent=2, default=str))
        return 0
    groups = ", ".join(f"{g.name} (matches on {', '.join(g.job_refs) or 'nothing'})" for g in config.groups)
    print(f"{args.file}: OK: frontend {config.name}, {len(config.groups)} group(s): {groups}")
    return 0


def cmd_import_gwms(args: argparse.Namespace) -> int:
    from frontend.importer import import_frontend
    from updraft.service import finish_import

    text, report = import_frontend(Path(args.file))
    return finish_import(text, report, args.output, load_frontend_config, args.json, "frontend")


def cmd_reconfig(args: argparse.Namespace) -> int:
    config = _config(args)  # refused here first, with the line
    print(
        signal_reload(
            config.resolve(config.state_dir),
            "frontend.pid",
            f"frontend {config.name}",
            args.timeout,
        )
    )
    return 0


# -- explain ------------------------------------------------------------------------------------
def _records(args: argparse.Namespace, config: FrontendConfig) -> dict[str, Any]:
    from frontend.loop import Frontend, explain_data, load_explain

    if args.dry_run:
        frontend = Frontend(config)
        return explain_data(frontend.cycle(advertise=False), time.time())
    data = load_explain(config.resolve(config.state_dir))
    if not data:
        raise UpdraftError(
            "no cycle recorded yet: is the frontend running? (or use --dry-run to compute one now)"
        )
    return data


#: glideinWMS's limit names (explain.json's keys) -> the group's config knob that sets each
KNOBS = {
    "TotalGlideinsPerEntry": "running_glideins_per_entry.max",
    "IdleGlideinsPerEntry": "idle_slots_per_entry.max",
    "TotalGlideinsPerGroup": "running_glideins_total.max",
    "IdleGlideinsPerGroup": "idle_slots_total.max",
    "TotalGlideinsPerFrontend": "limits.running_glideins_total.max",
    "IdleGlideinsPerFrontend": "limits.idle_slots_total.max",
    "TotalGlideinsGlobal": "limits.running_glideins_total_global.max",
    "IdleGlideinsGlobal": "limits.idle_slots_total_global.max",
}


def headroom_text(headroom: dict[str, int]) -> str:
    """The room left under each limit, by the knob an operator sets (glideinWMS's name beside it)."""
    return ", ".join(f"{KNOBS.get(name, name)} {room} ({name})" for name, room in headroom.items())


def counts_text(counts: dict[str, int], prefix: str = "") -> str:
    """{"UCSD": 3} as 'UCSD 3' (people read this line, not Python)."""
    return ", ".join(f"{prefix}{key} {value}" for key, value in counts.items()) if counts else "none"


def _limits_text(decision: dict[str, Any]) -> str:
    parts = [f"limit {k}" for k in decision["limits"]] + [f"curb {k}" for k in decision["curbs"]]
    if decision["remove"] != "NO":
        parts.append(f"remove {decision['remove']}")
    return ", ".join(parts)


def cmd_explain(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.job:
        return explain_job(config, args.job, args.group)
    data = _records(args, config)
    groups = data["groups"]
    if args.group:
        if args.group not in groups:
            raise UsageError(f"no group {args.group!r} (groups: {', '.join(groups)})")
        groups = {args.group: groups[args.group]}
    if args.json:
        print(json.dumps({"time": data["time"], "groups": groups}, indent=2, default=str))
        return 0
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data["time"]))
    print(f"frontend {config.name}, cycle of {stamp}")
    for name, group in groups.items():
        entries = group["entries"]
        if args.entry:
            entries = {k: v for k, v in entries.items() if k == args.entry or k.split("@")[0] == args.entry}
            if not entries:
                raise UsageError(
                    f"group {name} has no entry {args.entry!r} (entries: {', '.join(group['entries'])})"
                )
        state = (
            "data complete"
            if group["complete"]
            else "INCOMPLETE data, last requests kept: " + "; ".join(group["errors"].values())
        )
        unmatched = group.get("unmatched") or {}
        if not group["entries"]:
            seen = group.get("factories_seen") or []
            print(
                f"\ngroup {name}: {state}; {unmatched.get('idle', 0)} idle jobs; no factory advertises an entry that"
                f" allows {config.name}; factories seen: {', '.join(seen) if seen else 'none'}"
            )
            continue
        print(
            f"\ngroup {name}: {state}; idle jobs matching no usable entry: {unmatched.get('idle', 0)} (only entries in downtime: {unmatched.get('down_only', 0)})"
        )
        overflow = group.get("overflow")
        if overflow and (overflow["widened"] or overflow["held_back"] or overflow["overflowing"]):
            print(
                f"  overflow: widened now {counts_text(overflow['widened'], 'to ')}; overflowing per home site"
                f" {counts_text(overflow['overflowing'])}; held back {counts_text(overflow['held_back'])}"
            )
        rows = []
        for entry_name, record in entries.items():
            counts, decision = record["counts"], record["decision"]
            rows.append([
                entry_name + (" (down)" if record["down"] else ""), record["site"], f"{counts['idle_jobs']:g}", f"{counts['old_idle_jobs']:g}",
                f"{counts['running_jobs']:g}", counts["glideins_queued"], counts["idle_slots"],
                counts["idle_slots"] + counts["busy_slots"] + counts.get("other_slots", 0),
                counts["failed_pilots"], decision["idle"], decision["max_run"], record["quiet_cycles"], _limits_text(decision),
            ])  # fmt: skip
        headers = [
            "ENTRY",
            "SITE",
            "IDLE JOBS",
            "OLD IDLE",
            "RUNNING",
            "QUEUED",
            "IDLE SLOTS",
            "SLOTS",
            "FAILED",
            "REQ IDLE",
            "MAX RUN",
            "QUIET",
            "LIMITS / CURBS",
        ]
        print(render_table(headers, rows, right=tuple(range(2, 12))))
        if args.entry:
            for entry_name, record in entries.items():
                decision = record["decision"]
                print(f"\n  {entry_name}:")
                for step in decision["steps"]:
                    print(f"    {step}")
                print("    headroom: " + headroom_text(decision["headroom"]))
                group_cfg = config.group(name)
                if group_cfg is not None:
                    cap = group_cfg.limits.idle_glideins_per_entry
                    print(
                        f"    the request itself: at most idle_glideins_per_entry.max {cap.max} (reserve {cap.reserve})"
                    )
                removal = decision.get("removal") or {}
                if removal:
                    print(
                        f"    removal: sends {decision['remove']} (margin {decision['margin']}); cycles without idle jobs {removal.get('idle0', 0)}, "
                        f"without a slot in use {removal.get('glideempty', 0)}, without a slot {removal.get('glidetotal0', 0)}"
                    )  # fmt: skip
                for kind, table in (("limit", decision["limits"]), ("curb", decision["curbs"])):
                    for key, value in table.items():
                        print(f"    {kind} {key}: {value}")
    return 0


def explain_job(config: FrontendConfig, job_id: str, only_group: str | None) -> int:
    """One job's situation: the entries it matches (and the clause that said no elsewhere), the
    request at each and what capped it, the factory's side, failed pilots, its overflow clock."""
    from frontend import job_situation
    from frontend.loop import factory_pool_client, load_explain
    from frontend.matching import entries_from_ads, from_their_factories
    from updraft.service import service_client

    client = service_client(config.pool, config.resolve, "frontend", config.name, config.query_timeout_s)
    factories = factory_pool_client(config, client)
    protocol.parse_job_id(job_id)
    ads = client.query(payloads.QueryRequest("", [], [job_id])).ads
    if not ads:
        raise UpdraftError(f"job {job_id} is not in the queue")
    job = ads[0]
    believed, _forged = from_their_factories(factories.query_ads(protocol.AdType.GlideFactory.value))
    entries = entries_from_ads(believed, config)
    last_cycle = load_explain(config.resolve(config.state_dir)).get("groups", {})
    job_ad = classads.build(job)
    cpus = classads.int_of(job.get("RequestCpus"), 1)
    groups = [g for g in config.groups if g.enabled and (not only_group or g.name == only_group)]
    print(
        f"job {job_id}: status {protocol.JobStatus(int(job.get('JobStatus', '1'))).name.capitalize()}, {cpus} core(s), DESIRED_Sites {job.get(protocol.ATTR_DESIRED_SITES, 'undefined')}"
    )
    for group in groups:
        if not classads.is_true(classads.evaluate(group.job_constraint, job_ad)):
            print(
                f"\ngroup {group.name}: not for this group (job_constraint {group.job_constraint} is not true)"
            )
            continue
        matched, refused = [], []
        for entry in entries:
            why = _why_not(group, entry, job_ad, cpus)
            (refused if why else matched).append((entry, why))
        ignore_down = (
            config.ignore_down_entries if group.ignore_down_entries is None else group.ignore_down_entries
        )
        usable = [e for e, _ in matched if not (ignore_down and e.down)]
        print(
            f"\ngroup {group.name}: matches {len(matched)} entr{'y' if len(matched) == 1 else 'ies'}"
            + (
                f", counts 1/{len(usable)} to each" + (" of those up" if ignore_down else "")
                if usable
                else ""
            )
        )
        recorded = (last_cycle.get(group.name) or {}).get("entries", {})
        for entry, _ in matched:
            print(
                f"  yes  {entry.name} ({entry.site})"
                + ("  -- in downtime: no pilots asked" if entry.down else "")
            )
            for line in (
                job_situation.request_lines(recorded.get(entry.name), entry)
                + job_situation.factory_lines(factories, entry, config.name, group.name)
                + job_situation.failure_lines(client, entry, config.name)
            ):
                print(line)
        for entry, why in refused:
            print(f"  no   {entry.name} ({entry.site}): {why}")
        for line in job_situation.overflow_lines(group, job, job_ad):
            print(line)
    if not entries:
        print("\nno factory advertises an entry that allows " + config.name)
    return 0


def _why_not(group: GroupConfig, entry: Any, job_ad: Any, cpus: int) -> str:
    if group.factory_constraint.strip().lower() not in ("", "true") and not classads.is_true(
        classads.evaluate(group.factory_constraint, entry.ad)
    ):
        return f"the group's factory_constraint excludes it ({group.factory_constraint})"
    if entry.cpus and cpus > entry.cpus:
        return f"the job needs {cpus} cores, the entry's pilots have {entry.cpus}"
    if classads.is_true(classads.evaluate(group.match_expr, job_ad, entry.ad)):
        return ""
    for clause in classads.split_conjunction(group.match_expr):
        if not classads.is_true(classads.evaluate(clause, job_ad, entry.ad)):
            own, target = classads.references(clause)
            values = [f"MY.{n} = {classads.literal_text(classads.evaluate(n, job_ad))}" for n in sorted(own)]
            values += [
                f"TARGET.{n} = {classads.literal_text(classads.evaluate(n, entry.ad))}"
                for n in sorted(target)
            ]
            return f"{clause} is not true  [{', '.join(values)}]"
    return f"match_expr is not true ({group.match_expr})"


# -- downtime -----------------------------------------------------------------------------------
def cmd_downtime(args: argparse.Namespace) -> int:
    from frontend.downtime import add_downtime, end_downtime, read_downtimes
    from frontend.loop import downtimes_path
    from updraft.service import parse_when

    config = _config(args)
    path = downtimes_path(config)
    now = time.time()
    if args.action == "add":
        start = parse_when(args.start, now) or now
        end = parse_when(args.end, None) or 0.0
        if end and end <= start:
            raise UsageError("--end must be after --start")
        made = add_downtime(path, start, end, args.comment)
        until = time.strftime("%Y-%m-%d %H:%M", time.localtime(made.end)) if made.end else "it is ended"
        print(f"downtime {made.id}: frontend {config.name} asks for no glideins until {until}")
        return 0
    if args.action == "end":
        try:
            ended = end_downtime(path, args.id, now)
        except KeyError:
            raise UsageError(f"no downtime {args.id} (see: updraft frontend downtime list)") from None
        print(f"downtime {ended.id} ended")
        return 0
    downtimes = [d for d in read_downtimes(path) if args.all or not d.end or d.end > now]
    if args.json:
        print(json.dumps([{**d.__dict__, "active": d.active(now)} for d in downtimes], indent=2))
        return 0
    stamp = lambda t: time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"  # noqa: E731
    rows = [
        [d.id, stamp(d.start), stamp(d.end), "yes" if d.active(now) else "no", d.comment] for d in downtimes
    ]
    print(render_table(["ID", "START", "END", "ACTIVE", "COMMENT"], rows))
    return 0


# -- simulate -----------------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace) -> int:
    from frontend.simulate import simulate
    from frontend.simulate_inputs import load_sites, load_workload
    from frontend.simulate_report import compare, print_report

    config = load_frontend_config(Path(args.config))
    sites = load_sites(Path(args.sites))
    workload = load_workload(Path(args.workload))
    report = simulate(
        config, sites, workload, hours=args.hours, cycle_s=args.cycle, seed=args.seed, progress=not args.json
    )
    other = None
    if args.compare:
        other = simulate(
            load_frontend_config(Path(args.compare)),
            sites,
            workload,
            hours=args.hours,
            cycle_s=args.cycle,
            seed=args.seed,
            progress=not args.json,
        )
    if args.json:
        print(
            json.dumps(
                {"config": report.to_dict(), **({"compare": other.to_dict()} if other else {})}, indent=2
            )
        )
    elif other is not None:
        compare(report, other, Path(args.config).name, Path(args.compare).name)
    else:
        print_report(report)
    return 0


def add_commands(nouns: Any) -> None:
    verbs, verb = service_verbs(
        nouns, "frontend", "the VO frontend: pilot requests from the queue", CONFIG_ENV
    )

    run = verb("run", cmd_run, "run the frontend in the foreground (SIGHUP reloads the config)")
    run.add_argument("--once", action="store_true", help="one cycle, then stop")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    check = verb("check", cmd_check, "validate a config file (file:line errors)", config=False)
    check.add_argument("file", nargs="?", help=f"default: ${CONFIG_ENV}, else /etc/updraft/frontend.yaml")
    check.add_argument("--json", action="store_true")
    imported = verb("import-gwms", cmd_import_gwms, "a glideinWMS frontend.xml as Updraft YAML", config=False)
    imported.add_argument("file", metavar="frontend.xml")
    imported.add_argument("-o", "--output", help="write the YAML here (default: standard output)")
    imported.add_argument("--json", action="store_true", help="the summary as JSON")
    reconfig = verb("reconfig", cmd_reconfig, "make the running frontend reload its config (like SIGHUP)")
    reconfig.add_argument("--timeout", type=float, default=60.0)
    explain = verb(
        "explain", cmd_explain, "the numbers behind each request, or why a job matches where it does"
    )
    explain.add_argument("--group")
    explain.add_argument("--entry", help="an entry's name (entry or entry@factory): its steps and headroom")
    explain.add_argument("--job", help="CLUSTER.PROC: which entries it matches, and why not the others")
    explain.add_argument(
        "--dry-run", action="store_true", help="compute a cycle now instead of reading the last one"
    )
    explain.add_argument("--json", action="store_true")
    for parser in downtime_verbs(verbs, "the frontend's own downtime: ask every entry for nothing"):
        parser.set_defaults(func=cmd_downtime)
    simulate = verbs.add_parser(
        "simulate", help="run the request policy against simulated sites on a virtual clock"
    )
    simulate.add_argument("--config", "-c", required=True)
    simulate.add_argument(
        "--sites", required=True, help="YAML: sites with their entries, slots, queue waits, failure rates"
    )
    simulate.add_argument(
        "--workload",
        required=True,
        help="YAML: batches of jobs (count, cores, runtime, desired sites, arrival)",
    )
    simulate.add_argument("--hours", type=float, default=24.0)
    simulate.add_argument(
        "--cycle", type=float, default=60.0, help="simulated seconds between frontend cycles"
    )
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--compare", help="another frontend config to run on the same workload")
    simulate.add_argument("--json", action="store_true")
    simulate.set_defaults(func=cmd_simulate)
