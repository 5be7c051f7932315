"""condor_submit: a submit description file -> one cluster in the Updraft queue.

The whole cluster is translated and its input files uploaded before anything is
queued, and the pool commits the cluster in one transaction: a bad file, a missing
input or a refused request leaves nothing behind.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TextIO

from updraft.core.client import Client, token_claims
from userpool.cli import common
from userpool.submit.cluster import ClusterSpec, build_cluster
from userpool.submit.context import SubmitEnvironment
from userpool.submit.parse import SubmitError, parse_submit
from userpool.submit.send import send_cluster

TOOL = "condor_submit"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=TOOL, description="Submit jobs to the Updraft queue.", allow_abbrev=False
    )
    parser.add_argument("file", nargs="?", help="submit description file ('-' or nothing: standard input)")
    parser.add_argument(
        "assignments", nargs="*", metavar="name=value", help="commands to add before the queue statement"
    )
    common.add_pool_options(parser)
    parser.add_argument(
        "-append", "-a", "--append", dest="append", action="append", default=[], metavar="COMMAND"
    )
    parser.add_argument(
        "-batch-name", "--batch-name", dest="batch_name", help="the batch name condor_q shows"
    )
    parser.add_argument("-queue", "--queue", dest="queue", help="a queue statement, for a file that has none")
    parser.add_argument("-terse", "--terse", action="store_true", help="print only the first and last job id")
    parser.add_argument(
        "-dry-run",
        "--dry-run",
        dest="dry_run",
        metavar="FILE",
        help="queue nothing; write the job ads into FILE (- for standard output), as HTCondor's",
    )
    parser.add_argument(
        "-verbose", "--verbose", action="store_true", help="print the job ads as they are submitted"
    )
    return parser


def read_text(path: str | None) -> tuple[str, str]:
    if path in (None, "-"):
        if sys.stdin.isatty():
            common.die(TOOL, "no submit file given and standard input is a terminal", 1)
        return sys.stdin.read(), "<stdin>"
    try:
        return Path(path).read_text(), path
    except FileNotFoundError:
        common.die(TOOL, f'ERROR: Can\'t open "{path}"  with flags 00 (No such file or directory)', 1)
    except (OSError, UnicodeDecodeError) as exc:
        common.die(TOOL, f"ERROR: cannot read {path}: {exc}", 1)


@common.main_wrapper(TOOL)
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    file_arg = args.file
    assignments = list(args.assignments)
    if file_arg and "=" in file_arg and not Path(file_arg).exists():
        assignments.insert(0, file_arg)
        file_arg = None
    if args.dry_run is not None and file_arg is None:
        # HTCondor's guard: "condor_submit -dry-run job.sub" would read stdin and overwrite job.sub
        common.die(
            TOOL,
            f"ERROR: No submit filename was provided, and '{args.dry_run}' was given as the output "
            "filename for -dry-run. Was this intended? Give the submit file as well "
            "(condor_submit -dry-run - job.sub shows the ads; - as the submit file reads standard input).",
            1,
        )
    text, path = read_text(file_arg)
    append = [*assignments, *args.append]
    if args.batch_name:
        append.append(f"batch_name = {args.batch_name}")
    if args.queue:
        text = text.rstrip("\n") + f"\nqueue {args.queue}\n"
    try:
        submit_file = parse_submit(text, path, append)
    except SubmitError as exc:
        common.die(TOOL, f"ERROR: {exc}", 1)

    client: Client | None = None
    owner = getpass.getuser()
    if args.dry_run is None:
        client = common.client_from(args)
        owner = str(token_claims(client.token).get("sub") or owner)
    cluster_id = client.reserve_cluster() if client is not None else 1
    environment = SubmitEnvironment.here(owner)
    show_progress = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if show_progress:
            print(f"\r{TOOL}: prepared {done}/{total} jobs", end="", file=sys.stderr, flush=True)

    try:
        spec = build_cluster(submit_file, cluster_id, environment, progress=progress)
    except SubmitError as exc:
        if show_progress:
            print(file=sys.stderr)
        common.die(TOOL, f"ERROR: {exc}", 1)
    if show_progress and len(spec.procs) >= 10000:
        print(file=sys.stderr)
    for warning in spec.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    if args.dry_run is not None:
        write_dry_run(spec, cluster_id, args.dry_run, terse=args.terse)
        return 0
    assert client is not None
    if not args.terse:
        print("Submitting job(s)" + "." * min(len(spec.procs), 80))
    result = send_cluster(client, spec, cluster_id, uploading)
    if args.verbose:
        print_dry_run(spec, result.cluster_id)
    if args.terse:
        print(
            f"{result.cluster_id}.{result.first_proc} - {result.cluster_id}.{result.first_proc + result.count - 1}"
        )
    else:
        print(f"{result.count} job(s) submitted to cluster {result.cluster_id}.")
    return 0


def uploading(number: int, total: int) -> None:
    if sys.stderr.isatty() and total > 5:
        end = "\n" if number == total else ""
        print(f"\r{TOOL}: uploading input {number}/{total}", end=end, file=sys.stderr, flush=True)


def write_dry_run(spec: ClusterSpec, cluster_id: int, destination: str, terse: bool) -> None:
    """HTCondor's -dry-run: the usual lines on stdout, every job's ad into ``destination``."""
    count = len(spec.procs)
    if terse:
        print(f"{cluster_id}.0 - {cluster_id}.{count - 1}")
    else:
        print("Dry-Run job(s)" + "." * min(count, 80))
        print(f"{count} job(s) dry-run to cluster {cluster_id}.")
    if destination == "-":
        print()
        write_ads(spec, cluster_id, sys.stdout)
        return
    try:
        with open(destination, "w") as stream:
            write_ads(spec, cluster_id, stream)
    except OSError as exc:
        common.die(
            TOOL, f"ERROR: Failed to open file -dry-run output file ({exc.strerror}): {destination}", 1
        )


def write_ads(spec: ClusterSpec, cluster_id: int, stream: TextIO) -> None:
    common.print_long((numbered(spec, cluster_id, proc) for proc in range(len(spec.procs))), out=stream)


def numbered(spec: ClusterSpec, cluster_id: int, proc: int) -> dict[str, str]:
    ad = spec.ad_of(proc)
    ad["ClusterId"] = str(cluster_id)
    ad["ProcId"] = str(proc)
    return ad


def print_dry_run(spec: ClusterSpec, cluster_id: int) -> None:
    """-verbose: the ads as they are submitted (the first ten of a big cluster)."""
    for proc in range(len(spec.procs)):
        print()
        common.print_long([numbered(spec, cluster_id, proc)])
        if proc >= 9 and len(spec.procs) > 11:
            print(f"\n... and {len(spec.procs) - proc - 1} more")
            break


if __name__ == "__main__":
    sys.exit(main())
