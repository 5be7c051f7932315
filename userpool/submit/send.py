"""Sending a built cluster to the pool: its missing inputs first, then the cluster in one request.

condor_submit, condor_submit_dag and a DAG's engine (its nodes, its sub-DAGs) all send
clusters this way, so an input the pool already has is never uploaded twice and a cluster
is queued whole or not at all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from updraft.core.client import Client
from updraft.core.payloads import SubmitRequest, SubmitResult
from userpool.submit.cluster import ClusterSpec


def send_cluster(
    client: Client, spec: ClusterSpec, cluster_id: int, progress: Callable[[int, int], None] | None = None
) -> SubmitResult:
    """Upload what the pool lacks of ``spec``'s inputs, then queue the cluster (reserved as ``cluster_id``)."""
    paths = spec.hasher.paths()
    if paths:
        missing = client.missing_blobs(sorted(paths))
        for number, digest in enumerate(missing, 1):
            if progress is not None:
                progress(number, len(missing))
            client.put_blob(digest, Path(paths[digest]))
    request = SubmitRequest(
        cluster_id, spec.cluster_ad, spec.procs, spec.inputs, {str(k): v for k, v in spec.proc_inputs.items()}
    )
    return client.submit(request)
