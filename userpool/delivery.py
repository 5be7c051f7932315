"""Output delivery: a completed job's spooled files copied into its submit directory, as its owner.

The rules, in the order they are applied (each refusal is a line in the job's
``output_delivered`` event, and the files stay in the spool for ``condor_transfer_data``):

1. the owner (the job's token subject) must map to a local account (``identities``);
2. the job's Iwd must be an existing absolute directory, not under the pool's home;
3. each file goes inside the Iwd (Out, Err, remaps and all), never through a link;
4. the files are written by ``asowner``: as the owner's account when the pool is root,
   with the pool's own rights into its own directories when it is not.

The same rules decide, at submission, whether an ``initialdir`` is refused: one under the
pool's home always is, and so is one the owner's account cannot write.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from userpool.asowner import OwnerWriter, Place, forbidden_directories
from userpool.identities import Account, IdentityMap, Unmapped
from userpool.sandbox import Spool, delivered_mode, output_destinations, outside_iwd, string_attr

FETCH_HINT = "fetch it with condor_transfer_data"
security_log = logging.getLogger("updraft.pool.security")


class Delivery:
    """Who may have what written where; the writes themselves are the writer's."""

    def __init__(self, home: Path, spool: Spool, identities: IdentityMap, writer: OwnerWriter) -> None:
        self.home = home
        self.spool = spool
        self.identities = identities
        self.writer = writer
        self._home_real = os.path.realpath(home)

    def _forbidden(self) -> frozenset[tuple[int, int]]:
        return forbidden_directories(self.home)

    def under_home(self, path: str) -> bool:
        real = os.path.realpath(path)
        return os.path.commonpath([self._home_real, real]) == self._home_real

    # -- submission ------------------------------------------------------------------------------
    def initialdir_refusals(self, owner: str, directories: Iterable[str]) -> list[str]:
        """Why each of a submission's initial directories is refused ([] when none is)."""
        wanted = sorted({d for d in directories if d})
        refusals = [
            f"initialdir {d} is inside the pool's home: the pool delivers nothing there"
            for d in wanted
            if self.under_home(d)
        ]
        if refusals or not self.writer.privileged:
            return refusals
        account = self.identities.account_of(owner)
        present = [d for d in wanted if os.path.isdir(d)]  # one elsewhere is a remote submit host's
        if isinstance(account, Unmapped) or not present:
            return []
        place = Place("/", self._forbidden())
        problems = self.writer.writable(account, place, present)
        return [
            f"initialdir {d} is not writable by {account.name}, the account {owner} maps to ({why})"
            for d, why in zip(present, problems, strict=True)
            if why
        ]

    # -- completion ------------------------------------------------------------------------------
    def deliver(
        self, texts: dict[str, str], cluster_id: int, proc_id: int, files: Sequence[str]
    ) -> dict[str, Any]:
        """Copy what can be copied; the details of the ``output_delivered`` event."""
        owner = string_attr(texts, "Owner") or ""
        details: dict[str, Any] = {"delivered": 0, "left_in_spool": len(files)}
        account = self.identities.account_of(owner)
        problem = self._place_problem(texts, account)
        if problem:
            details["problems"] = [f"{problem}: the output stays in the spool; {FETCH_HINT}"]
            self._log(cluster_id, proc_id, owner, details["problems"])
            return details
        assert isinstance(account, Account)
        details["as"] = account.name
        iwd = string_attr(texts, "Iwd") or ""
        problems: list[str] = []
        wanted: list[tuple[str, int]] = []
        sources: list[int] = []
        root = self.spool.directory(cluster_id, proc_id)
        try:
            for name, destination in output_destinations(texts, files).items():
                relative = os.path.relpath(destination, iwd)
                if relative.startswith("..") or os.path.isabs(relative) or outside_iwd(texts, destination):
                    problems.append(
                        f"{destination} is outside the job's initial directory: left in the spool"
                    )
                    continue
                try:
                    fd = os.open(root / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                except OSError as exc:
                    problems.append(f"{name}: {exc.strerror}")
                    continue
                sources.append(fd)
                wanted.append((relative, delivered_mode(os.fstat(fd).st_mode)))
            results = (
                self.writer.copy(account, Place(iwd, self._forbidden()), wanted, sources) if wanted else []
            )
        finally:
            for fd in sources:
                with contextlib.suppress(OSError):
                    os.close(fd)
        for (relative, _mode), why in zip(wanted, results, strict=True):
            if why:
                problems.append(f"{os.path.join(iwd, relative)}: {why}")
            else:
                details["delivered"] += 1
        if problems:
            details["problems"] = problems[:5]
            self._log(cluster_id, proc_id, owner, problems)
        return details

    @staticmethod
    def _log(cluster_id: int, proc_id: int, owner: str, problems: list[str]) -> None:
        for problem in problems[:5]:
            security_log.warning(
                "output of job %d.%d (%s) not delivered: %s", cluster_id, proc_id, owner, problem
            )

    def _place_problem(self, texts: dict[str, str], account: Account | Unmapped) -> str:
        if isinstance(account, Unmapped):
            return account.reason
        iwd = string_attr(texts, "Iwd") or ""
        if not iwd or not os.path.isabs(iwd):
            return f"the job's initial directory {iwd!r} is not an absolute path"
        if self.under_home(iwd):
            return f"the job's initial directory {iwd} is inside the pool's home"
        if not os.path.isdir(iwd):
            return f"the job's initial directory {iwd} does not exist on the pool's host"
        return ""
