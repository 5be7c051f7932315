"""Who a token's subject is on this host: the identity map, in the spirit of HTCondor's map files.

HTCondor's schedd writes a job's files as the job's owner, the local account its
authenticated name maps to.  Updraft does the same: ``$UPDRAFT_HOME/identity.map`` (the
``identity_map`` knob) says which local Unix account each token subject is, one rule a line,
the first rule that matches wins::

    # method  subject                 account
    TOKEN     alice                   alice
    TOKEN     /^cms\\.(.+)$/           cms\\1       # a regular expression, \\1 its first group
    TOKEN     /^(.+)@example\\.org$/   \\1

A subject no rule maps has no local account: its output stays in the spool (the owner
fetches it with ``condor_transfer_data``).  Root is never an answer: the pool writes
nothing as root, whatever the map says.  Without a map file the pool's own account is
the only one mapped, to itself (a personal pool run by alice delivers alice's output).
The file is read again when it changes, so an operator edits it without a restart.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import time
from dataclasses import dataclass
from pathlib import Path

from updraft.core.configfile import ConfigError

log = logging.getLogger("updraft.pool")

METHODS = ("TOKEN",)
#: how often (s) the file's modification time is looked at
RECHECK_S = 2.0


@dataclass(frozen=True)
class Account:
    """A local Unix account the pool may write as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


@dataclass(frozen=True)
class Unmapped:
    """Why a subject has no account to write as (said in the event and the refusal)."""

    reason: str


@dataclass(frozen=True)
class _Rule:
    line: int
    pattern: re.Pattern[str] | None  # None: a literal subject
    subject: str
    account: str

    def apply(self, subject: str) -> str | None:
        if self.pattern is None:
            return self.account if subject == self.subject else None
        found = self.pattern.search(subject)  # as HTCondor's map files: anchor with ^ and $
        return found.expand(self.account) if found is not None else None


def parse_map(path: Path, text: str) -> list[_Rule]:
    """The rules of a map file; a bad line is a ConfigError naming the file and line."""
    rules: list[_Rule] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        comment = next((index for index, field in enumerate(fields) if field.startswith("#")), None)
        fields = fields[:comment]  # a comment starts at a field beginning with '#'
        if not fields:
            continue
        if len(fields) != 3:
            raise ConfigError(path, number, "", "expected three fields: METHOD SUBJECT ACCOUNT")
        method, subject, account = fields
        if method.upper() not in METHODS:
            raise ConfigError(path, number, method, f"unknown method (known: {', '.join(METHODS)})")
        pattern = None
        if len(subject) >= 2 and subject.startswith("/") and subject.endswith("/"):
            try:
                pattern = re.compile(subject[1:-1])
            except re.error as exc:
                raise ConfigError(path, number, subject, f"not a regular expression: {exc}") from None
            if re.search(r"\\(\d)", account) and max(int(d) for d in re.findall(r"\\(\d)", account)) > (
                pattern.groups
            ):
                raise ConfigError(path, number, account, "refers to a group the expression does not have")
        elif "\\" in account:
            raise ConfigError(path, number, account, r"\1 needs a /regular expression/ subject")
        rules.append(_Rule(number, pattern, subject, account))
    return rules


def account_named(name: str) -> Account | Unmapped:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return Unmapped(f"maps to account {name!r}, which does not exist on the pool's host")
    if entry.pw_uid == 0:
        return Unmapped("maps to root: the pool never writes as root")
    return Account(name, entry.pw_uid, entry.pw_gid, tuple(os.getgrouplist(name, entry.pw_gid)))


class IdentityMap:
    """Token subject -> local account, read from ``path`` (reread when it changes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._rules: list[_Rule] | None = None
        self._stamp: tuple[float, int] | None = None
        self._checked = -1e9
        self.pool_account = pwd.getpwuid(os.geteuid()).pw_name
        self.load()

    def load(self) -> None:
        """Read the file now (a bad file is refused at start; later edits keep the old rules)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._rules, self._stamp = None, None
            return
        self._rules = parse_map(self.path, self.path.read_text())
        self._stamp = (stat.st_mtime, stat.st_size)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < RECHECK_S:
            return
        self._checked = now
        try:
            stat = self.path.stat()
            stamp: tuple[float, int] | None = (stat.st_mtime, stat.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            try:
                self.load()
            except (ConfigError, OSError) as exc:
                log.error("identity map not reloaded, keeping the old one: %s", exc)
                self._stamp = stamp

    def account_name(self, subject: str) -> str | None:
        """The account ``subject`` maps to, or None."""
        self._refresh()
        if self._rules is None:
            return self.pool_account if subject == self.pool_account else None
        for rule in self._rules:
            found = rule.apply(subject)
            if found is not None:
                return found
        return None

    def account_of(self, subject: str) -> Account | Unmapped:
        name = self.account_name(subject)
        if name is None:
            where = (
                self.path
                if self._rules is not None
                else f"{self.path} (absent: only {self.pool_account} is mapped)"
            )
            return Unmapped(f"{subject} has no local account in the identity map {where}")
        return account_named(name)
