"""Fair share between submitters: HTCondor's user priorities with half-life decay.

A submitter's real priority moves toward the number of cores it uses, with the
configured half-life (PRIORITY_HALFLIFE, one day by default); lower is better and
0.5 is the floor.  The effective priority is the real one times the submitter's
priority factor.  The negotiator hands out slots so that each submitter's share of
cores goes as 1 / effective priority, which is what HTCondor's pie slices do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from updraft.core.payloads import AccountantRow
from userpool.store import Batch, Store

MIN_PRIORITY = 0.5
NICE_USER_FACTOR = 1e10  # nice_user jobs run only when nobody else wants the slots


@dataclass
class Submitter:
    name: str
    priority: float = MIN_PRIORITY
    factor: float = 1.0
    in_use_cpus: float = 0.0
    usage_seconds: float = 0.0  # accumulated core-seconds, for condor_userprio
    updated: float = 0.0

    @property
    def effective(self) -> float:
        return self.priority * self.factor


class Accountant:
    def __init__(
        self,
        store: Store,
        halflife_s: float = 86400.0,
        default_factor: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.halflife_s = halflife_s
        self.default_factor = default_factor
        self.clock = clock
        self.submitters: dict[str, Submitter] = {}
        now = clock()
        for name, priority, factor, usage, _updated in store.read(
            "SELECT submitter, priority, factor, usage_seconds, updated FROM accountant"
        ):
            self.submitters[name] = Submitter(name, priority, factor, 0.0, usage, now)

    def get(self, name: str) -> Submitter:
        found = self.submitters.get(name)
        if found is None:
            factor = NICE_USER_FACTOR if name.startswith("nice-user.") else self.default_factor
            found = self.submitters[name] = Submitter(name, MIN_PRIORITY, factor, 0.0, 0.0, self.clock())
        return found

    def charge(self, name: str, cpus: float) -> None:
        """A claim for ``cpus`` cores started (negative: ended)."""
        submitter = self.get(name)
        self._decay(submitter, self.clock())
        submitter.in_use_cpus = max(0.0, submitter.in_use_cpus + cpus)

    def share_score(self, name: str) -> tuple[float, float, str]:
        """Lower goes first: cores in use (plus the one asked for) weighted by effective priority."""
        submitter = self.get(name)
        return ((submitter.in_use_cpus + 1.0) * submitter.effective, submitter.effective, name)

    def _decay(self, submitter: Submitter, now: float) -> None:
        elapsed = max(0.0, now - submitter.updated)
        if elapsed <= 0:
            return
        beta = math.pow(0.5, elapsed / self.halflife_s) if self.halflife_s > 0 else 0.0
        submitter.priority = max(
            MIN_PRIORITY, submitter.priority * beta + submitter.in_use_cpus * (1.0 - beta)
        )
        submitter.usage_seconds += submitter.in_use_cpus * elapsed
        submitter.updated = now

    def update(self) -> Batch:
        """Decay everyone to now; returns the rows to persist."""
        now = self.clock()
        batch = Batch()
        rows = []
        for submitter in self.submitters.values():
            self._decay(submitter, now)
            rows.append((submitter.name, submitter.priority, submitter.factor, submitter.usage_seconds, now))
        if rows:
            batch.add_many(
                "INSERT INTO accountant (submitter, priority, factor, usage_seconds, updated) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(submitter) DO UPDATE SET priority = excluded.priority, factor = excluded.factor,"
                " usage_seconds = excluded.usage_seconds, updated = excluded.updated",
                rows,
            )
        return batch

    def set_factor(self, name: str, factor: float) -> None:
        if not factor > 0:
            raise ValueError("a priority factor must be positive")
        self.get(name).factor = factor

    def priorities(self) -> dict[str, float]:
        """Each submitter's effective priority now (the monitor's users and groups)."""
        return {name: round(submitter.effective, 3) for name, submitter in self.submitters.items()}

    def report(self) -> list[AccountantRow]:
        now = self.clock()
        out: list[AccountantRow] = []
        for submitter in sorted(self.submitters.values(), key=lambda s: s.effective):
            self._decay(submitter, now)
            out.append(
                AccountantRow(
                    submitter.name,
                    round(submitter.priority, 3),
                    submitter.factor,
                    round(submitter.effective, 3),
                    submitter.in_use_cpus,
                    round(submitter.usage_seconds / 3600.0, 3),
                )
            )
        return out
