"""Autoclusters and matchmaking on an in-memory queue (the store is a real one in a temp dir)."""

from pathlib import Path

import pytest

from userpool.accountant import Accountant
from userpool.autoclusters import AutoclusterIndex
from userpool.negotiator import Negotiator
from userpool.queue import Cluster, Job, JobQueue
from userpool.store import Store


@pytest.fixture
def store(tmp_path: Path):
    store = Store(tmp_path / "q.db", "OFF")
    store.open()
    yield store
    store.close()


def make(
    queue: JobQueue, index: AutoclusterIndex, cluster_id: int, owner: str, procs: int, **ad: str
) -> Cluster:
    texts = {
        "Owner": f'"{owner}"',
        "Requirements": "true",
        "RequestCpus": "1",
        "RequestMemory": "100",
        "QDate": str(cluster_id),
        **ad,
    }
    c = Cluster(cluster_id, owner, texts)
    for proc in range(procs):
        c.jobs[proc] = Job(c, proc, 1, None)
    queue.add_cluster(c)
    index.add_many(c.jobs.values())
    return c


SLOT = {
    "Name": '"s"',
    "Cpus": "4",
    "Memory": "4000",
    "Disk": "100000",
    "START": "true",
    "GLIDEIN_Site": '"A"',
}


def test_autoclusters_group_by_significant_attributes(store: Store) -> None:
    queue = JobQueue()
    index = AutoclusterIndex(queue)
    for c in range(1, 51):
        make(queue, index, c, "alice", 100, Args=f'"{c}"')
    make(queue, index, 99, "alice", 10, RequestMemory="9000")
    assert sum(1 for ac in index.ordered if ac.idle) == 2  # Args is not significant


def test_match_order_and_evaluation_count(store: Store) -> None:
    queue = JobQueue()
    index = AutoclusterIndex(queue)
    negotiator = Negotiator(index, Accountant(store))
    make(queue, index, 1, "alice", 3, JobPrio="0")
    make(queue, index, 2, "alice", 2, JobPrio="5")
    make(queue, index, 3, "alice", 1, Requirements='TARGET.GLIDEIN_Site == "B"')
    order = []
    for _ in range(6):
        picked = negotiator.match_one(SLOT)
        if picked is None:
            break
        index.queue.set_status(picked.job, 2)
        order.append(picked.job.job_id)
    assert order == ["2.0", "2.1", "1.0", "1.1", "1.2"]
    assert negotiator.evaluations == 3  # once per autocluster for this slot shape


def test_slot_start_makes_attributes_significant(store: Store) -> None:
    queue = JobQueue()
    index = AutoclusterIndex(queue)
    negotiator = Negotiator(index, Accountant(store))
    make(queue, index, 1, "alice", 2, Color='"red"')
    make(queue, index, 2, "alice", 2, Color='"blue"')
    slot = dict(SLOT, START='TARGET.Color == "blue"')
    negotiator.prepare(slot)
    picked = negotiator.match_one(slot)
    assert picked is not None and picked.job.cluster.cluster_id == 2


def test_fair_share_alternates(store: Store) -> None:
    queue = JobQueue()
    index = AutoclusterIndex(queue)
    accountant = Accountant(store)
    negotiator = Negotiator(index, accountant)
    make(queue, index, 1, "alice", 10)
    make(queue, index, 2, "bob", 10)
    owners = []
    for _ in range(6):
        picked = negotiator.match_one(SLOT)
        assert picked is not None
        queue.set_status(picked.job, 2)
        accountant.charge(picked.autocluster.submitter, 1)
        owners.append(picked.job.owner)
    assert owners.count("alice") == 3 and owners.count("bob") == 3


def test_housekeeping_forgets_the_keys_of_clusters_that_left() -> None:
    """One cached key per cluster ever submitted would grow for as long as the pool runs."""
    queue = JobQueue()
    index = AutoclusterIndex(queue)
    for cluster_id in range(1, 201):
        make(queue, index, cluster_id, "alice", 1)
    assert len(index._cluster_keys) == 200
    for cluster_id in range(1, 200):
        cluster = queue.clusters[cluster_id]
        for job in list(cluster.jobs.values()):
            index.remove(job)
            queue.remove_job(job)
    index.maybe_compact()
    assert list(index._cluster_keys) == [200]
    assert sum(ac.idle for ac in index.ordered) == 1
