"""A node's job, submitted the way DAGMan submits it: the node's macros, its submit file, DAGMan's attributes.

Before the node's own description: ``JOB``, ``RETRY``, ``DAG_STATUS``, ``FAILED_COUNT``,
``DAG_PARENT_NAMES`` and ``DAGParentNodeNames``, the DAG's batch name, the node's priority,
``keep_claim_idle`` for a node with children, and its VARS (the file may override these).
After it (it cannot): ``dag_node_name``, ``submit_event_notes = DAG Node: A``, the nodes log
(``dagman_log``) and its event mask, ``DAGManJobId``, the attempt (``DAGManNodeRetry``:
always, where HTCondor needs DAGMAN_NODE_RECORD_INFO, because a recovering engine finds a
node's attempts by it), and APPEND VARS.  A SUBDAG EXTERNAL node is its DAG's own
``.condor.sub``, written as condor_submit_dag -no_submit writes it, submitted as a node.

The submission is condor_submit's, in the node's directory (DIR), with the DAG's environment
and never its engine's token.  A refusal that trying again cannot change (a bad submit file, a
missing input, the pool saying no) is a lasting failure; a pool that cannot be reached now is
worth DAGMan's retries.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping

from updraft.core.client import Client, ClientError
from updraft.core.errors import UpdraftError
from updraft.core.payloads import QueryRequest
from userpool.dag.check import check_dag
from userpool.dag.dagjob import DagJobOptions, condor_sub, dag_files
from userpool.dag.knobs import Knobs
from userpool.dag.lexical import DagError
from userpool.dag.model import Dag, NodeKind
from userpool.dag.noderun import NodeRun, SubmitFailed
from userpool.dag.parse import parse_dag
from userpool.submit.cluster import build_cluster
from userpool.submit.context import SubmitEnvironment, full_hostname
from userpool.submit.parse import SubmitError, parse_submit
from userpool.submit.send import send_cluster

#: the events the nodes log takes (HTCondor's DAGMan event mask)
NODES_LOG_MASK = "0,1,2,4,5,7,8,9,10,11,12,13,16,17,24,27,35,36"
QUEUE_LINE = re.compile(r"^\s*queue(\s|$)", re.IGNORECASE | re.MULTILINE)
#: HTTP statuses a retry may get past: the pool busy, restarting, or its disk full
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 507})


@contextlib.contextmanager
def _in_directory(path: str) -> Iterator[None]:
    """A sub-DAG's files are named from its own directory, as its engine will read them."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


