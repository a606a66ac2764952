"""A bounded on-disk FIFO of outbound messages (sqlite3) that survives broker outages and process restarts.

Why sqlite3 and not a JSONL file: an ack is a single-row DELETE inside a transaction, so a crash between
"published" and "acked" can only ever repeat the last message (at-least-once), never lose or reorder one,
and there is no file rewriting or compaction to get wrong. WAL mode with synchronous=NORMAL survives a
killed process (the case we test); an append costs well under a millisecond, so it can run on the event
loop for the rare event messages it holds.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ..config.mqtt import OutboxFullPolicy as OutboxFullPolicy  # re-exported: its old home

log = logging.getLogger(__name__)


class OutboxError(RuntimeError):
    """The outbox file cannot be opened (bad path, not a database, or held by another process)."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One stored message; id increases strictly with append order (also across restarts)."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created: float


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids never reused, so order survives deletes
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL
)
"""


class Outbox:
    """Bounded persistent FIFO: append() on produce, peek() + ack() after the broker confirmed delivery.

    One process at a time: the file is locked (flock on `<path>.lock`) while open.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_messages: int = 10_000,
        policy: OutboxFullPolicy = OutboxFullPolicy.DROP_OLDEST,
    ) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages}")
        self.path = Path(path)
        self.max_messages = max_messages
        self.policy = OutboxFullPolicy(policy)
        self.dropped = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise OutboxError(f"cannot create the outbox at {self.path}: {exc}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise OutboxError(
                f"outbox {self.path} is in use by another process (two monitors must not share one)"
            ) from None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            self._release_lock()
            raise OutboxError(f"outbox {self.path} is not a usable sqlite database: {exc}") from exc
        if self._count:
            log.info("outbox %s holds %d undelivered message(s) from an earlier run", self.path, self._count)

    def __len__(self) -> int:
        return self._count

    def append(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> bool:
        """Store one message; False when the full-outbox policy refused it (it is then counted as dropped)."""
        with self._transaction():
            if self._count >= self.max_messages:
                if self.policy is OutboxFullPolicy.DROP_NEWEST:
                    self._note_drop(1, f"refused a new message on {topic}")
                    return False
                excess = self._count - self.max_messages + 1
                self._db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,)
                )
                self._count -= excess
                self._note_drop(excess, "dropped the oldest undelivered message(s)")
            self._db.execute(
                "INSERT INTO outbox (topic, payload, qos, retain, created) VALUES (?, ?, ?, ?, ?)",
                (topic, sqlite3.Binary(payload), int(qos), int(retain), time.time()),
            )
            self._count += 1
        return True

    def peek(self, limit: int = 100) -> list[OutboxEntry]:
        """The oldest undelivered messages, in append order (not removed)."""
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain, created FROM outbox ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [OutboxEntry(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5]) for r in rows]

    def ack(self, entry_id: int) -> None:
        """Remove a delivered message (no-op if it is already gone, e.g. dropped meanwhile)."""
        with self._transaction():
            removed = self._db.execute("DELETE FROM outbox WHERE id = ?", (entry_id,)).rowcount
            self._count -= removed

    def close(self) -> None:
        if getattr(self, "_db", None) is not None:
            self._db.close()
            self._db = None  # type: ignore[assignment]
            self._release_lock()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> _Tx:
        return _Tx(self._db)

    def _note_drop(self, n: int, what: str) -> None:
        self.dropped += n
        log.error(
            "MQTT OUTBOX FULL (%d messages, policy %s): %s; %d message(s) lost so far. The broker has been "
            "unreachable for too long, or raise mqtt.outbox.max_messages.",
            self.max_messages, self.policy.value, what, self.dropped,
        )

    def _release_lock(self) -> None:
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
        except OSError:
            pass


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT/ROLLBACK (the connection runs in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
