"""The factory's journal: every glidein, written before it is submitted, updated as the site answers.

A glidein is recorded UNSUBMITTED with its tag before the site is asked; the site's id is
recorded after.  So after a kill -9 the factory knows every glidein it may have sent, and
finds out from the sites which of those exist (by tag) instead of sending them twice.
Downtimes live here too, so that `updraft factory downtime` works on a running factory.
"""

from __future__ import annotations

import functools
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from factory.glideins import GLIDEIN_STATES, LIVE, TERMINAL, GlideinState, is_stale

SCHEMA = """
CREATE TABLE IF NOT EXISTS glideins (
    glidein_id TEXT PRIMARY KEY,
    tag TEXT NOT NULL UNIQUE,
    entry TEXT NOT NULL,
    client TEXT NOT NULL,
    state TEXT NOT NULL,
    site_id TEXT,
    native TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    submitted REAL,
    started REAL,
    ended REAL,
    changed REAL NOT NULL,
    remove_requested REAL NOT NULL DEFAULT 0,
    releases INTEGER NOT NULL DEFAULT 0,
    last_release REAL NOT NULL DEFAULT 0,
    missing_since REAL,
    cleaned INTEGER NOT NULL DEFAULT 0,
    lease_until REAL,
    credential TEXT NOT NULL DEFAULT '',
    record TEXT,
    hold_code INTEGER,
    hold_subcode INTEGER
);
CREATE INDEX IF NOT EXISTS glideins_live ON glideins (state, entry);
CREATE TABLE IF NOT EXISTS downtimes (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    target TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL,
    comment TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Glidein:
    glidein_id: str
    tag: str
    entry: str
    client: str
    state: GlideinState
    site_id: str | None
    native: str
    reason: str
    created: float
    submitted: float | None
    started: float | None
    ended: float | None
    changed: float
    remove_requested: float  # when we asked the site to remove it (0: never)
    releases: int
    last_release: float
    missing_since: float | None
    cleaned: bool
    lease_until: float | None
    credential: str
    record: dict[str, Any] | None
    hold_code: int | None = None  # HTCondor's HoldReasonCode for the site's hold, where one applies
    hold_subcode: int | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Glidein:
        return cls(
            row["glidein_id"], row["tag"], row["entry"], row["client"], GlideinState(row["state"]), row["site_id"],
            row["native"], row["reason"], row["created"], row["submitted"], row["started"], row["ended"], row["changed"],
            row["remove_requested"], row["releases"], row["last_release"], row["missing_since"], bool(row["cleaned"]),
            row["lease_until"], row["credential"], json.loads(row["record"]) if row["record"] else None,
            row["hold_code"], row["hold_subcode"],
        )  # fmt: skip

    @property
    def live(self) -> bool:
        return self.state in LIVE


@dataclass
class Downtime:
    id: int
    scope: str  # factory | entry | frontend
    target: str
    start: float
    end: float | None
    comment: str

    def active(self, now: float) -> bool:
        return self.start <= now and (self.end is None or now < self.end)


F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    """One connection shared by the entries' worker threads: one statement sequence at a time."""

    @functools.wraps(method)
    def wrapper(self: Journal, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lock = threading.RLock()
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.executescript(SCHEMA)
        columns = {row["name"] for row in self.db.execute("PRAGMA table_info(glideins)")}
        for name in ("hold_code", "hold_subcode"):  # journals written before hold codes were kept
            if name not in columns:
                self.db.execute(f"ALTER TABLE glideins ADD COLUMN {name} INTEGER")

    @_locked
    def close(self) -> None:
        self.db.close()

    # -- glideins --------------------------------------------------------------------------------
    @_locked
    def new_glideins(
        self, factory: str, entry: str, client: str, count: int, now: float | None = None,
        lease_until: float | None = None, credential: str = "",
    ) -> list[Glidein]:  # fmt: skip
        """Record glideins about to be submitted (one transaction, durable before the site is asked)."""
        now = now if now is not None else time.time()
        rows = []
        for _ in range(count):
            glidein_id = secrets.token_hex(6)
            tag = f"updraft_{factory}_{glidein_id}".replace("-", "_")
            rows.append(
                (
                    glidein_id,
                    tag,
                    entry,
                    client,
                    GlideinState.UNSUBMITTED.value,
                    now,
                    now,
                    lease_until,
                    credential,
                )
            )
        with self.db:
            self.db.executemany(
                "INSERT INTO glideins (glidein_id, tag, entry, client, state, created, changed, lease_until, credential)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return [self.get(row[0]) for row in rows]

    @_locked
    def get(self, glidein_id: str) -> Glidein | None:
        row = self.db.execute("SELECT * FROM glideins WHERE glidein_id = ?", (glidein_id,)).fetchone()
        return Glidein.from_row(row) if row else None

    @_locked
    def by_tag(self, tag: str) -> Glidein | None:
        row = self.db.execute("SELECT * FROM glideins WHERE tag = ?", (tag,)).fetchone()
        return Glidein.from_row(row) if row else None

    @_locked
    def live(self, entry: str | None = None) -> list[Glidein]:
        states = [s.value for s in LIVE]
        sql = f"SELECT * FROM glideins WHERE state IN ({','.join('?' * len(states))})"
        params: list[Any] = list(states)
        if entry is not None:
            sql += " AND entry = ?"
            params.append(entry)
        return [Glidein.from_row(r) for r in self.db.execute(sql + " ORDER BY created", params)]

    @_locked
    def uncleaned(self) -> list[Glidein]:
        states = [s.value for s in TERMINAL]
        sql = f"SELECT * FROM glideins WHERE cleaned = 0 AND site_id IS NOT NULL AND state IN ({','.join('?' * len(states))})"
        return [Glidein.from_row(r) for r in self.db.execute(sql, states)]

    @_locked
    def recent(self, since: float, entry: str | None = None) -> list[Glidein]:
        sql = "SELECT * FROM glideins WHERE created >= ?"
        params: list[Any] = [since]
        if entry:
            sql += " AND entry = ?"
            params.append(entry)
        return [Glidein.from_row(row) for row in self.db.execute(sql + " ORDER BY created", params)]

    @_locked
    def find(self, text: str) -> Glidein | None:
        """By glidein id, tag or site id (operators paste what they have), or the slot name its pilot reported."""
        row = self.db.execute(
            "SELECT * FROM glideins WHERE glidein_id = ? OR tag = ? OR site_id = ? ORDER BY created DESC LIMIT 1",
            (text, text, text),
        ).fetchone()
        if (
            row is None and "@" in text
        ):  # slot1@<GLIDEIN_Name>_<pid>_<rand>@host, from the pilot's final record
            row = self.db.execute(
                "SELECT * FROM glideins WHERE record LIKE ? ORDER BY created DESC LIMIT 1",
                ("%" + json.dumps({"glidein": text})[1:-1] + "%",),
            ).fetchone()
        return Glidein.from_row(row) if row else None

    @_locked
    def listing(self, entry: str = "", state: str = "", client: str = "", limit: int = 1000) -> list[Glidein]:
        """Glideins by entry, state and frontend (or frontend.group), newest first."""
        sql, params = "SELECT * FROM glideins WHERE 1", []
        for column, value in (("entry", entry), ("state", state)):
            if value:
                sql += f" AND {column} = ?"
                params.append(value)
        if client:
            sql += " AND (client = ? OR client LIKE ?)"
            params += [client, client + ".%"]
        rows = self.db.execute(sql + " ORDER BY created DESC LIMIT ?", (*params, limit))
        return [Glidein.from_row(r) for r in rows]

    @_locked
    def submitted(self, glidein: Glidein, site_id: str, now: float | None = None) -> None:
        now = now if now is not None else time.time()
        with self.db:
            self.db.execute(
                "UPDATE glideins SET site_id = ?, submitted = ?, state = ?, changed = ? WHERE glidein_id = ? AND state = ?",
                (
                    site_id,
                    now,
                    GlideinState.QUEUED.value,
                    now,
                    glidein.glidein_id,
                    GlideinState.UNSUBMITTED.value,
                ),
            )

    @_locked
    def move(
        self,
        glidein: Glidein,
        state: GlideinState,
        native: str = "",
        reason: str = "",
        now: float | None = None,
        hold: tuple[int | None, int | None] = (None, None),
    ) -> bool:
        """Apply a site report; stale ones (backwards) and repeats change nothing.  True if it moved."""
        now = now if now is not None else time.time()
        if state == GlideinState.HELD and hold != (glidein.hold_code, glidein.hold_subcode):
            with self.db:
                self.db.execute(
                    "UPDATE glideins SET hold_code = ?, hold_subcode = ? WHERE glidein_id = ?",
                    (*hold, glidein.glidein_id),
                )
            glidein.hold_code, glidein.hold_subcode = hold
        if state == glidein.state:
            if native and native != glidein.native:
                with self.db:
                    self.db.execute(
                        "UPDATE glideins SET native = ?, reason = ?, missing_since = NULL WHERE glidein_id = ?",
                        (native, reason or glidein.reason, glidein.glidein_id),
                    )
            elif glidein.missing_since is not None:
                with self.db:
                    self.db.execute(
                        "UPDATE glideins SET missing_since = NULL WHERE glidein_id = ?", (glidein.glidein_id,)
                    )
            return False
        if is_stale(glidein.state, state):
            return False
        GLIDEIN_STATES.advance(glidein.state, state, glidein.glidein_id)
        started = now if state == GlideinState.RUNNING and glidein.started is None else glidein.started
        ended = now if state in TERMINAL else glidein.ended
        with self.db:
            self.db.execute(
                "UPDATE glideins SET state = ?, native = ?, reason = ?, changed = ?, started = ?, ended = ?, missing_since = NULL"
                " WHERE glidein_id = ?",
                (
                    state.value,
                    native or glidein.native,
                    reason or (glidein.reason if state == GlideinState.REMOVED else ""),
                    now,
                    started,
                    ended,
                    glidein.glidein_id,
                ),
            )
        glidein.state, glidein.started, glidein.ended = state, started, ended
        return True

    @_locked
    def set(self, glidein_id: str, **values: Any) -> None:
        columns = ", ".join(f"{name} = ?" for name in values)
        params = [json.dumps(v) if name == "record" and v is not None else v for name, v in values.items()]
        with self.db:
            self.db.execute(f"UPDATE glideins SET {columns} WHERE glidein_id = ?", (*params, glidein_id))

    @_locked
    def adopt(
        self, factory: str, entry: str, tag: str, site_id: str, state: GlideinState, now: float | None = None
    ) -> Glidein:
        """A glidein the site has and the journal did not know (it was lost with an older journal)."""
        now = now if now is not None else time.time()
        glidein_id = tag.rsplit("_", 1)[-1]
        with self.db:
            self.db.execute(
                "INSERT OR IGNORE INTO glideins (glidein_id, tag, entry, client, state, site_id, created, submitted, changed, reason)"
                " VALUES (?, ?, ?, '', ?, ?, ?, ?, ?, 'adopted after a restart')",
                (glidein_id, tag, entry, state.value, site_id, now, now, now),
            )
        found = self.by_tag(tag)
        assert found is not None
        return found

    @_locked
    def prune(self, older_than: float) -> int:
        states = [s.value for s in TERMINAL]
        with self.db:
            cursor = self.db.execute(
                f"DELETE FROM glideins WHERE ended < ? AND cleaned = 1 AND state IN ({','.join('?' * len(states))})",
                (older_than, *states),
            )
        return cursor.rowcount

    @_locked
    def counts(self, entry: str | None = None) -> dict[tuple[str, str], dict[str, int]]:
        """(entry, client) -> live counts by state; glideins being removed count as 'removing'."""
        out: dict[tuple[str, str], dict[str, int]] = {}
        states = [s.value for s in LIVE]
        sql = (
            "SELECT entry, client, CASE WHEN remove_requested > 0 THEN 'removing' ELSE state END AS bucket,"
            f" COUNT(*) AS n FROM glideins WHERE state IN ({','.join('?' * len(states))})"
        )
        params: list[Any] = list(states)
        if entry is not None:
            sql += " AND entry = ?"
            params.append(entry)
        for row in self.db.execute(sql + " GROUP BY entry, client, bucket", params):
            out.setdefault((row["entry"], row["client"]), {})[row["bucket"]] = row["n"]
        return out

    # -- small facts that outlive a restart (entry configs of glideins still alive) -------------
    @_locked
    def get_meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else None

    @_locked
    def set_meta(self, key: str, value: Any) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (key, json.dumps(value, default=str)),
            )

    # -- downtimes -------------------------------------------------------------------------------
    @_locked
    def add_downtime(self, scope: str, target: str, start: float, end: float | None, comment: str) -> int:
        with self.db:
            cursor = self.db.execute(
                "INSERT INTO downtimes (scope, target, start, end, comment) VALUES (?, ?, ?, ?, ?)",
                (scope, target, start, end, comment),
            )
        return int(cursor.lastrowid or 0)

    @_locked
    def end_downtime(self, downtime_id: int, now: float | None = None) -> bool:
        now = now if now is not None else time.time()
        with self.db:
            cursor = self.db.execute(
                "UPDATE downtimes SET end = ? WHERE id = ? AND (end IS NULL OR end > ?)",
                (now, downtime_id, now),
            )
        return cursor.rowcount > 0

    @_locked
    def downtimes(self, include_past: bool = False, now: float | None = None) -> list[Downtime]:
        now = now if now is not None else time.time()
        rows = self.db.execute("SELECT * FROM downtimes ORDER BY start").fetchall()
        found = [Downtime(r["id"], r["scope"], r["target"], r["start"], r["end"], r["comment"]) for r in rows]
        return found if include_past else [d for d in found if d.end is None or d.end > now]

    @_locked
    def in_downtime(self, entry: str, client: str | None = None, now: float | None = None) -> Downtime | None:
        now = now if now is not None else time.time()
        frontend = client.split(".", 1)[0] if client else None
        for downtime in self.downtimes(now=now):
            if not downtime.active(now):
                continue
            if downtime.scope == "factory" or (downtime.scope == "entry" and downtime.target == entry):
                return downtime
            if downtime.scope == "frontend" and frontend is not None and downtime.target == frontend:
                return downtime
        return None


def ids(glideins: Iterable[Glidein]) -> list[str]:
    return [g.site_id for g in glideins if g.site_id]
