"""A bounded on-disk FIFO of outbound messages (sqlite3) that survives broker outages and process restarts.

Why sqlite3 and not a JSONL file: an ack is a single-row DELETE inside a transaction, so a crash between
"published" and "acked" can only ever repeat the last message (at-least-once), never lose or reorder one,
and there is no file rewriting or compaction to get wrong. WAL mode with synchronous=NORMAL survives a
killed process (the case we test); an append costs well under a millisecond, so it can run on the event
loop for the rare event messages it holds.

Why the count follows COMMIT only: a commit can fail (disk full, disk gone), and a count changed before it
drifts from the file (it went negative and made the sink see a false outage). Why EventQueue: an event
the disk refuses is still an alert someone must get, so it waits in memory (counted, logged, reported)
instead of being lost; a damaged file is set aside at start (sqlite_files.py) with what could be read.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ..config.mqtt import OutboxFullPolicy as OutboxFullPolicy  # re-exported: its old home
from ..sqlite_files import is_corrupt, set_aside

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
        self.last_id = 0  # id of the latest message appended by this process
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
            self._open()
        except sqlite3.DatabaseError as exc:
            if not is_corrupt(exc):
                self._release_lock()
                raise OutboxError(f"outbox {self.path} cannot be opened: {exc}") from exc
            self._recover(exc)  # a damaged file must not keep the monitor from starting
        if self._count:
            log.info("outbox %s holds %d undelivered message(s) from an earlier run", self.path, self._count)

    def _open(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            self._count = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except BaseException:
            db.close()
            raise
        self._db = db

    def _recover(self, exc: sqlite3.DatabaseError) -> None:
        """Read what the damaged file still gives, set it aside, start a new file holding those messages."""
        rows = _readable_rows(self.path)
        set_aside(self.path, exc, what="MQTT outbox",
                  kept=f"; {len(rows)} undelivered message(s) that could be read are kept in the new one")
        try:
            self._open()
            with self._transaction():  # the old ids keep their order, and AUTOINCREMENT continues past them
                self._db.executemany("INSERT INTO outbox (id, topic, payload, qos, retain, created) "
                                     "VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._count = len(rows)
        except sqlite3.Error as again:
            self._release_lock()
            raise OutboxError(f"outbox {self.path}: cannot start a new file after setting the damaged one "
                              f"aside: {again}") from again

    def __len__(self) -> int:
        return self._count

    def append(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> bool:
        """Store one message; False when the full-outbox policy refused it (it is then counted as dropped).

        Raises sqlite3.Error when the disk refuses the write; the count then still matches the file."""
        if self._count >= self.max_messages and self.policy is OutboxFullPolicy.DROP_NEWEST:
            self.note_drop(1, f"refused a new message on {topic}")
            return False
        excess = max(0, self._count - self.max_messages + 1)
        with self._transaction():
            if excess:
                excess = self._db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,)
                ).rowcount
            new_id = self._db.execute(
                "INSERT INTO outbox (topic, payload, qos, retain, created) VALUES (?, ?, ?, ?, ?)",
                (topic, sqlite3.Binary(payload), int(qos), int(retain), time.time()),
            ).lastrowid
        self.last_id = int(new_id or 0)
        self._count += 1 - excess  # committed: only now does the count change
        if excess:
            self.note_drop(excess, "dropped the oldest undelivered message(s)")
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
        self._count -= removed  # committed

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

    def note_drop(self, n: int, what: str) -> None:
        """Count and log messages the full-outbox policy dropped (also those EventQueue holds in memory)."""
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
        if self.db.in_transaction:  # a failed COMMIT whose ROLLBACK failed too: start clean
            self._rollback()
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self._rollback()
            return
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()  # a COMMIT that failed (disk full) may leave the transaction open
            raise

    def _rollback(self) -> None:
        try:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.debug("outbox rollback failed: %s", exc)


def _readable_rows(path: Path) -> list[tuple[int, str, bytes, int, int, float]]:
    """The outbox rows a damaged file still gives, oldest first, up to the first unreadable page."""
    rows: list[tuple[int, str, bytes, int, int, float]] = []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return rows
    try:
        cur = db.execute("SELECT id, topic, payload, qos, retain, created FROM outbox ORDER BY id")
        while (row := cur.fetchone()) is not None:
            rows.append((int(row[0]), str(row[1]), bytes(row[2]), int(row[3]), int(row[4]), float(row[5])))
    except (sqlite3.Error, TypeError, ValueError):
        pass  # the rest is unreadable: keep what came before it
    finally:
        db.close()
    return rows


@dataclass(frozen=True, slots=True)
class OutboxHealth:
    """Whether the outbox's disk takes writes, and what waits in memory because it did not."""

    state: str  # "ok" or "failing"
    failing_since: float | None  # unix time of the first failure of the current episode
    last_error: str | None
    unsaved: int  # events held in memory only (lost if the process dies before they are delivered)
    unacked: int  # delivered, but the disk refused to delete them: sent again after a restart
    failures: int  # outbox operations the disk refused, all episodes

    def snapshot(self) -> dict[str, object]:
        return {"state": self.state, "failing_since": self.failing_since, "last_error": self.last_error,
                "unsaved": self.unsaved, "unacked": self.unacked, "failures": self.failures}


