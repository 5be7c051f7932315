"""Bookkeeping: logging-info and the event stream."""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path

from tests.support.pools import RunningPool


def test_logging_info_and_stream(pool: RunningPool, workdir: Path) -> None:
    client = pool.client()
    last = client.events(0, 10000)
    after = last[-1].id if last else 0
    received = []

    def follow() -> None:
        for event in pool.client().stream_events(after, timeout=20):
            received.append(event)
            if event.type == "remove":
                return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    time.sleep(0.3)
    (workdir / "e.sub").write_text("executable = job.sh\nqueue\n")
    cluster = pool.run("condor_submit", "e.sub", user="sam", cwd=workdir).lines[-1].split()[-1].rstrip(".")
    pool.run("condor_hold", cluster, user="sam")
    pool.run("condor_release", cluster, user="sam")
    pool.run("condor_rm", cluster, user="sam")
    thread.join(timeout=20)
    kinds = [e.type for e in received if e.cluster_id == int(cluster)]
    assert kinds == ["submit", "hold", "release", "remove"]
    assert all(a.id < b.id for a, b in itertools.pairwise(received))
    info = pool.run("updraft", "logging-info", f"{cluster}.0", user="sam")
    lines = [line.split()[2] for line in info.lines[1:]]
    assert lines == ["submit", "hold", "release", "remove"]
    as_json = json.loads(pool.run("updraft", "logging-info", "--json", f"{cluster}.0", user="sam").stdout)
    assert as_json[1]["details"]["reason"] == "via condor_hold (by user sam)"
    missing = pool.run("updraft", "logging-info", "99999.0", user="sam")
    assert missing.returncode == 1 and "no events" in missing.stderr
