"""The one root of every error Updraft raises on purpose.

Stdlib only: the pilot bundles this module too.
"""

from __future__ import annotations


class UpdraftError(Exception):
    """Base class: callers that want "any Updraft failure" catch this and nothing broader."""

    #: process exit status a CLI uses when this error ends it
    exit_status = 1


class UsageError(UpdraftError):
    """The command line itself is wrong; exit 2 like argparse."""

    exit_status = 2
