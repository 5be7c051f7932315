"""How a submit handler reads commands: the expanded values of one proc, and what each read.

The Context records every command a handler reads, so that for later procs only the
handlers whose commands changed run again; handlers register with ``@handler`` and name
the commands they understand (the unknown-command check uses them).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from updraft.core import classads
from userpool.submit.parse import SubmitError, SubmitFile

TRUE_WORDS = ("true", "yes", "t", "y", "1")
FALSE_WORDS = ("false", "no", "f", "n", "0")


@dataclass
class SubmitEnvironment:
    """What condor_submit takes from where it runs."""

    cwd: str
    owner: str
    environ: Mapping[str, str]
    filesystem_domain: str

    @classmethod
    def here(cls, owner: str, cwd: str | None = None) -> SubmitEnvironment:
        return cls(cwd or os.getcwd(), owner, dict(os.environ), full_hostname())


def full_hostname() -> str:
    """HTCondor's FULL_HOSTNAME (the FILESYSTEM_DOMAIN default): the canonical name if it has dots."""
    name = socket.gethostname()
    if "." in name:
        return name
    try:
        for info in socket.getaddrinfo(name, None, flags=socket.AI_CANONNAME):
            canonical = info[3]
            if canonical and "." in canonical and not canonical.startswith("localhost"):
                return canonical
    except OSError:
        pass
    return name


#: HTCondor's other spellings of a command: command -> the names that mean it too
ALIASES: dict[str, tuple[str, ...]] = {
    "input": ("stdin",),
    "output": ("stdout",),
    "error": ("stderr",),
    "rank": ("preferences",),
    "initialdir": ("initial_dir", "job_iwd"),
    "getenv": ("get_env",),
}


class Context:
    """The expanded commands of one proc, read through methods that record what was read."""

    def __init__(self, values: Mapping[str, str], file: SubmitFile, env: SubmitEnvironment) -> None:
        self.values = values  # lower-case command -> expanded value
        self.file = file
        self.env = env
        self.reads: set[str] = set()

    def raw(self, key: str) -> str | None:
        self.reads.add(key)
        value = self.values.get(key)
        for alias in ALIASES.get(key, ()) if value is None else ():  # stdin for input, ...
            self.reads.add(alias)
            value = self.values.get(alias)
            if value is not None:
                break
        return value.strip() if value is not None else None

    def get(self, key: str) -> str | None:
        """The value, or None when absent or empty."""
        value = self.raw(key)
        return value if value else None

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
        raise self.error(key, f"{key} must be true or false, not {value!r}")

    def integer(self, key: str) -> int | None:
        value = self.get(key)
        if value is None:
            return None
        try:
            result = classads.evaluate(value)
        except classads.ExpressionError:
            result = None
        result = classads.whole_number(result)
        if result is None:
            raise self.error(key, f"{key} must be an integer, not {value!r}")
        return result

    def expression(self, key: str, value: str | None = None) -> str:
        text = self.get(key) if value is None else value
        assert text is not None
        try:
            return classads.normalize(text)
        except classads.ExpressionError as exc:
            raise self.error(key, f"{self.file.as_written(key)}: {exc.reason}: {text}") from None

    def error(self, key: str | None, message: str) -> SubmitError:
        return self.file.error(key, message)

    def iwd(self) -> str:
        initial = self.get("initialdir")
        if initial is None:
            return self.env.cwd
        return initial if os.path.isabs(initial) else os.path.join(self.env.cwd, initial)

    def in_iwd(self, path: str) -> str:
        return path if os.path.isabs(path) else os.path.join(self.iwd(), path)


Handler = Callable[[Context], dict[str, str]]


@dataclass
class HandlerSpec:
    function: Handler
    keys: tuple[str, ...]  # the commands it understands (for "unknown command" checks)
    prefixes: tuple[str, ...] = ()


HANDLERS: list[HandlerSpec] = []


def handler(*keys: str, prefixes: tuple[str, ...] = ()) -> Callable[[Handler], Handler]:
    def register(function: Handler) -> Handler:
        HANDLERS.append(HandlerSpec(function, tuple(k.lower() for k in keys), prefixes))
        return function

    return register


def split_list(value: str | None) -> list[str]:
    if not value:
        return []
    return [item.strip() for item in value.replace("\n", ",").split(",") if item.strip()]


def is_scheduler_universe(ctx: Context) -> bool:
    """The DAG job's universe: it runs on the submit side, so nothing of it is shipped."""
    return (ctx.get("universe") or "").lower() in ("scheduler", "7")


def is_url(item: str) -> bool:
    return "://" in item
