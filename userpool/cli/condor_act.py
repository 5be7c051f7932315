"""condor_rm, condor_hold, condor_release, condor_suspend, condor_continue: one command, five verbs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

from updraft.core.client import token_claims
from updraft.core.payloads import ActRequest
from updraft.core.protocol import JobAction, parse_job_id
from userpool.cli import common


@dataclass(frozen=True)
class Verb:
    tool: str
    action: JobAction
    done: str  # "marked for removal", "held", ...
    blurb: str
    word: str  # HTCondor's "Couldn't find/<word> all jobs in cluster N"


VERBS = {
    "rm": Verb("condor_rm", JobAction.Remove, "marked for removal", "Remove jobs from the queue.", "remove"),
    "hold": Verb("condor_hold", JobAction.Hold, "held", "Put jobs on hold.", "hold"),
    "release": Verb("condor_release", JobAction.Release, "released", "Release held jobs.", "release"),
    "suspend": Verb(
        "condor_suspend", JobAction.Suspend, "suspended", "Suspend running jobs (SIGSTOP).", "suspend"
    ),
    "continue": Verb(
        "condor_continue", JobAction.Continue, "continued", "Continue suspended jobs (SIGCONT).", "continue"
    ),
}


def parser(verb: Verb) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=verb.tool, description=verb.blurb, allow_abbrev=False)
    parser.add_argument("targets", nargs="*", metavar="cluster|cluster.proc|user")
    common.add_pool_options(parser)
    parser.add_argument("-constraint", "--constraint", help="act on jobs matching this ClassAd expression")
    parser.add_argument("-all", "--all", action="store_true", help="act on all of your jobs")
    if verb.action in (JobAction.Hold, JobAction.Remove):
        parser.add_argument("-reason", "--reason", default="", help="recorded as HoldReason/RemoveReason")
    if verb.action == JobAction.Remove:
        parser.add_argument(
            "-forcex", "--forcex", action="store_true", help="forget the job even if its pilot never answers"
        )
    return parser


def run(verb: Verb, argv: list[str] | None) -> int:
    args = parser(verb).parse_args(sys.argv[1:] if argv is None else argv)
    if not args.targets and not args.constraint and not args.all:
        common.die(verb.tool, "say which jobs: cluster, cluster.proc, user, -constraint or -all", 2)
    client = common.client_from(args)
    ids, owners = [], []
    for target in args.targets:
        try:
            parse_job_id(target)
            ids.append(target)
        except Exception:
            owners.append(target)
    constraint = common.check_constraint(verb.tool, args.constraint or "")
    every = args.all and not owners and not ids
    if every:
        me = str(token_claims(client.token).get("sub", ""))
        owners = [me] if me else []
    action = JobAction.RemoveX if getattr(args, "forcex", False) else verb.action
    status = 0
    # one request per target so each gets HTCondor's own sentence
    requests: list[tuple[str, ActRequest]] = []
    for job_id in ids:
        requests.append(
            (job_id, ActRequest(action.name, [job_id], constraint, [], getattr(args, "reason", "")))
        )
    for owner in owners:
        requests.append(
            (f"user:{owner}", ActRequest(action.name, [], constraint, [owner], getattr(args, "reason", "")))
        )
    if not requests:
        requests.append(
            ("constraint", ActRequest(action.name, [], constraint, [], getattr(args, "reason", "")))
        )
    for target, request in requests:
        result = client.act(request)
        cluster = "." not in target and not target.startswith("user:") and target != "constraint"
        if cluster and result.not_found and not result.done:  # HTCondor's words for a cluster it lacks
            print(f"Couldn't find/{verb.word} all jobs in cluster {target}", file=sys.stderr)
            status = 1
            continue
        for job_id in result.not_found:
            print(f"Job {job_id} not found", file=sys.stderr)
            status = 1
        for job_id, why in sorted(result.refused.items()):
            print(f"Job {job_id}: {verb.tool} refused: {why}", file=sys.stderr)
            status = 1
        for job_id, why in sorted(result.unchanged.items()):
            print(f"Job {job_id} not {verb.done}: {why}", file=sys.stderr)
            status = 1
        if not result.done:
            if not (result.not_found or result.refused or result.unchanged):
                print(f"{verb.tool}: no jobs matched {_describe(target, request)}", file=sys.stderr)
                status = 1
            continue
        if target.startswith("user:") and every:
            print(f"All jobs have been {verb.done}")
        elif target.startswith("user:"):
            print(f'All jobs of user "{target[5:]}" have been {verb.done}')
        elif target == "constraint":
            print(f"All jobs matching constraint ({constraint}) have been {verb.done}")
        elif "." in target:
            print(f"Job {target} {verb.done}")
        else:
            print(f"All jobs in cluster {target} have been {verb.done}")
    return status


def _describe(target: str, request: ActRequest) -> str:
    if target.startswith("user:"):
        return f'user "{target[5:]}"'
    if target == "constraint":
        return f"constraint ({request.constraint})"
    return f"job {target}"


def _main(name: str) -> Callable[[list[str] | None], int]:
    verb = VERBS[name]

    @common.main_wrapper(verb.tool)
    def main(argv: list[str] | None = None) -> int:
        return run(verb, argv)

    return main


main_rm = _main("rm")
main_hold = _main("hold")
main_release = _main("release")
main_suspend = _main("suspend")
main_continue = _main("continue")
