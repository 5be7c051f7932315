"""python -m bench [--quick] [--only NAME...]: run the benchmarks, print a table, write bench/results.json."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result, machine

SUITES = {
    "pool": "bench.pool_bench",
    "pilot": "bench.pilot_bench",
    "factory": "bench.factory_bench",
    "frontend": "bench.frontend_bench",
    "load": "bench.load_bench",
    "system": "bench.system_bench",
    "dag": "bench.dag_bench",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, not the targets)")
    parser.add_argument("--only", nargs="*", choices=sorted(SUITES), help="run only these suites")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results.json"))
    args = parser.parse_args(argv)
    results: list[Result] = []
    # every suite's scratch directories (a million-job queue among them) under one that goes at
    # the end; kept when a suite fails, since its error says where to look.  Passable by the job
    # account, which the DAG and system suites' jobs run as.
    scratch = Path(tempfile.mkdtemp(prefix="updraft-bench-run-"))
    scratch.chmod(0o711)
    tempfile.tempdir = str(scratch)
    for name in args.only or SUITES:
        print(f"== {name}", file=sys.stderr, flush=True)
        module = __import__(SUITES[name], fromlist=["run"])
        for item in module.run(args.quick):
            item.notes.setdefault("suite", name)
            results.append(item)
    tempfile.tempdir = None
    shutil.rmtree(scratch, ignore_errors=True)
    width = max(len(r.name) for r in results)
    print(f"\n{'benchmark':<{width}}  {'value':>12} {'unit':<10} {'target':<9} ok    anchor")
    for item in results:
        ok = "" if item.ok is None else ("yes" if item.ok else "NO")
        anchor = f"{item.anchor} ({item.anchor_label})" if item.anchor is not None else ""
        print(f"{item.name:<{width}}  {item.value:>12,.3f} {item.unit:<10} {item.target:<9} {ok:<5} {anchor}")
    ran = set(args.only or SUITES)
    kept = []  # --only: the other suites' last results stay in the file
    try:
        previous = json.loads(Path(args.output).read_text())
        if previous.get("quick") == args.quick:
            kept = [r for r in previous.get("results", []) if r.get("notes", {}).get("suite") not in ran]
    except (OSError, ValueError):
        pass
    Path(args.output).write_text(
        json.dumps(
            {
                "time": time.time(),
                "quick": args.quick,
                "machine": machine(),
                "results": kept + [r.to_dict() for r in results],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten to {args.output}")
    return 0 if all(r.ok is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
