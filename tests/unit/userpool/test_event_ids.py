"""Event ids grow in commit order, so a reader that follows the log by id misses nothing."""

from __future__ import annotations

from pathlib import Path

from userpool.events import EventLog, Tx
from userpool.store import Store


def test_a_transaction_recorded_first_but_committed_later_gets_the_later_ids(tmp_path: Path) -> None:
    store = Store(tmp_path / "queue.sqlite")
    store.open()
    try:
        events = EventLog(store)
        slow, quick = Tx(), Tx()
        events.record(slow, "schedd", 12, -1, "submit")  # e.g. a submit waiting on a file check
        events.record(quick, "schedd", 13, 0, "hold")
        events.record(quick, "schedd", 13, 1, "hold")
        store.write(events.seal(quick).batch).result()
        seen = [event.id for event in events.after(0)]  # a follower reads here: 1, 2
        store.write(events.seal(slow).batch).result()
        assert [e.id for e in quick.events] == [1, 2] and [e.id for e in slow.events] == [3]
        assert [event.id for event in events.after(max(seen))] == [3]  # nothing skipped
        assert [(e.cluster_id, e.type) for e in events.after(0)] == [
            (13, "hold"),
            (13, "hold"),
            (12, "submit"),
        ]
    finally:
        store.close()
