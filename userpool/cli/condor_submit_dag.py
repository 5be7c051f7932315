"""condor_submit_dag: check a DAG (its INCLUDEs, splices, submit files) and queue it as one DAG job.

What HTCondor's condor_submit_dag does is done here, with its messages: the DAG is parsed
and checked (a cycle, an unknown node, a missing submit file, a duplicate node: each with
the file and line) before anything is queued, the newest rescue DAG is found (``-force``
sets old ones aside), ``file.dag.condor.sub`` is written beside the DAG and, unless
``-no_submit``, submitted.  The pool runs the DAG's engine for that job (userpool/dagman.py);
the engine writes dagman.out, the nodes log, the metrics and, on failure, the rescue DAG.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from updraft.core.client import token_claims
from userpool.cli import common
from userpool.dag.check import check_dag
from userpool.dag.dagjob import NOTIFICATIONS, DagJobOptions, condor_sub, dag_files
from userpool.dag.knobs import KnobError, read_knobs
from userpool.dag.lexical import DagError
from userpool.dag.parse import parse_dag
from userpool.dag.rescue import apply_rescue, rescue_files, set_aside
from userpool.submit.cluster import build_cluster
from userpool.submit.context import SubmitEnvironment
from userpool.submit.parse import SubmitError, parse_submit
from userpool.submit.send import send_cluster

TOOL = "condor_submit_dag"
RULE = "-" * 71


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(prog=TOOL, description="Check and submit a DAG.", allow_abbrev=False)
    made.add_argument("dag", help="the DAG input file")
    for name in ("maxjobs", "maxidle", "maxpre", "maxpost"):
        made.add_argument(f"-{name}", f"--{name}", dest=name, type=int, default=0, metavar="N")
    made.add_argument(
        "-f", "-force", "--force", dest="force", action="store_true", help="overwrite, start afresh"
    )
    made.add_argument("-batch-name", "--batch-name", dest="batch_name", help="the batch name condor_q shows")
    made.add_argument("-no_submit", "--no_submit", "-no-submit", dest="no_submit", action="store_true")
    made.add_argument(
        "-notification", "--notification", dest="notification", type=str.lower, choices=NOTIFICATIONS
    )
    made.add_argument("-autorescue", "-AutoRescue", dest="auto_rescue", type=int, choices=(0, 1), default=1)
    made.add_argument("-dorescuefrom", "-DoRescueFrom", dest="rescue_from", type=int, default=0, metavar="N")
    made.add_argument(
        "-suppress_notification", "-Suppress_notification", dest="suppress_notification", action="store_true"
    )
    made.add_argument(
        "-config", dest="config", default="", metavar="FILE", help="DAGMan's knobs for this DAG"
    )
    made.add_argument(
        "-AlwaysRunPost", "-alwaysrunpost", dest="always_run_post", action="store_true", default=None
    )
    made.add_argument(
        "-DontAlwaysRunPost", "-dontalwaysrunpost", dest="always_run_post", action="store_false"
    )
    made.add_argument("-update_submit", dest="update_submit", action="store_true", help="rewrite .condor.sub")
    made.add_argument("-dont_suppress_notification", dest="dont_suppress", action="store_true")
    made.add_argument(
        "-append", "-a", dest="append", action="append", default=[], metavar="COMMAND",
        help="a submit command added to the DAG job's .condor.sub",
    )  # fmt: skip
    common.add_pool_options(made)
    return made


@common.main_wrapper(TOOL)
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    files = dag_files(args.dag)
    try:
        dag = parse_dag(args.dag)
        check_dag(dag)
        if (
            dag.files.config
            and args.config
            and os.path.abspath(dag.files.config) != os.path.abspath(args.config)
        ):
            raise DagError(
                args.dag, None, f"conflicting DAGMan config files: {dag.files.config} and {args.config}"
            )
        if dag.files.config or args.config:
            read_knobs(dag.files.config or args.config)
    except (DagError, KnobError) as exc:
        print(exc, file=sys.stderr)
        print("Aborting: the DAG was not submitted.", file=sys.stderr)
        return 1
    if args.force:
        for moved in set_aside(args.dag):
            print(f"Renamed rescue DAG to {moved}")
    elif args.auto_rescue or args.rescue_from:
        rescues = rescue_files(args.dag)
        chosen = [r for r in rescues if r[0] == args.rescue_from] if args.rescue_from else rescues[-1:]
        if args.rescue_from and not chosen:
            common.die(TOOL, f"ERROR: rescue DAG {args.dag}.rescue{args.rescue_from:03d} does not exist", 1)
        if chosen:
            number, path = chosen[-1]
            try:
                done = apply_rescue(dag, str(path))
            except DagError as exc:
                common.die(TOOL, str(exc), 1)
            print(f"Running rescue DAG {number} ({path.name}): {len(done)} node(s) already DONE")
    submit_file = Path(files["submit"])
    if submit_file.exists() and not (args.force or args.update_submit) and not rescue_files(args.dag):
        print(
            f'ERROR: "{submit_file}" already exists.\nSome file(s) needed by DAGMan already exist.  Either rename'
            ' them, or use the "-f" option to force them to be overwritten.',
            file=sys.stderr,
        )
        return 1
    options = DagJobOptions(
        maxjobs=args.maxjobs, maxidle=args.maxidle, maxpre=args.maxpre, maxpost=args.maxpost,
        batch_name=args.batch_name or "", notification=args.notification or "", auto_rescue=args.auto_rescue,
        rescue_from=args.rescue_from, suppress_notification=args.suppress_notification, extra=list(args.append),
        always_run_post=args.always_run_post, config=args.config,
    )  # fmt: skip
    text = condor_sub(dag, options, " ".join(sys.argv[1:]) if argv is None else " ".join(argv))
    submit_file.write_text(text)
    print(RULE)
    print(f"File for submitting this DAG to HTCondor           : {files['submit']}")
    print(f"Log of DAGMan debugging messages                   : {files['debug']}")
    print(f"Log of HTCondor library output                     : {files['lib_out']}")
    print(f"Log of HTCondor library error messages             : {files['lib_err']}")
    print(f"Log of the life of condor_dagman itself            : {files['log']}")
    print()
    if args.no_submit:
        print("-no_submit given, not submitting DAG to HTCondor. You can do this with:")
        print(f'"condor_submit {files["submit"]}"')
        print(RULE)
        return 0
    client = common.client_from(args)
    owner = str(token_claims(client.token).get("sub") or getpass.getuser())
    try:
        submit = parse_submit(text, str(submit_file))
        cluster_id = client.reserve_cluster()
        spec = build_cluster(submit, cluster_id, SubmitEnvironment.here(owner))
    except SubmitError as exc:
        common.die(TOOL, f"ERROR: {exc}", 1)
    print("Submitting job(s).")
    result = send_cluster(client, spec, cluster_id)
    print(f"{result.count} job(s) submitted to cluster {result.cluster_id}.")
    print(RULE)
    return 0