class NodeSubmitter:
    """Builds and sends node clusters for one DAG."""

    def __init__(
        self, client: Client, dag: Dag, dag_id: int, owner: str, iwd: str, nodes_log: str, batch_name: str,
        knobs: Knobs, environment: Mapping[str, str],
    ) -> None:  # fmt: skip
        self.client, self.dag, self.dag_id, self.owner = client, dag, dag_id, owner
        self.iwd, self.nodes_log, self.batch_name, self.knobs = iwd, nodes_log, batch_name, knobs
        self.environment = dict(environment)
        self.domain = full_hostname()

    def submit(self, run: NodeRun, macros: dict[str, str]) -> tuple[int, int]:
        node = run.node
        directory = os.path.normpath(os.path.join(self.iwd, node.directory)) if node.directory else self.iwd
        try:
            text, path = self._description(run, directory)
            prepend, append = self._commands(run, macros)
            submit_file = parse_submit(text, path, append, prepend)
        except (SubmitError, DagError, OSError, UnicodeDecodeError) as exc:
            raise SubmitFailed(_said(exc), lasting=True) from None
        try:
            cluster_id = self.client.reserve_cluster()
            environment = SubmitEnvironment(directory, self.owner, self.environment, self.domain)
            spec = build_cluster(submit_file, cluster_id, environment)
            result = send_cluster(self.client, spec, cluster_id)
        except SubmitError as exc:
            raise SubmitFailed(_said(exc), lasting=True) from None
        except ClientError as exc:
            if exc.status == 409 and "already job" in exc.message:
                adopted = self._adopt(run)
                if adopted is not None:
                    return adopted
            raise SubmitFailed(
                f"the pool refused the job: {exc.message}", exc.status not in TRANSIENT_STATUSES
            ) from None
        except (UpdraftError, OSError) as exc:
            raise SubmitFailed(str(exc), lasting=False) from None
        return cluster_id, result.count

    def _description(self, run: NodeRun, directory: str) -> tuple[str, str]:
        node = run.node
        if node.kind == NodeKind.SUBDAG:
            return self._subdag(run, directory)
        if node.inline:
            return _one_job(node.inline, f"{node.source} (node {node.name}, line {node.line})")
        if node.submit in self.dag.descriptions:
            return _one_job(
                self.dag.descriptions[node.submit], f"{node.source} (SUBMIT-DESCRIPTION {node.submit})"
            )
        path = node.submit if os.path.isabs(node.submit) else os.path.join(directory, node.submit)
        with open(path, encoding="utf-8") as handle:
            return handle.read(), node.submit

    def _subdag(self, run: NodeRun, directory: str) -> tuple[str, str]:
        """The sub-DAG's .condor.sub (DAGMan runs condor_submit_dag -no_submit -update_submit for it)."""
        with _in_directory(directory):
            inner = parse_dag(run.node.submit)
            check_dag(inner)
            options = DagJobOptions(batch_name=self.batch_name, auto_rescue=1, rescue_from=0)
            text = condor_sub(inner, options, f"-no_submit -update_submit {run.node.submit}")
            submit_path = dag_files(run.node.submit)["submit"]
            with open(submit_path, "w", encoding="utf-8") as handle:
                handle.write(text)
        return text, os.path.join(directory, submit_path)

    def _commands(self, run: NodeRun, macros: dict[str, str]) -> tuple[list[str], list[str]]:
        node = run.node
        appended_vars = self.knobs.flag("DAGMAN_DEFAULT_APPEND_VARS")
        parents = ",".join(sorted(node.parents))
        prepend = [f"{name} = {value}" for name, value in macros.items()]
        prepend += [f"DAG_PARENT_NAMES = {parents}", 'MY.DAGParentNodeNames = "$(DAG_PARENT_NAMES)"']
        if self.batch_name:
            prepend.append(f"batch_name = {self.batch_name}")
        priority = node.priority + self.knobs.number("DAGMAN_DEFAULT_PRIORITY")
        if priority:
            prepend.append(f"priority = {priority}")
        hold_time = self.knobs.number("DAGMAN_HOLD_CLAIM_TIME")
        if node.children and hold_time > 0:
            prepend.append(f"keep_claim_idle = {hold_time}")
        chosen = [(name, value, node.placement.get(name, appended_vars)) for name, value in node.vars]
        prepend += [f"{name} = {value}" for name, value, last in chosen if not last]
        append = [
            f"dag_node_name = {node.name}",
            f"submit_event_notes = DAG Node: {node.name}",
            f"dagman_log = {self.nodes_log}",
            f'My.DAGManNodesMask = "{NODES_LOG_MASK}"',
            f"My.DAGManJobId = {self.dag_id}",
            f"DAGManJobId = {self.dag_id}",
            f"My.DAGManNodeRetry = {run.retry}",
            f"My.DAG_Status = {macros.get('DAG_STATUS', '0')}",
        ]
        if self.knobs.flag("DAGMAN_SUPPRESS_JOB_LOGS"):
            append.append("log = ")
        if self.knobs.flag("DAGMAN_SUPPRESS_NOTIFICATION"):
            append.append("notification = NEVER")
        append += [f"{name} = {value}" for name, value, last in chosen if last]
        return prepend, append

    def _adopt(self, run: NodeRun) -> tuple[int, int] | None:
        """The pool already has this attempt's job (a submission whose answer was lost): take it."""
        constraint = (
            f'DAGManJobId == {self.dag_id} && DAGNodeName == "{run.name}" && DAGManNodeRetry == {run.retry}'
        )
        ads = self.client.query(QueryRequest(constraint, ["ClusterId", "ProcId"], owners=[self.owner])).ads
        clusters = {int(str(ad["ClusterId"])) for ad in ads}
        if len(clusters) != 1:
            return None
        return clusters.pop(), len(ads)


def _one_job(text: str, where: str) -> tuple[str, str]:
    """An inline description is one job: DAGMan allows it no queue statement and queues it once."""
    if QUEUE_LINE.search(text):
        raise SubmitError(
            where, None, "an inline submit description has no queue statement (DAGMan queues it once)"
        )
    return text.rstrip("\n") + "\nqueue\n", where


def _said(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    return str(exc)
