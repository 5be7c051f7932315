"""condor_transfer_data: fetch jobs' spooled output into their Iwd (as the user, with their permissions)."""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
from pathlib import Path

from updraft.core.client import ClientError, token_claims
from updraft.core.payloads import QueryRequest
from updraft.core.protocol import safe_relative_path
from userpool.cli import common
from userpool.cli.condor_q import split_restrictions
from userpool.sandbox import output_destinations

TOOL = "condor_transfer_data"
ATTRS = ["ClusterId", "ProcId", "Iwd", "Out", "Err", "TransferOutputRemaps", "SpooledOutputFiles"]


@common.main_wrapper(TOOL)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=TOOL, description="Fetch the output of jobs into their Iwd.", allow_abbrev=False
    )
    parser.add_argument("targets", nargs="*", metavar="cluster|cluster.proc|user")
    common.add_pool_options(parser)
    parser.add_argument("-constraint", "--constraint", default="")
    parser.add_argument("-all", "--all", action="store_true")
    parser.add_argument("-o", "--output-dir", help="write here instead of each job's Iwd")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.targets and not args.constraint and not args.all:
        common.die(TOOL, "say which jobs: cluster, cluster.proc, user, -constraint or -all", 2)
    client = common.client_from(args)
    ids, owners = split_restrictions(args.targets)
    if args.all and not owners:
        owners = [str(token_claims(client.token).get("sub", ""))]
    constraint = common.check_constraint(TOOL, args.constraint)
    request = QueryRequest(constraint, ATTRS, ids, owners)
    ads = client.query(request).ads + client.query(request, history=True).ads
    seen: set[str] = set()
    fetched = 0
    status = 0
    for texts in ads:
        job_id = f"{texts['ClusterId']}.{texts['ProcId']}"
        if job_id in seen:
            continue
        seen.add(job_id)
        try:
            data = client.job_output(job_id)
        except ClientError as exc:
            if exc.status == 404:
                continue  # no output (yet)
            print(f"{TOOL}: job {job_id}: {exc.message}", file=sys.stderr)
            status = 1
            continue
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members = {safe_relative_path(m.name): m for m in archive if m.isfile()}
            if args.output_dir:
                targets = {name: Path(args.output_dir) / job_id / name for name in members}
            else:
                targets = output_destinations(texts, members)
            for name, destination in targets.items():
                source = archive.extractfile(members[name])
                if source is None:
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(source.read())
        fetched += 1
    print(f"Fetched the output of {fetched} job(s).")
    return status


if __name__ == "__main__":
    sys.exit(main())
