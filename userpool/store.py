"""Durable state in SQLite (WAL): one writer thread, group commit, acknowledge after commit.

The pool changes its in-memory state on the event loop and, in the same step, queues
the matching SQL here; the single writer applies batches in queue order inside one
transaction each and resolves a future per batch only after COMMIT returns.  API
handlers await that future before they answer, so an acknowledged change is on disk
and a kill -9 at any moment loses nothing acknowledged.  If a commit itself fails the
memory and the disk disagree: the store calls ``on_fatal`` and the server stops, to be
restarted from the disk, rather than run on with a queue it cannot vouch for.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from updraft.core.errors import UpdraftError
from userpool.diskspace import DiskFull, is_disk_full

log = logging.getLogger("updraft.store")

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clusters (
    cluster_id INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    ad TEXT NOT NULL,
    inputs TEXT NOT NULL,
    proc_inputs TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    cluster_id INTEGER NOT NULL,
    proc_id INTEGER NOT NULL,
    status INTEGER NOT NULL,
    overrides TEXT,
    PRIMARY KEY (cluster_id, proc_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    cluster_id INTEGER NOT NULL,
    proc_id INTEGER NOT NULL,
    completed REAL NOT NULL,
    owner TEXT NOT NULL,
    status INTEGER NOT NULL,
    overrides TEXT,
    PRIMARY KEY (cluster_id, proc_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS history_completed ON history (completed);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    source TEXT NOT NULL,
    cluster_id INTEGER NOT NULL,
    proc_id INTEGER NOT NULL,
    type TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events (cluster_id, proc_id);
CREATE TABLE IF NOT EXISTS claims (
    claim_id TEXT PRIMARY KEY,
    cluster_id INTEGER NOT NULL,
    proc_id INTEGER NOT NULL,
    slot_name TEXT NOT NULL,
    pilot TEXT NOT NULL,
    lease_expires REAL NOT NULL,
    lease_s INTEGER NOT NULL,
    resources TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS accountant (
    submitter TEXT PRIMARY KEY,
    priority REAL NOT NULL,
    factor REAL NOT NULL,
    usage_seconds REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (cluster_id INTEGER PRIMARY KEY, owner TEXT NOT NULL, time REAL NOT NULL);
-- jti: "jti:<id>", "sub:<subject>" or "bind:<k>=<v>"; revoked: when (tokens issued up to then are
-- refused; NULL in rows from before this column: every token); expires: when it may be forgotten
CREATE TABLE IF NOT EXISTS revoked_tokens (jti TEXT PRIMARY KEY, expires REAL NOT NULL, revoked REAL);
-- completed jobs whose output is not yet copied to their submit directory (an outbox: written
-- with the completion, deleted with the delivery, resumed after a crash in between)
CREATE TABLE IF NOT EXISTS deliveries (
    cluster_id INTEGER NOT NULL, proc_id INTEGER NOT NULL, PRIMARY KEY (cluster_id, proc_id)
);
"""


