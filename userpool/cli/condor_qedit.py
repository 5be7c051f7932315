"""condor_qedit: change attributes of queued jobs, as HTCondor's does.

    condor_qedit [-debug] [-n schedd] [-pool pool] {cluster | cluster.proc | owner | -constraint expr}
                 attribute-name attribute-value ...   (or attribute-name=attribute-value ...)

Every name and value is checked before anything is sent, and all of them go in one edit, so
either every attribute is set or none is ("Transaction failed.  No attributes were set.").
HTCondor's own refusals (Owner, ClusterId, ProcId, MyType, TargetType, JobStatus) are made
here; the pool refuses the other attributes it maintains and says which.
"""

from __future__ import annotations

import argparse
import sys

from updraft.core import classads
from updraft.core.client import ClientError
from updraft.core.errors import ExpressionError
from updraft.core.payloads import EditRequest, QueryRequest
from updraft.core.protocol import parse_job_id
from userpool.cli import common

PROTECTED = ("Owner", "ClusterId", "ProcId", "MyType", "TargetType", "JobStatus")
FAILED = "Transaction failed.  No attributes were set."
USAGE = (
    "Usage: condor_qedit [-debug] [-n schedd-name] [-pool pool-name] "
    "{ cluster | cluster.proc | owner | -constraint constraint } attribute-name attribute-value ..."
)
DESCRIPTION = """\
Modify job ClassAd attributes of queued jobs.  The jobs are given by cluster, job id
(cluster.proc), owner, or -constraint; the edits as NAME VALUE pairs or NAME=VALUE words.
VALUE is any ClassAd expression (strings in double quotes).  Owner, ClusterId, ProcId, MyType,
TargetType and JobStatus cannot be changed; use condor_hold and condor_release for JobStatus.
Either every attribute is set or none is.  Exit status: 0 on success, 1 on failure."""


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="condor_qedit", usage=USAGE, description=DESCRIPTION, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("words", nargs="*", metavar="target-and-edits")
    common.add_pool_options(parser)
    parser.add_argument(
        "-constraint", "--constraint", action="append", default=[], help="jobs matching this expression"
    )
    parser.add_argument("-n", dest="schedd", help="accepted: Updraft has one queue")
    return parser


def edits_of(words: list[str]) -> list[tuple[str, str]] | str:
    """NAME VALUE pairs and NAME=VALUE words, in order; or the message for the first bad one."""
    edits: list[tuple[str, str]] = []
    index = 0
    while index < len(words):
        word = words[index]
        name, equals, value = word.partition("=")
        if equals and classads.is_valid_attribute_name(name.strip()):
            edits.append((name.strip(), value.strip()))
            index += 1
            continue
        if index + 1 >= len(words):
            return USAGE
        edits.append((word, words[index + 1]))
        index += 2
    return edits


def check(edits: list[tuple[str, str]]) -> str:
    """HTCondor's refusals, made before anything is sent."""
    for name, value in edits:
        if name.lower() in (p.lower() for p in PROTECTED):
            return f'Update of attribute "{name}" is not allowed.'
        if not name.strip() or not classads.is_valid_attribute_name(name):
            return f'Update aborted, illegal attribute-name specified for attribute "{name}".'
        try:
            if not value.strip():
                raise ExpressionError(value, "empty")
            classads.check(value, name)
        except ExpressionError:
            return f'Update aborted, illegal attribute-value specified for attribute "{name}".'
    return ""


def run(argv: list[str] | None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    words = list(args.words)
    ids: list[str] = []
    owners: list[str] = []
    constraints = list(args.constraint)
    if words and not constraints:
        target = words.pop(0)
        if target[:1].isdigit():
            try:
                parse_job_id(target)
            except Exception:  # ProtocolError: not CLUSTER or CLUSTER.PROC
                print(f"Invalid cluster # from {target}.", file=sys.stderr)
                return 1
            ids.append(target)
        else:
            owners.append(target)
    if not words or (not ids and not owners and not constraints):
        print(USAGE, file=sys.stderr)
        return 1
    edits = edits_of(words)
    if isinstance(edits, str):
        print(edits, file=sys.stderr)
        return 1
    problem = check(edits)
    if problem:
        print(problem, file=sys.stderr)
        print(FAILED, file=sys.stderr)
        return 1
    client = common.client_from(args)
    constraint = common.joined_constraint("condor_qedit", constraints) if constraints else ""
    if constraint or owners:  # the jobs the constraint or owner means, now
        ads = client.query(QueryRequest(constraint, ["ClusterId", "ProcId"], ids, owners)).ads
        ids = [f"{ad['ClusterId']}.{ad['ProcId']}" for ad in ads]
    elif "." not in ids[0]:
        ads = client.query(QueryRequest("", ["ClusterId", "ProcId"], ids)).ads
        ids = [f"{ad['ClusterId']}.{ad['ProcId']}" for ad in ads]
    if not ids:
        where = (
            f"by constraint: {constraint}"
            if constraint
            else (f"for owner {owners[0]}" if owners else f"for job {args.words[0]}")
        )
        print(f'Failed to set attribute "{edits[0][0]}" {where}', file=sys.stderr)
        print(FAILED, file=sys.stderr)
        return 1
    try:
        result = client.edit(EditRequest(ids, dict(edits)))
    except ClientError as exc:
        print(exc.message, file=sys.stderr)
        print(FAILED, file=sys.stderr)
        return 1
    refused = {**result.refused, **{job: "not found" for job in result.not_found}, **result.unchanged}
    if refused and not result.done:
        for job_id, why in sorted(refused.items()):
            print(f'Failed to set attribute "{edits[0][0]}" for job {job_id}: {why}', file=sys.stderr)
        print(FAILED, file=sys.stderr)
        return 1
    for name, _value in edits:
        print(f'Set attribute "{name}".')
    for job_id, why in sorted(refused.items()):
        print(f"job {job_id}: not changed: {why}", file=sys.stderr)
    return 1 if refused else 0


@common.main_wrapper("condor_qedit")
def main(argv: list[str] | None = None) -> int:
    return run(argv)