class EventQueue:
    """The outbox plus an in-memory tail: events go to disk when it takes them, to memory when it does not.

    Order is kept: memory only ever holds events newer than everything on disk, and each append first tries
    to move the memory tail to disk (oldest first). An ack the disk refuses is remembered, so a delivered
    event is not sent again in this run. No method raises because of the disk; failures are counted, logged
    once per episode as errors, and reported by health().
    """

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._memory: deque[OutboxEntry] = deque()
        self._moved: dict[int, int] = {}  # memory id -> disk id, for an entry moved while it was in flight
        self._unacked: set[int] = set()  # disk ids delivered whose DELETE failed
        self._next_memory_id = -1  # memory entries have negative ids: never confused with disk ones
        self._failures = 0
        self._failing_since: float | None = None
        self._last_error: str | None = None

    def __len__(self) -> int:
        """Events not delivered yet, on disk and in memory."""
        return max(0, len(self.outbox) - len(self._unacked)) + len(self._memory)

    def append(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> None:
        self._save_memory()
        if not self._memory:
            try:
                self.outbox.append(topic, payload, qos=qos, retain=retain)
                self._ok()
                return
            except (sqlite3.Error, OSError) as exc:
                self._failed(exc, f"could not store an event on {topic}")
        if len(self._memory) >= self.outbox.max_messages:
            if self.outbox.policy is OutboxFullPolicy.DROP_NEWEST:
                self.outbox.note_drop(1, f"refused a new message on {topic} (held in memory: the disk fails)")
                return
            self._memory.popleft()
            self.outbox.note_drop(1, "dropped the oldest message held in memory (the disk fails)")
        self._memory.append(OutboxEntry(self._next_memory_id, topic, payload, qos, retain, time.time()))
        self._next_memory_id -= 1

    def peek(self, limit: int = 100) -> list[OutboxEntry]:
        """The oldest undelivered events: those on disk first, then those in memory."""
        self._retry_acks()
        try:
            on_disk = [e for e in self.outbox.peek(limit + len(self._unacked)) if e.id not in self._unacked]
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc, "could not read the outbox")
            on_disk = []
        if on_disk:
            return on_disk[:limit]
        return list(self._memory)[:limit]

    def ack(self, entry: OutboxEntry) -> None:
        """Forget a delivered event."""
        entry_id = entry.id
        if entry_id < 0:
            if self._memory and self._memory[0].id == entry_id:
                self._memory.popleft()
                return
            if entry_id not in self._moved:
                return  # dropped meanwhile
            entry_id = self._moved.pop(entry_id)
        try:
            self.outbox.ack(entry_id)
            self._ok()
        except (sqlite3.Error, OSError) as exc:
            self._unacked.add(entry_id)
            self._failed(exc, "could not remove a delivered event")

    def health(self) -> OutboxHealth:
        return OutboxHealth(state="ok" if self._failing_since is None else "failing",
                            failing_since=self._failing_since, last_error=self._last_error,
                            unsaved=len(self._memory), unacked=len(self._unacked), failures=self._failures)

    def close(self) -> None:
        """Last try to save the memory tail, then close; what could not be saved is logged as lost."""
        self._save_memory()
        self._retry_acks()
        if self._memory:
            log.error("MQTT OUTBOX: %d undelivered event(s) were held in memory only (the disk at %s refused "
                      "them: %s) and are LOST at exit", len(self._memory), self.outbox.path, self._last_error)
        if self._unacked:
            log.warning("MQTT outbox: %d delivered event(s) could not be removed from %s; they will be sent "
                        "again at the next start (duplicates)", len(self._unacked), self.outbox.path)
        self.outbox.close()

    def _save_memory(self) -> None:
        if not self._memory:
            return
        while self._memory:
            e = self._memory[0]
            try:
                self.outbox.append(e.topic, e.payload, qos=e.qos, retain=e.retain)
            except (sqlite3.Error, OSError):
                return  # still failing: counted when the new event fails too
            self._memory.popleft()
            # The pump may hold this entry (peeked, publishing): its ack must reach the disk copy.
            self._moved[e.id] = self.outbox.last_id
            if len(self._moved) > 4 * self.outbox.max_messages:
                self._moved.pop(next(iter(self._moved)))
        self._ok()

    def _retry_acks(self) -> None:
        for entry_id in list(self._unacked):
            try:
                self.outbox.ack(entry_id)
            except (sqlite3.Error, OSError):
                return
            self._unacked.discard(entry_id)
            self._ok()

    def _failed(self, exc: BaseException, what: str) -> None:
        self._failures += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        if self._failing_since is None:
            self._failing_since = time.time()
            log.error("MQTT OUTBOX %s FAILS (%s): %s; events are kept in memory and still delivered, but are "
                      "lost if the monitor stops before the broker has them", self.outbox.path, self._last_error,
                      what)

    def _ok(self) -> None:
        if self._failing_since is not None and not self._memory and not self._unacked:
            log.warning("MQTT outbox %s works again after %.0f s (%d failed operation(s) so far)",
                        self.outbox.path, time.time() - self._failing_since, self._failures)
            self._failing_since = None
