"""condor_status: ads in the pool's collector (pilot slots by default)."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from updraft.core import protocol
from updraft.core.protocol import AdType
from userpool.cli import common

TOOL = "condor_status"
SLOT_ATTRS = [
    "Name",
    "OpSys",
    "Arch",
    "State",
    "Activity",
    "LoadAvg",
    "Memory",
    "Cpus",
    protocol.ATTR_GLIDEIN_SITE,
    "EnteredCurrentActivity",
]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=TOOL, description="Show ads in the Updraft collector.", allow_abbrev=False
    )
    parser.add_argument("names", nargs="*", help="only ads with these names")
    common.add_pool_options(parser)
    parser.add_argument("-any", "--any", action="store_true", help="ads of every type")
    parser.add_argument(
        "-ads", "-subsystem", "--ads", dest="ad_type", default="Machine",
        help="ad type: Machine (slots), glidefactory, glideclient, glidefactoryclient, glideresource, pilotfailure",
    )  # fmt: skip
    parser.add_argument("-constraint", "--constraint", action="append", default=[])
    parser.add_argument("-af", "-autoformat", "--autoformat", dest="af", nargs="+", metavar="ATTR")
    parser.add_argument("-l", "-long", "--long", dest="long", action="store_true")
    parser.add_argument("-json", "--json", action="store_true")
    parser.add_argument(
        "-total", "-totals", "--total", dest="total", action="store_true", help="only the summary"
    )
    return parser


@common.main_wrapper(TOOL)
def main(argv: list[str] | None = None) -> int:
    args, af_flags = common.parse_listing(parser(), argv, "names")
    client = common.client_from(args)
    ad_type = "any" if args.any else AdType.parse(args.ad_type).value
    constraints = [c for c in args.constraint if c.strip()]
    if args.names:
        constraints.append(" || ".join(f"Name == {common.classads.quote(n)}" for n in args.names))
    constraint = common.joined_constraint(TOOL, constraints)
    ads = client.query_ads(ad_type, constraint)
    ads.sort(key=lambda texts: (common.lookup(texts, "MyType") or "", common.lookup(texts, "Name") or ""))
    if common.print_requested_format(ads, args, af_flags):
        return 0
    if ad_type == AdType.Slot.value:
        print_slots(ads, args.total)
    else:
        print_generic(ads)
    return 0


def print_slots(ads: list[dict[str, str]], total_only: bool) -> None:
    if not ads:
        return  # as HTCondor's: a pool without slots prints nothing
    now = time.time()
    summary: Counter[tuple[str, str]] = Counter()
    if not total_only and ads:
        print(
            f"{'Name':<40} {'OpSys':<6} {'Arch':<7} {'State':<10} {'Activity':<9} {'Cpus':>4} {'Mem':>7} {'Site':<12} ActvtyTime"
        )
    for texts in ads:
        values = common.table_values(texts, SLOT_ATTRS)
        state = values["State"] if isinstance(values["State"], str) else "Unclaimed"
        summary[(f"{values['Arch']}/{values['OpSys']}", state)] += 1
        if total_only:
            continue
        since = values["EnteredCurrentActivity"]
        age = _age(now - since) if isinstance(since, int) and since > 0 else "0+00:00:00"
        site = (
            values[protocol.ATTR_GLIDEIN_SITE] if isinstance(values[protocol.ATTR_GLIDEIN_SITE], str) else ""
        )
        shown = {name: "" if value is None else str(value) for name, value in values.items()}
        print(
            f"{shown['Name']:<40} {shown['OpSys']:<6} {shown['Arch']:<7} {state:<10} {shown['Activity']:<9}"
            f" {shown['Cpus']:>4} {shown['Memory']:>7} {site:<12} {age}"
        )
    platforms = sorted({p for p, _ in summary})
    states = ["Owner", "Claimed", "Unclaimed", "Matched", "Preempting", "Drain"]
    print()
    print(f"{'':>20} {'Machines':>8} " + " ".join(f"{s:>10}" for s in states))
    for platform in [*platforms, "Total"]:
        counts = {
            s: sum(c for (p, st), c in summary.items() if st == s and (platform in ("Total", p)))
            for s in states
        }
        machines = sum(c for (p, _st), c in summary.items() if platform in ("Total", p))
        print(f"{platform:>20} {machines:>8} " + " ".join(f"{counts[s]:>10}" for s in states))


def print_generic(ads: list[dict[str, str]]) -> None:
    print(f"{'MyType':<20} {'Name':<50} AuthenticatedIdentity")
    for texts in ads:
        values = common.evaluate(texts, ["MyType", "Name", protocol.ATTR_AUTHENTICATED_IDENTITY])
        print(f"{values[0]!s:<20} {values[1]!s:<50} {values[2]}")


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}+{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


if __name__ == "__main__":
    sys.exit(main())
