"""Errors of the user pool; each maps to one HTTP status so the API layer stays thin."""

from __future__ import annotations

from updraft.errors import UpdraftError


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
