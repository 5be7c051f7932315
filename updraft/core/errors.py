"""The one root of every error Updraft raises on purpose, and the answers the pool gives.

Each refusal of the pool is a class with the HTTP status it is answered with, so the
server maps it in one place and the client and the tools name the same thing.
Standard library only: the pilot bundles this module too.
"""

from __future__ import annotations


class UpdraftError(Exception):
    """Base class: callers that want "any Updraft failure" catch this and nothing broader."""

    #: process exit status a CLI uses when this error ends it
    exit_status = 1


class UsageError(UpdraftError):
    """The command line itself is wrong; exit 2 like argparse."""

    exit_status = 2


class PoolError(UpdraftError):
    """Something the pool refuses; ``http_status`` is what the API answers."""

    http_status = 400


class BadRequest(PoolError):
    http_status = 400


class SandboxRefused(BadRequest):
    """A sandbox path that would leave its directory (or a link or device in an output): an
    attack as often as a mistake, so the pool logs it like a refused credential."""


class TooCostly(BadRequest):
    """Expressions that would take too long to evaluate (exprcost): a way to stall the pool as often
    as a mistake, so the pool logs it like a refused credential."""


class ExpressionError(BadRequest):
    """A ClassAd expression that does not parse."""

    def __init__(self, text: str, reason: str, what: str = "expression") -> None:
        self.text = text
        self.reason = reason
        self.what = what
        shown = text if len(text) <= 200 else text[:200] + "..."
        super().__init__(f"{what}: {reason}: {shown!r}")


class Unauthorized(PoolError):
    """No credential, a forged one, or an expired one."""

    http_status = 401


class Forbidden(PoolError):
    """A valid credential that does not allow this action."""

    http_status = 403


class NotFound(PoolError):
    http_status = 404


class Conflict(PoolError):
    """The request is well formed but the state does not allow it (e.g. a stale claim)."""

    http_status = 409


class TooLarge(PoolError):
    http_status = 413


class InsufficientStorage(PoolError):
    """The pool's disk is full: new work is refused until space is freed (the rest goes on)."""

    http_status = 507


class IllegalTransition(PoolError):
    """A job state change the state table does not allow."""

    http_status = 409
