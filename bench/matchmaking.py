"""Matchmaking throughput: idle jobs in ~1,000 autoclusters against many slot ads, in process.

The negotiator and the schedd's claim bookkeeping run as in the pool (autoclusters,
slot shapes, fair share, JobStatus changes, claim rows and events written through the
store in group commits); only HTTP is left out, which the load test measures.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from bench.common import Result, result, say
from updraft.core.payloads import SubmitRequest
from updraft.core.protocol import quote
from userpool.actions import JobActions
from userpool.config import PoolConfig
from userpool.events import EventLog, Tx
from userpool.leases import Leases
from userpool.schedd import Schedd
from userpool.store import Store
from userpool.tokens import Identity

SITES = [f"Site{i:02d}" for i in range(20)]


def build(home: Path, jobs: int, autoclusters: int) -> Schedd:
    config = PoolConfig(home=home, synchronous="NORMAL")
    store = Store(config.database, "NORMAL")
    store.open()
    schedd = Schedd(config, store, EventLog(store))
    schedd.load()
    per_cluster = jobs // autoclusters
    for index in range(autoclusters):
        owner = f"user{index % 10}"
        identity = Identity(
            owner,
            frozenset({__import__("updraft.core.protocol", fromlist=["Scope"]).Scope.USER}),
            "bench",
            2e9,
        )
        cluster_id, batch = schedd.reserve(identity)
        store.write_now(batch)
        sites = ",".join(SITES[(index + k) % len(SITES)] for k in range(3))
        ad = {
            "Cmd": '"/bin/true"',
            "Requirements": f"stringListMember(TARGET.GLIDEIN_Site, {quote(sites)}) && (TARGET.Memory >= RequestMemory)",
            "RequestMemory": str(500 + index),  # one autocluster per cluster
            "RequestCpus": "1",
            "JobPrio": str(index % 3),
        }
        cluster, tx = schedd.prepare_submit(
            identity, SubmitRequest(cluster_id, ad, [{}] * per_cluster), lambda d: True
        )
        store.write_now(tx.batch)
        schedd.install(cluster)
    return schedd


def slots(count: int) -> list[dict[str, str]]:
    out = []
    for index in range(count):
        out.append(
            {
                "Name": quote(f"slot1@glidein_{index}@wn{index % 5000}"),
                "GLIDEIN_Site": quote(SITES[index % len(SITES)]),
                "Cpus": "1",
                "Memory": str((2, 4, 8)[index % 3] * 1024),
                "Disk": "20000000",
                "Arch": '"X86_64"',
                "OpSys": '"LINUX"',
                "START": "true",
            }
        )
    return out


def run(quick: bool = False) -> list[Result]:
    jobs, autoclusters, slot_count = (100_000, 1_000, 10_000) if quick else (1_000_000, 1_000, 100_000)
    home = Path(tempfile.mkdtemp(prefix="updraft-match-"))
    say(f"matchmaking: queueing {jobs:,} idle jobs in {autoclusters:,} autoclusters")
    schedd = build(home, jobs, autoclusters)
    assert sum(1 for ac in schedd.index.ordered if ac.idle) == autoclusters
    ads = slots(slot_count)
    negotiator = schedd.negotiator
    leases = Leases(schedd, JobActions(schedd))
    say(f"matchmaking: {slot_count:,} slots asking for work")
    pending = []
    matched = 0
    tx = Tx()
    start = time.perf_counter()
    for number, slot in enumerate(ads, 1):
        negotiator.prepare(slot)
        picked = negotiator.match_one(slot)
        if picked is not None:
            leases.start(tx, picked.job, picked.autocluster, slot, picked.slot_ad, "pilot:bench")
            matched += 1
        if number % 1000 == 0:
            schedd.finish(tx)
            pending.append(schedd.store.write(tx.batch))
            tx = Tx()
    schedd.finish(tx)
    pending.append(schedd.store.write(tx.batch))
    for future in pending:
        future.result()
    elapsed = time.perf_counter() - start
    schedd.store.close()
    shutil.rmtree(home, ignore_errors=True)
    assert matched == slot_count, f"only {matched} of {slot_count} slots matched"
    return [
        result(
            f"matchmaking: {jobs:,} idle jobs, {autoclusters:,} autoclusters, {slot_count:,} slots",
            matched / elapsed,
            "matches/s",
            ">= 5000",
            notes={"seconds": round(elapsed, 2), "evaluations": negotiator.evaluations},
        )
    ]
