"""The factory's errors: sites that cannot be reached now, and submissions they refuse for good."""

from __future__ import annotations

from collections.abc import Sequence

from updraft.core.errors import UpdraftError


class FactoryError(UpdraftError):
    pass


class SiteError(FactoryError):
    """A site command failed: which entry, what was run, how it ended."""

    def __init__(self, entry: str, argv: Sequence[str], rc: int, stderr_tail: str) -> None:
        self.entry = entry
        self.argv = list(argv)
        self.rc = rc
        self.stderr_tail = stderr_tail
        super().__init__(f"{entry}: {' '.join(self.argv[:3])}... exited {rc}: {stderr_tail.strip()[-300:]}")


class SiteUnavailable(FactoryError):
    """Try again later: the CE did not answer, timed out, or is overloaded."""


class SubmitRefused(FactoryError):
    """The site will not take this glidein as it is: retrying unchanged will not help."""
