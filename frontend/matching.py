"""Which entries each kind of job can use, and how much demand that puts on each entry.

Jobs arrive already grouped by the texts of the group's match attributes (the pool's
job summary), so ``match_expr`` is evaluated once per (kind of job, entry), never per job.
A job that matches k entries counts 1/k to each; a job of c cores counts c/p at an entry
whose pilots have p cores, and never at an entry whose pilots are too small for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from frontend.config import FrontendConfig, GroupConfig
from frontend.policy import EntryCounts
from updraft.core import classads, payloads, protocol


@dataclass
class Entry:
    """A factory entry as the frontend uses it (from its glidefactory ad)."""

    name: str  # "<entry>@<factory>"
    entry: str
    factory: str
    site: str
    cpus: int  # 0: the pilot decides on the node
    down: bool
    texts: dict[str, str] = field(repr=False, default_factory=dict)
    ad: Any = field(repr=False, default=None)


def from_their_factories(
    ads: Iterable[dict[str, str]], factory_attr: str = protocol.ATTR_FACTORY_NAME
) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    """The factories' ads that their factory wrote, and (name, why) for the others.

    Any holder of a factory token may advertise a glidefactory ad naming another factory, with a
    key of its own: believed, it would receive this frontend's pilot tokens sealed to that key.
    As glideinWMS's frontend checks ``factory_identity``, an ad counts only when the collector
    authenticated its writer as the factory it names (the factory checks requests the same way).
    """
    kept, refused = [], []
    for texts in ads:
        factory = str(protocol.ad_value(texts, factory_attr, ""))
        forged = protocol.forged_author(texts, protocol.Scope.FACTORY, factory)
        if forged:
            refused.append((str(protocol.ad_value(texts, protocol.ATTR_NAME, "?")), forged))
        else:
            kept.append(texts)
    return kept, refused


def entries_from_ads(ads: Iterable[dict[str, str]], config: FrontendConfig) -> list[Entry]:
    """The entries that let this frontend in (and belong to a factory it uses)."""
    out = []
    for texts in ads:
        factory = str(protocol.ad_value(texts, protocol.ATTR_FACTORY_NAME, ""))
        if config.factories and factory not in config.factories:
            continue
        allowed = [
            a.strip()
            for a in str(protocol.ad_value(texts, protocol.ATTR_ALLOWED_FRONTENDS, "")).split(",")
            if a.strip()
        ]
        if "*" not in allowed and config.name not in allowed:
            continue
        cpus = protocol.ad_value(texts, protocol.ATTR_GLIDEIN_CPUS, 0)
        out.append(
            Entry(
                name=str(protocol.ad_value(texts, protocol.ATTR_NAME, "")), entry=str(protocol.ad_value(texts, protocol.ATTR_ENTRY_NAME, "")), factory=factory,
                site=str(protocol.ad_value(texts, protocol.ATTR_GLIDEIN_SITE, "")), cpus=cpus if isinstance(cpus, int) else 0,
                down=protocol.ad_value(texts, protocol.ATTR_IN_DOWNTIME, False) is True, texts=texts, ad=classads.build(texts),
            )
        )  # fmt: skip
    return sorted(out, key=lambda e: e.name)


@dataclass
class Kind:
    """Jobs that look the same to the group: the texts of its match attributes, and their cores."""

    key: tuple[str | None, ...]
    cpus: int
    idle: int = 0
    old_idle: int = 0


class Matcher:
    """match_expr of one group over its entries, cached by the texts that decide it."""

    def __init__(self, group: GroupConfig, entries: Sequence[Entry]) -> None:
        self.group = group
        self.entries = [e for e in entries if self._usable(e)]
        self.attrs = group.job_refs
        self.cache: dict[tuple[str | None, ...], list[int]] = {}
        self.evaluations = 0

    def _usable(self, entry: Entry) -> bool:
        if self.group.factory_constraint.strip().lower() in ("", "true"):
            return True
        return classads.is_true(classads.evaluate(self.group.factory_constraint, entry.ad))

    def matches(self, key: tuple[str | None, ...], cpus: int) -> list[int]:
        """Indexes of the entries a job of this kind may use (entries in downtime included)."""
        cache_key = (*key, str(cpus))
        found = self.cache.get(cache_key)
        if found is None:
            job = classads.build(
                [(name, text) for name, text in zip(self.attrs, key, strict=True) if text is not None]
                + [("RequestCpus", str(cpus))]
            )
            found = []
            for index, entry in enumerate(self.entries):
                if entry.cpus and cpus > entry.cpus:
                    continue
                self.evaluations += 1
                if classads.is_true(classads.evaluate(self.group.match_expr, job, entry.ad)):
                    found.append(index)
            self.cache[cache_key] = found
        return found


def demand(
    matcher: Matcher, kinds: Iterable[Kind], ignore_down_entries: bool = False
) -> tuple[dict[str, EntryCounts], dict[str, int]]:
    """Idle and old idle jobs per entry name (proportional, in pilots), and jobs that match nothing usable.

    As in glideinWMS, a job matching k entries counts 1/k at each, entries in downtime
    included (they then ask for nothing); with ``ignore_down_entries`` the down ones are left
    out of k, so the entries that are up share the whole job.
    """
    counts: dict[str, EntryCounts] = {e.name: EntryCounts() for e in matcher.entries}
    unmatched = {"idle": 0, "down_only": 0}
    for kind in kinds:
        if not kind.idle:
            continue
        matched = matcher.matches(kind.key, kind.cpus)
        up = [i for i in matched if not matcher.entries[i].down]
        if not up:
            unmatched["down_only" if matched else "idle"] += kind.idle
        used = up if ignore_down_entries else matched
        if not used:
            continue
        share = 1.0 / len(used)
        for index in used:
            entry = matcher.entries[index]
            pilots = kind.cpus / entry.cpus if entry.cpus else 1.0
            target = counts[entry.name]
            target.idle_jobs += kind.idle * share * pilots
            target.old_idle_jobs += kind.old_idle * share * pilots
    return counts, unmatched


def kinds_from_summary(rows: Iterable[payloads.SummaryRow], attrs: Sequence[str]) -> list[Kind]:
    """Summary rows (keyed by the match attributes, then RequestCpus) as kinds of jobs."""
    out = []
    for row in rows:
        key = tuple(row.key[: len(attrs)])
        cpus = classads.int_of(row.key[len(attrs)], 1) if len(row.key) > len(attrs) else 1
        out.append(Kind(key, max(1, cpus), row.idle, row.old_idle))
    return out