# -- the statements the pool's modules write (the schema above has one owner: this module) --------
UPDATE_JOB = "UPDATE jobs SET status = ?, overrides = ? WHERE cluster_id = ? AND proc_id = ?"
DELETE_JOB = "DELETE FROM jobs WHERE cluster_id = ? AND proc_id = ?"
INSERT_HISTORY = (
    "INSERT OR REPLACE INTO history (cluster_id, proc_id, completed, owner, status, overrides)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_DELIVERY = "INSERT OR IGNORE INTO deliveries (cluster_id, proc_id) VALUES (?, ?)"
DELETE_DELIVERY = "DELETE FROM deliveries WHERE cluster_id = ? AND proc_id = ?"
PENDING_DELIVERIES = "SELECT cluster_id, proc_id FROM deliveries"
INSERT_CLAIM = (
    "INSERT INTO claims (claim_id, cluster_id, proc_id, slot_name, pilot, lease_expires, lease_s, resources)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
DELETE_CLAIM = "DELETE FROM claims WHERE claim_id = ?"
UPDATE_CLUSTER_AD = "UPDATE clusters SET ad = ? WHERE cluster_id = ?"
UPDATE_CLUSTER_INPUTS = "UPDATE clusters SET proc_inputs = ? WHERE cluster_id = ?"
LIVE_REVOCATIONS = "SELECT jti, revoked FROM revoked_tokens WHERE expires > ?"
INSERT_REVOCATION = "INSERT OR REPLACE INTO revoked_tokens (jti, expires, revoked) VALUES (?, ?, ?)"

#: columns added after a table first shipped: (table, column, declaration)
ADDED_COLUMNS = (("revoked_tokens", "revoked", "REAL"),)


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    for table, column, declaration in ADDED_COLUMNS:
        present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


def dumps_json(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass
class Batch:
    """SQL to apply atomically: (statement, parameters, executemany?) in order."""

    statements: list[tuple[str, Any, bool]] = field(default_factory=list)
    #: nothing in memory depends on it yet (a submission): on a full disk it is refused, not fatal
    refusable: bool = False

    def add(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.statements.append((sql, params, False))

    def add_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.statements.append((sql, rows, True))

    def __bool__(self) -> bool:
        return bool(self.statements)


_STOP = object()


class StoreUnreadable(UpdraftError):
    """The queue database is not one this pool can read: said in one line, with what to do."""

    def __init__(self, path: Path, problem: BaseException | str) -> None:
        super().__init__(
            f"{path}: {problem}: the job queue cannot be read. Restore it from a backup, or move it"
            " (and its -wal and -shm files) aside to start an empty queue; the spool is kept and"
            " cluster ids continue after the ones it holds"
        )


class Store:
    def __init__(
        self,
        path: Path,
        synchronous: str = "FULL",
        on_fatal: Callable[[BaseException], None] | None = None,
        on_full: Callable[[], bool] | None = None,
    ) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self.on_fatal = on_fatal
        #: called when a commit finds the disk full; True if it freed space worth a retry
        self.on_full = on_full
        self._queue: queue.Queue[Any] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._readers = (
            threading.local()
        )  # one read connection per thread: WAL lets them read while the writer writes
        self._reader_connections: list[sqlite3.Connection] = []
        self._opened = False
        self.commits = 0

    # -- lifecycle -----------------------------------------------------------------------
    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size == 0:
            # SQLite would take an empty file for a new database: a pool with no jobs, its ids from 1
            raise StoreUnreadable(self.path, "the file is empty (0 bytes), not a queue")
        try:
            connection = self._connect()
            try:
                connection.executescript(SCHEMA)
                row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is None:
                    connection.execute(
                        "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                    )
                    connection.commit()
                elif int(row[0]) != SCHEMA_VERSION:
                    raise StoreUnreadable(
                        self.path, f"schema version {row[0]}, this pool knows {SCHEMA_VERSION}"
                    )
                _add_missing_columns(connection)
            finally:
                connection.close()
        except sqlite3.DatabaseError as exc:
            raise StoreUnreadable(self.path, exc) from None
        self._opened = True
        self._writer = threading.Thread(target=self._write_loop, name="updraft-store-writer", daemon=True)
        self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={self.synchronous}")
        connection.execute("PRAGMA foreign_keys=OFF")
        connection.execute("PRAGMA busy_timeout=10000")
        return connection

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(_STOP)
            self._writer.join(timeout=30)
            self._writer = None
        for connection in self._reader_connections:
            try:
                connection.close()
            except sqlite3.ProgrammingError:
                pass  # made in another thread that is gone
        self._reader_connections = []
        self._readers = threading.local()
        self._opened = False

    # -- writing ---------------------------------------------------------------------------
    def write(self, batch: Batch) -> concurrent.futures.Future[None]:
        """Queue a batch; the future resolves once it is committed (or fails with the reason)."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        if not batch:
            future.set_result(None)
            return future
        self._queue.put((batch, future))
        return future

    def write_now(self, batch: Batch) -> None:
        """Write and wait (start-up and tools; never from the event loop)."""
        self.write(batch).result()

    def _write_loop(self) -> None:
        connection = self._connect()
        while True:
            item = self._queue.get()
            if item is _STOP:
                connection.close()
                return
            pending = [item]
            while len(pending) < 512:  # group commit: whatever queued up meanwhile goes in too
                try:
                    extra = self._queue.get_nowait()
                except queue.Empty:
                    break
                if extra is _STOP:
                    self._queue.put(_STOP)
                    break
                pending.append(extra)
            self._apply(connection, pending)

    def _apply(
        self, connection: sqlite3.Connection, pending: list[tuple[Batch, concurrent.futures.Future[None]]]
    ) -> None:
        try:
            failed = self._transaction(connection, pending)
        except BaseException as exc:
            if not is_disk_full(exc):
                self._fail(pending, exc)
                return
            failed = self._when_full(connection, pending, exc)
            if failed is None:
                return
        for index, (_batch, future) in enumerate(pending):
            if future.done():
                continue
            if index in failed:
                future.set_exception(failed[index])
                if self.on_fatal is not None and not pending[index][0].refusable:
                    self.on_fatal(failed[index])  # the memory already holds this change
            else:
                future.set_result(None)

    def _transaction(
        self, connection: sqlite3.Connection, pending: list[tuple[Batch, concurrent.futures.Future[None]]]
    ) -> dict[int, BaseException]:
        """Apply the batches in one transaction; each batch that fails alone is rolled back alone."""
        failed: dict[int, BaseException] = {}
        connection.execute("BEGIN IMMEDIATE")
        try:
            for index, (batch, _future) in enumerate(pending):
                connection.execute("SAVEPOINT batch")
                try:
                    for sql, params, many in batch.statements:
                        if many:
                            connection.executemany(sql, params)
                        else:
                            connection.execute(sql, params)
                except Exception as exc:  # this batch only: roll it back, keep the others
                    connection.execute("ROLLBACK TO batch")
                    if is_disk_full(exc):
                        raise
                    failed[index] = exc
                    log.error("store: batch refused: %s", exc)
                connection.execute("RELEASE batch")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        self.commits += 1
        return failed

    def _when_full(
        self,
        connection: sqlite3.Connection,
        pending: list[tuple[Batch, concurrent.futures.Future[None]]],
        exc: BaseException,
    ) -> dict[int, BaseException] | None:
        """The disk is full: refuse the refusable batches, write the others with the reserve."""
        log.error("store: the disk is full: %s", exc)
        if self.on_full is not None:
            self.on_full()
        for batch, future in pending:
            if batch.refusable:
                future.set_exception(DiskFull(str(exc)))
        keep = [(batch, future) for batch, future in pending if not batch.refusable]
        if not keep:
            return {}
        try:
            failed = self._transaction(connection, keep)
        except BaseException as again:
            self._fail(keep, again)
            return None
        for index, (_batch, future) in enumerate(keep):
            if index in failed:
                future.set_exception(failed[index])
                if self.on_fatal is not None:
                    self.on_fatal(failed[index])
            else:
                future.set_result(None)
        return {}

    def _fail(self, pending: list[tuple[Batch, concurrent.futures.Future[None]]], exc: BaseException) -> None:
        log.critical("store: commit failed, memory and disk disagree: %s", exc)
        for _batch, future in pending:
            if not future.done():
                future.set_exception(exc)
        if self.on_fatal is not None and any(not batch.refusable for batch, _f in pending):
            self.on_fatal(exc)

    # -- reading ---------------------------------------------------------------------------
    def reader(self) -> sqlite3.Connection:
        """This thread's read connection (for temporary tables a query of its own joins)."""
        return self._reader()

    def _reader(self) -> sqlite3.Connection:
        assert self._opened, "store not open"
        connection = getattr(self._readers, "connection", None)
        if connection is None:
            connection = self._connect()
            self._readers.connection = connection
            self._reader_connections.append(connection)
        return connection

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._reader().execute(sql, params).fetchall()

    def read_iter(
        self, sql: str, params: Sequence[Any] = (), chunk: int = 10000
    ) -> Iterable[tuple[Any, ...]]:
        """Stream a large result (start-up load) without holding it twice."""
        cursor = self._reader().execute(sql, params)
        while True:
            rows = cursor.fetchmany(chunk)
            if not rows:
                return
            yield from rows

    def meta(self, key: str, default: str | None = None) -> str | None:
        rows = self.read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    @staticmethod
    def set_meta(batch: Batch, key: str, value: str) -> None:
        batch.add(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
