"""Site adapters, by the gridtype names entries use (one explicit table, no dotted import paths)."""

from __future__ import annotations

from factory.adapters.arc import ArcAdapter
from factory.adapters.base import SiteAdapter
from factory.adapters.condor_ce import CondorCEAdapter
from factory.adapters.cream import CreamAdapter
from factory.adapters.fake import FakeAdapter
from factory.adapters.gram import GramAdapter
from factory.adapters.local import LocalAdapter
from factory.adapters.slurm import SlurmAdapter

ADAPTERS: dict[str, type[SiteAdapter]] = {
    a.kind: a
    for a in (LocalAdapter, SlurmAdapter, GramAdapter, ArcAdapter, CreamAdapter, CondorCEAdapter, FakeAdapter)
}
