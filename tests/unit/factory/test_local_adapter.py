"""The local adapter's bookkeeping of the glidein processes it started.

Every entry's step runs in a worker thread of its own and each calls ``status``, which
reaps the finished wrappers from one list the local entries share; two threads reaping the
same finished process must not trip over each other (it once failed an entry's whole step
with "list.remove(x): x not in list").
"""

from __future__ import annotations

import threading
import time

import pytest

from factory.adapters import local


class _Finished:
    """A wrapper process that has exited; poll() is slow enough for the threads to meet."""

    def poll(self) -> int:
        time.sleep(0.001)
        return 0


class _Running:
    def poll(self) -> None:
        return None


def test_entries_reaping_at_once_each_see_their_step_through(monkeypatch: pytest.MonkeyPatch) -> None:
    still_running = _Running()
    children = [_Finished() for _ in range(50)] + [still_running]
    monkeypatch.setattr(local, "_CHILDREN", children)
    failures: list[BaseException] = []
    start = threading.Barrier(4)

    def reap() -> None:
        start.wait()
        try:
            local.LocalAdapter._reap()
        except BaseException as exc:  # the test reports what any thread raised
            failures.append(exc)

    threads = [threading.Thread(target=reap) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    assert [still_running] == local._CHILDREN
