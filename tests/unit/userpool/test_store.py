"""The store: batches commit together, a failing batch is refused alone, reads see commits."""

from pathlib import Path

import pytest

from userpool.store import Batch, Store


def test_group_commit_and_isolated_failure(tmp_path: Path) -> None:
    failures = []
    store = Store(tmp_path / "s.db", "NORMAL", on_fatal=failures.append)
    store.open()
    try:
        good = Batch()
        store.set_meta(good, "a", "1")
        bad = Batch()
        bad.add("INSERT INTO nonexistent VALUES (1)")
        futures = [store.write(good), store.write(bad)]
        futures[0].result(timeout=10)
        with pytest.raises(Exception, match="nonexistent"):
            futures[1].result(timeout=10)
        assert store.meta("a") == "1"
        assert failures, "a refused batch after memory changed is fatal for the pool"
    finally:
        store.close()
