"""What the pool's event log keeps: a job's events leave with its history row, and the events of
no job (a component's own) are kept within a budget that no token holder can outgrow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from userpool.events import ComponentBudget, EventLog, Tx
from userpool.history import History
from userpool.store import Batch, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "queue.sqlite")
    opened.open()
    try:
        yield opened
    finally:
        opened.close()


def _record(
    events: EventLog, store: Store, cluster_id: int, proc_id: int, kind: str, **details: object
) -> None:
    tx = Tx()
    events.record(tx, "someone", cluster_id, proc_id, kind, dict(details))
    store.write(events.seal(tx).batch).result()


def _kinds(store: Store, where: str = "1") -> list[str]:
    return [row[0] for row in store.read(f"SELECT type FROM events WHERE {where} ORDER BY id")]


def test_past_the_count_the_oldest_tenth_of_component_events_goes(store: Store) -> None:
    events = EventLog(store, budget=ComponentBudget(max_events=20, max_chars=0))
    _record(events, store, 7, 0, "submit")
    for number in range(21):
        _record(events, store, 0, -1, f"pilot_n{number}")
    kept = _kinds(store, "cluster_id = 0")
    assert kept == [f"pilot_n{n}" for n in range(3, 21)]  # 21 > 20: down to 18 (90%), the newest
    assert _kinds(store, "cluster_id = 7") == ["submit"]  # a job's events are not the budget's
    assert (events.budget.events, events.budget.chars) == tuple(
        store.read("SELECT COUNT(*), SUM(LENGTH(details)) FROM events WHERE cluster_id = 0")[0]
    )


def test_past_the_size_the_oldest_go_and_a_restart_counts_what_is_there(store: Store) -> None:
    events = EventLog(store, budget=ComponentBudget(max_events=0, max_chars=10_000))
    for number in range(12):
        _record(events, store, 0, -1, f"pilot_big{number}", output="x" * 990)  # ~1,000 characters each
    held = store.read("SELECT COUNT(*), SUM(LENGTH(details)) FROM events WHERE cluster_id = 0")[0]
    assert held[1] <= 10_000 and _kinds(store, "cluster_id = 0")[-1] == "pilot_big11"
    again = EventLog(store, budget=ComponentBudget(max_events=0, max_chars=10_000))
    assert (again.budget.events, again.budget.chars) == held
    assert again.next_id == events.next_id


def test_a_budget_of_nought_keeps_everything(store: Store) -> None:
    events = EventLog(store, budget=ComponentBudget(max_events=0, max_chars=0))
    for number in range(30):
        _record(events, store, 0, -1, f"factory_n{number}")
    assert len(_kinds(store, "cluster_id = 0")) == 30


def test_a_pruned_history_row_takes_its_events_and_its_clusters(store: Store) -> None:
    events = EventLog(store)
    setup = Batch()
    for cluster_id in (1, 2):
        setup.add(
            "INSERT INTO clusters (cluster_id, owner, ad, inputs, proc_inputs) VALUES (?, 'alice', '{}', '[]', '{}')",
            (cluster_id,),
        )
    for cluster_id, proc_id, completed in ((1, 0, 100.0), (1, 1, 200.0), (2, 0, 300.0)):
        setup.add(
            "INSERT INTO history (cluster_id, proc_id, completed, owner, status) VALUES (?, ?, ?, 'alice', 4)",
            (cluster_id, proc_id, completed),
        )
    store.write(setup).result()
    for cluster_id, proc_id in ((1, -1), (1, 0), (1, 1), (2, -1), (2, 0)):
        _record(events, store, cluster_id, proc_id, f"e{cluster_id}.{proc_id}")
    _record(events, store, 0, -1, "pilot_failed")

    store.write(History(store, max_jobs=2).prune()).result()  # the oldest row, 1.0, goes
    assert _kinds(store) == ["e1.-1", "e1.1", "e2.-1", "e2.0", "pilot_failed"]  # cluster 1 still has 1.1
    store.write(History(store, max_jobs=1).prune()).result()  # then 1.1: cluster 1 is gone
    assert _kinds(store) == ["e2.-1", "e2.0", "pilot_failed"]
    assert [row[0] for row in store.read("SELECT cluster_id FROM clusters")] == [2]
    assert not History(store, max_jobs=1).prune()  # nothing past the bound: nothing to do
