"""Failpoints: crash a process at a named point, on purpose, to prove that recovery works.

``UPDRAFT_FAILPOINTS="factory.after_site_submit=exit@3"`` makes the third pass through
that point end the process at once with ``os._exit`` (no cleanup, no flush: as kill -9
would).  Unset, a failpoint costs one dictionary lookup.  Used by the reliability tests;
the names are listed where they are placed, so a reader sees where a crash is tested.
"""

from __future__ import annotations

import os
import sys
import threading

_lock = threading.Lock()
_passes: dict[str, int] = {}


def _armed() -> dict[str, int]:
    spec = os.environ.get("UPDRAFT_FAILPOINTS", "")
    armed = {}
    for item in spec.split(","):
        name, _, action = item.strip().partition("=")
        if name and action.startswith("exit@"):
            armed[name] = int(action[5:] or 1)
    return armed


_ARMED = _armed()


def failpoint(name: str) -> None:
    if not _ARMED or name not in _ARMED:
        return
    with _lock:
        _passes[name] = _passes.get(name, 0) + 1
        if _passes[name] >= _ARMED[name]:
            sys.stderr.write(f"failpoint {name}: exiting on pass {_passes[name]}\n")
            sys.stderr.flush()
            os._exit(137)
