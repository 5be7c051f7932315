"""The grouped evaluator: right answers, and one evaluation per distinct input."""

from userpool.queue import Cluster, Job
from userpool.selection import Selector


def cluster(cluster_id: int, owner: str, procs: int, **ad: str) -> Cluster:
    result = Cluster(cluster_id, owner, {"Owner": f'"{owner}"', **ad})
    for proc in range(procs):
        result.jobs[proc] = Job(result, proc, 1, None)
    return result


def test_cluster_level_constraint_is_evaluated_once() -> None:
    clusters = [cluster(c, "alice" if c % 2 else "bob", 1000, RequestMemory="2000") for c in range(1, 11)]
    selector = Selector('Owner == "alice" && RequestMemory > 1000')
    selected = [job for c in clusters for job in selector.filter(c)]
    assert len(selected) == 5000
    assert selector.evaluations == 2  # one per distinct (Owner, RequestMemory)


def test_per_job_attributes_and_overrides() -> None:
    c = cluster(1, "alice", 10, Weight="1")
    c.jobs[3].set("Weight", "5")
    c.jobs[4].status = 5
    assert [j.proc_id for j in Selector("Weight > 2").filter(c)] == [3]
    assert [j.proc_id for j in Selector("JobStatus == 5").filter(c)] == [4]
    assert [j.proc_id for j in Selector("ProcId >= 8").filter(c)] == [8, 9]


def test_references_are_followed() -> None:
    c = cluster(1, "alice", 2, RequestDisk="DiskUsage", DiskUsage="100")
    c.jobs[1].set("DiskUsage", "5000")
    assert [j.proc_id for j in Selector("RequestDisk > 1000").filter(c)] == [1]


def test_undefined_is_false_and_empty_selects_all() -> None:
    c = cluster(1, "alice", 3)
    assert list(Selector("NoSuch > 1").filter(c)) == []
    assert len(list(Selector("").filter(c))) == 3
    assert Selector("NoSuch =?= undefined").matches_ad({"A": "1"})
