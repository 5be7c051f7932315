"""condor_userprio: submitters' fair-share priorities (lower is better)."""

from __future__ import annotations

import argparse
import sys

from userpool.cli import common

TOOL = "condor_userprio"


@common.main_wrapper(TOOL)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=TOOL, description="Show or set user priorities.", allow_abbrev=False
    )
    common.add_pool_options(parser)
    parser.add_argument("-setfactor", "--setfactor", nargs=2, metavar=("SUBMITTER", "FACTOR"))
    parser.add_argument("-json", "--json", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    client = common.client_from(args)
    if args.setfactor:
        submitter, factor = args.setfactor
        client.set_priority_factor(submitter, float(factor))
        print(f"The priority factor of {submitter} was set to {float(factor)}")
        return 0
    rows = client.accountant()
    if args.json:
        common.print_json([row.to_dict() for row in rows])
        return 0
    print(
        f"{'User Name':<30} {'Effective Priority':>18} {'Real Priority':>13} {'Priority Factor':>15} {'In Use':>7} {'Usage (hours)':>14}"
    )
    print("-" * 102)
    for row in rows:
        print(
            f"{row.submitter:<30} {row.effective:>18.2f} {row.priority:>13.2f} {row.factor:>15.2f}"
            f" {row.in_use_cpus:>7.0f} {row.usage_hours:>14.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
