"""condor_history: jobs that left the queue, newest first."""

from __future__ import annotations

import argparse
import sys

from updraft.core.payloads import QueryRequest
from userpool.cli import common
from userpool.cli.condor_q import split_restrictions
from userpool.cli.formats import format_history_table

TOOL = "condor_history"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=TOOL, description="Show jobs that left the Updraft queue.", allow_abbrev=False
    )
    parser.add_argument("restrictions", nargs="*", metavar="cluster|cluster.proc|owner")
    common.add_pool_options(parser)
    parser.add_argument("-constraint", "--constraint", action="append", default=[])
    parser.add_argument(
        "-limit", "-match", "--limit", dest="limit", type=int, default=0, help="at most this many jobs"
    )
    parser.add_argument("-af", "-autoformat", "--autoformat", dest="af", nargs="+", metavar="ATTR")
    parser.add_argument("-l", "-long", "--long", dest="long", action="store_true")
    parser.add_argument("-json", "--json", action="store_true")
    return parser


@common.main_wrapper(TOOL)
def main(argv: list[str] | None = None) -> int:
    args, af_flags = common.parse_listing(parser(), argv, "restrictions")
    client = common.client_from(args)
    ids, owners = split_restrictions(args.restrictions)
    constraint = common.joined_constraint(TOOL, args.constraint)
    ads = client.query(QueryRequest(constraint, [], ids, owners, args.limit), history=True).ads
    if not common.print_requested_format(ads, args, af_flags):
        sys.stdout.write(format_history_table(ads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
