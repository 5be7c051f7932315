"""condor_q: show jobs in the queue, the way HTCondor's condor_q does."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import OrderedDict
from typing import Any

from updraft.core import classads
from updraft.core.client import token_claims
from updraft.core.payloads import QueryRequest
from updraft.core.protocol import ATTR_DAG_NODE_NAME, ATTR_DAGMAN_JOB_ID, parse_job_id
from userpool.cli import common
from userpool.cli.formats import (
    format_batch_table,
    format_hold_table,
    format_job_table,
    format_totals,
    schedd_banner,
)

TOOL = "condor_q"
BATCH_ATTRS = [
    "ClusterId", "ProcId", "Owner", "JobBatchName", "QDate", "JobStatus", "TotalSubmitProcs", "JobUniverse",
    "DAG_NodesTotal", "DAG_NodesDone",
]  # fmt: skip
DAG_ATTRS = [ATTR_DAGMAN_JOB_ID, ATTR_DAG_NODE_NAME, "JobUniverse"]
TABLE_ATTRS = [
    "ClusterId", "ProcId", "Owner", "QDate", "JobStatus", "JobPrio", "ImageSize", "MemoryUsage", "Cmd", "Args",
    "Arguments", "RemoteWallClockTime", "JobCurrentStartDate", "RemoteHost", "HoldReason", "EnteredCurrentStatus",
]  # fmt: skip


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=TOOL, description="Show jobs in the Updraft queue.", allow_abbrev=False
    )
    parser.add_argument("restrictions", nargs="*", metavar="cluster|cluster.proc|owner")
    common.add_pool_options(parser)
    parser.add_argument(
        "-constraint",
        "--constraint",
        action="append",
        default=[],
        help="a ClassAd expression jobs must satisfy",
    )
    parser.add_argument("-allusers", "--allusers", action="store_true", help="show every user's jobs")
    parser.add_argument("-nobatch", "--nobatch", action="store_true", help="one line per job")
    parser.add_argument("-batch", "--batch", action="store_true", help="one line per batch (the default)")
    parser.add_argument(
        "-dag", "--dag", action="store_true", help="with -nobatch: each DAG's node jobs under their DAG job"
    )
    parser.add_argument("-run", "--run", action="store_true", help="only running jobs")
    parser.add_argument(
        "-hold", "--hold", action="store_true", help="only held jobs, with their hold reasons"
    )
    parser.add_argument("-idle", "--idle", action="store_true", help="only idle jobs")
    parser.add_argument(
        "-af",
        "-autoformat",
        "--autoformat",
        dest="af",
        nargs="+",
        metavar="ATTR",
        help="print these attributes",
    )
    parser.add_argument(
        "-format", "--format", dest="formats", nargs=2, action="append", metavar=("FMT", "ATTR")
    )
    parser.add_argument("-l", "-long", "--long", dest="long", action="store_true", help="whole ads")
    parser.add_argument("-json", "--json", action="store_true", help="ads as JSON")
    parser.add_argument("-attributes", "--attributes", help="comma-separated attributes for -l/-json")
    parser.add_argument("-totals", "--totals", action="store_true", help="only the totals")
    parser.add_argument(
        "-autocluster", "--autocluster", action="store_true", help="show autoclusters of idle jobs"
    )
    parser.add_argument(
        "-better-analyze", "-analyze", "--better-analyze", dest="analyze", action="store_true"
    )
    parser.add_argument("-limit", "--limit", type=int, default=0)
    return parser


def split_restrictions(restrictions: list[str]) -> tuple[list[str], list[str]]:
    ids, owners = [], []
    for item in restrictions:
        try:
            parse_job_id(item)
            ids.append(item)
        except Exception:
            owners.append(item)
    return ids, owners


def status_constraint(args: argparse.Namespace) -> str:
    wanted = [s for flag, s in ((args.run, 2), (args.hold, 5), (args.idle, 1)) if flag]
    return " || ".join(f"JobStatus == {s}" for s in wanted)


@common.main_wrapper(TOOL)
def main(argv: list[str] | None = None) -> int:
    args, af_flags = common.parse_listing(parser(), argv, "restrictions")
    client = common.client_from(args)
    claims = token_claims(client.token)
    me = str(claims.get("sub", os.environ.get("USER", "")))
    superuser = "admin" in str(claims.get("scope", "")).split()
    ids, owners = split_restrictions(args.restrictions)
    if not ids and not owners and not args.allusers and not superuser and me:
        owners = [me]
    constraint = common.joined_constraint(TOOL, [*args.constraint, status_constraint(args)])

    if args.autocluster:
        return show_autoclusters(client, args, af_flags)
    if args.analyze:
        return analyze(client, ids, owners, constraint)

    if args.totals:
        result = client.query(QueryRequest(constraint, [], ids, owners, 0, True, True))
        print(format_totals("query", result.totals or {}))
        return 0

    projection: list[str] = []
    if args.af:
        projection = _projection_for(args.af)
    elif args.formats:
        projection = _projection_for([attr for _fmt, attr in args.formats])
    elif args.attributes:
        projection = [a.strip() for a in args.attributes.split(",") if a.strip()]
    elif not (args.long or args.json):
        projection = TABLE_ATTRS + DAG_ATTRS if (args.nobatch or args.run or args.hold) else BATCH_ATTRS
    result = client.query(QueryRequest(constraint, projection, ids, owners, args.limit, True))
    ads = result.ads
    if args.formats and not args.af:
        print_formats(ads, args.formats)
        return 0
    if common.print_requested_format(ads, args, af_flags):
        return 0
    everyone = client.query(QueryRequest("", [], [], [], 0, True, True)).totals or {}
    out = sys.stdout
    out.write("\n\n" + schedd_banner(client.url) + "\n")
    if args.hold:
        out.write(format_hold_table(ads))
    elif args.nobatch or args.run:
        names = dag_tree(ads) if args.dag else {}
        ordered = sorted(ads, key=lambda ad: names[_key(ad)][0]) if names else ads
        shown = {key: name for key, (_order, name) in names.items() if name} if args.dag else None
        out.write(format_job_table(ordered, time.time(), with_host=args.run, names=shown))
    else:
        out.write(format_batch_table(_batches(ads)))
    out.write("\n" + format_totals("query", result.totals or {}) + "\n")
    if me:  # HTCondor 24: the query, then every job of the user, then everyone's
        mine = (
            result.totals
            if owners == [me] and not ids and not constraint
            else client.query(QueryRequest("", [], [], [me], 0, True, True)).totals
        )
        out.write(format_totals(me, mine or {}) + "\n")
    out.write(format_totals("all users", everyone) + "\n")
    return 0


def _projection_for(expressions: list[str]) -> list[str]:
    """Attributes to fetch for -af: names as given, plus what any expression reads."""
    names: dict[str, None] = {}
    for expression in expressions:
        if classads.is_valid_attribute_name(expression):
            names[expression] = None
            continue
        try:
            for name in classads.references(expression)[0]:
                names[name] = None
        except classads.ExpressionError:
            common.die(TOOL, f"cannot parse -af expression {expression!r}")
    # an attribute's value may itself be an expression reading others: fetch whole ads then
    return (
        []
        if any(not classads.is_valid_attribute_name(e) for e in expressions)
        else [*list(names), "ClusterId", "ProcId"]
    )


def _key(texts: dict[str, str]) -> tuple[int, int]:
    return int(texts.get("ClusterId", 0)), int(texts.get("ProcId", 0))


def dag_tree(ads: list[dict[str, str]]) -> dict[tuple[int, int], tuple[tuple[int, ...], str]]:
    """condor_q -dag: each job's place (a DAG's nodes right under it, sub-DAGs nested) and the
    name shown in the OWNER column for a node (`` |-A``, deeper ones indented)."""
    by_cluster = {_key(ad)[0]: ad for ad in ads}
    placed: dict[tuple[int, int], tuple[tuple[int, ...], str]] = {}

    def place(ad: dict[str, str], depth: int = 0) -> tuple[tuple[int, ...], int]:
        key = _key(ad)
        if key in placed:
            return placed[key][0], len(placed[key][0]) // 2
        values = common.table_values(ad, [ATTR_DAGMAN_JOB_ID, ATTR_DAG_NODE_NAME])
        parent_id = values[ATTR_DAGMAN_JOB_ID]
        parent = by_cluster.get(parent_id) if isinstance(parent_id, int) and depth < 20 else None
        if parent is None:
            order, level = (key[0], key[1]), 0
        else:
            parent_order, parent_level = place(parent, depth + 1)
            order, level = (*parent_order, *key), parent_level + 1
        name = f"{' ' * level}|-{values[ATTR_DAG_NODE_NAME]}" if parent is not None else ""
        placed[key] = (order, name)
        return order, level

    for ad in ads:
        place(ad)
    return placed


def _batches(ads: list[dict[str, str]]) -> list[dict[str, Any]]:
    """One row per batch; a DAG's row counts its nodes (DAG_NodesDone, DAG_NodesTotal), not its DAGMan job."""
    batches: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
    for texts in ads:
        values = common.table_values(texts, BATCH_ATTRS)
        owner = str(values["Owner"])
        name = (
            values["JobBatchName"]
            if isinstance(values["JobBatchName"], str)
            else f"ID: {values['ClusterId']}"
        )
        batch = batches.setdefault(
            (owner, name),
            {"owner": owner, "name": name, "qdate": values["QDate"], "counts": {}, "ids": [], "clusters": {}},
        )
        if values["JobUniverse"] == 7:  # the DAG job: its nodes are the batch's jobs
            batch["dag"] = (values["DAG_NodesDone"], values["DAG_NodesTotal"], int(values["ClusterId"]))
            if isinstance(values["QDate"], int) and (
                not isinstance(batch["qdate"], int) or values["QDate"] < batch["qdate"]
            ):
                batch["qdate"] = values["QDate"]
            continue
        status = int(values["JobStatus"])
        batch["counts"][status] = batch["counts"].get(status, 0) + 1
        batch["ids"].append((int(values["ClusterId"]), int(values["ProcId"])))
        total = values["TotalSubmitProcs"]
        batch["clusters"][int(values["ClusterId"])] = int(total) if isinstance(total, int) else 0
        if isinstance(values["QDate"], int) and (
            not isinstance(batch["qdate"], int) or values["QDate"] < batch["qdate"]
        ):
            batch["qdate"] = values["QDate"]
    return list(batches.values())


def print_formats(ads: list[dict[str, str]], formats: list[list[str]]) -> None:
    for texts in ads:
        line = ""
        for fmt, attr in formats:
            value = common.evaluate(texts, [attr])[0]
            fmt = fmt.replace("\\n", "\n").replace("\\t", "\t")
            try:
                if "%v" in fmt or "%V" in fmt:
                    line += fmt.replace("%v", classads.format_value(value)).replace(
                        "%V", classads.literal_text(value)
                    )
                else:
                    line += fmt % (
                        value
                        if not isinstance(value, classads.classad2.Value)
                        else classads.format_value(value)
                    )
            except (TypeError, ValueError):
                line += classads.format_value(value)
        sys.stdout.write(line)


def show_autoclusters(client: Any, args: argparse.Namespace, af_flags: str) -> int:
    autoclusters = client.autoclusters()
    if args.json:
        common.print_json([ac.to_dict() for ac in autoclusters])
        return 0
    rows = [{"AutoClusterId": str(ac.id), "JobCount": str(ac.idle), **ac.attrs} for ac in autoclusters]
    if args.af:
        common.print_autoformat(rows, args.af, af_flags)
        return 0
    print(f"{'AutoId':>6} {'JobCount':>8}  {'Submitter':<16} {'Cpus':>4} {'Memory':>12}  Requirements")
    for ac in autoclusters:
        attrs = ac.attrs
        print(
            f"{ac.id:>6} {ac.idle:>8}  {ac.submitter:<16} {attrs.get('RequestCpus', '1'):>4} "
            f"{attrs.get('RequestMemory', '')[:12]:>12}  {attrs.get('Requirements', 'true')}"
        )
    return 0


def analyze(client: Any, ids: list[str], owners: list[str], constraint: str) -> int:
    targets = [i for i in ids if parse_job_id(i)[1] is not None]
    if not targets:
        wanted = f"({constraint}) && JobStatus == 1" if constraint else "JobStatus == 1"
        result = client.query(
            QueryRequest(wanted, ["ClusterId", "ProcId"], [i for i in ids if "." not in i], owners, 5)
        )
        targets = [f"{ad['ClusterId']}.{ad['ProcId']}" for ad in result.ads]
    if not targets:
        print("No idle jobs to analyze.")
        return 0
    for job_id in targets:
        print("\n" + client.analyze(job_id).text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
