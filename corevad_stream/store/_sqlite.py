"""The sqlite backend of the event store: alert history, status changes and per-segment scores in one file (WAL).

Why sqlite in WAL mode: readers (an API, a review page) never block the writer, a killed process loses at
most the transaction in flight (every write commits), and retention is a DELETE. One writer: the store sink
(sinks/store.py) on its own thread, so a slow disk never stalls scoring. Readers open their own connection.

Tables: alerts (one row per alert, its whole life: new, updates, end with reason, acknowledgement, the
snapshot file), alert_events (every lifecycle event as published), status (camera and model state changes),
scores (one row per scored or unanswered segment; retention in days and a size cap, oldest first), and
open_alerts: the crash-safe record of alerts still open (alert_state.OpenAlerts writes it synchronously, so
a restart can end them; the history tables above are eventually consistent through the sink's queue).
Snapshots are JPEG files in `<store>-snapshots/`, one per alert (the latest peak's), deleted with the
retention period. `schema_version` holds the schema's version; older files are migrated forward when
opened (MIGRATIONS, each step idempotent, so a file from before the version table takes them all).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..sqlite_files import is_corrupt, set_aside
from ._base import (
    COUNTED_TABLES,
    MAX_PAGE,
    Retention,
    StoreError,
    alert_page_clause,
    alert_row,
    alert_values,
    check_snapshot,
    snapshot_name,
)

_BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY, camera TEXT NOT NULL, start_time REAL NOT NULL, end_time REAL, active INTEGER NOT NULL,
    start_segment INTEGER, end_segment INTEGER, peak_segment INTEGER, peak_score REAL, score REAL,
    explanation TEXT NOT NULL, end_reason TEXT, acknowledged_at REAL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_camera_time ON alerts (camera, start_time);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts (start_time);
CREATE INDEX IF NOT EXISTS alerts_page ON alerts (start_time DESC, id);
CREATE INDEX IF NOT EXISTS alerts_camera_page ON alerts (camera, start_time DESC, id);
CREATE TABLE IF NOT EXISTS alert_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL, type TEXT NOT NULL, time REAL NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_events_alert ON alert_events (alert_id);
CREATE TABLE IF NOT EXISTS status (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, camera TEXT, kind TEXT NOT NULL, time REAL NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scores (
    camera TEXT NOT NULL, segment INTEGER NOT NULL, start REAL NOT NULL, end REAL NOT NULL, score REAL,
    label INTEGER, PRIMARY KEY (camera, start)
);
CREATE INDEX IF NOT EXISTS scores_end ON scores (end);
CREATE TABLE IF NOT EXISTS open_alerts (camera TEXT PRIMARY KEY, alert TEXT NOT NULL);
"""


def _base_tables(conn: sqlite3.Connection) -> None:
    for statement in _BASE_SCHEMA.split(";"):  # one by one: executescript would commit the migration's transaction
        if statement.strip():
            conn.execute(statement)


def _add_column(table: str, column: str, typ: str) -> Any:
    def step(conn: sqlite3.Connection) -> None:
        if column not in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {typ}")
    return step


# Version n is reached by running step n-1 (each idempotent: a file from before `schema_version` existed is at
# version 0 and may already have some of them). Append only; never edit a released step.
MIGRATIONS = (
    _base_tables,  # 1: the first release's tables
    _add_column("alerts", "snapshot", "TEXT"),  # 2: the alert's snapshot file
)
SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the store file: readonly, or writable with the schema in place (a damaged file is set
    aside first). Used by SqliteStore and by the open-alert record (alert_state.py)."""
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = _open_writable(path)
            except sqlite3.DatabaseError as exc:
                if not is_corrupt(exc):
                    raise
                set_aside(path, exc, what="event store")  # a damaged file must not keep the monitor from starting
                conn = _open_writable(path)
    except sqlite3.Error as exc:
        raise StoreError(f"event store {path}: {exc}") from None
    conn.row_factory = sqlite3.Row
    return conn


def _open_writable(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        _migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the file to SCHEMA_VERSION, in one transaction (BEGIN IMMEDIATE: two openers at once take turns)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        version = 0 if row is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise StoreError(f"event store {path}: schema version {version} is newer than this corevad's "
                             f"({SCHEMA_VERSION}); use the newer corevad or another store.path")
        for step in MIGRATIONS[version:]:
            step(conn)
        if row is None:
            conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        elif version != SCHEMA_VERSION:
            conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class SqliteStore:
    """The sqlite event store: writer side (one thread) plus read helpers (any thread: each call uses that
    thread's reader connection)."""

    def __init__(self, path: Path, *, retention: Retention = Retention()) -> None:
        self.path = path
        self.retention = retention
        self._db = connect(path)
        # One read connection per reading thread (the API reads on several): readers never wait for each other.
        self._readers = threading.local()
        self._all_readers = [connect(path, readonly=True)]
        self._readers.conn = self._all_readers[0]
        self._lock = threading.Lock()  # guards _all_readers
        self._write_lock = threading.Lock()  # and the writer connection by the writing threads
        self.snapshot_dir = snapshot_dir(path)

    def close(self) -> None:
        self._db.close()
        with self._lock:
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()

    @property
    def where(self) -> str:
        return str(self.path)

    # -- writes (the store sink's thread) ----------------------------------------------------------------
    def write(self, kind: str, camera: str | None, payload: Any, at: float, *, alert_id: str | None = None
              ) -> None:
        """One published message, committed (alert_id: the alert a snapshot shows)."""
        db = self._db
        with self._write_lock, db:
            if kind == "events" and isinstance(payload, dict):
                self._alert(payload, at)
            elif kind == "snapshot" and isinstance(payload, bytes) and alert_id is not None:
                self._snapshot(alert_id, payload)
            elif kind == "score" and isinstance(payload, dict) and camera is not None:
                db.execute("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?)",
                           (camera, int(payload["index"]), float(payload["start"]), float(payload["end"]),
                            payload.get("score"), payload.get("label")))
            elif kind in ("status", "model") and isinstance(payload, dict):
                db.execute("INSERT INTO status (camera, kind, time, state, reason) VALUES (?, ?, ?, ?, ?)",
                           (camera, "camera" if kind == "status" else "model", at, str(payload.get("state", "")),
                            str(payload.get("reason", ""))))

    def _alert(self, event: dict[str, Any], at: float) -> None:
        a = event["after"]
        self._db.execute(
            "INSERT INTO alerts (id, camera, start_time, end_time, active, start_segment, end_segment, "
            "peak_segment, peak_score, score, explanation, end_reason, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET end_time=excluded.end_time, "
            "active=excluded.active, end_segment=excluded.end_segment, peak_segment=excluded.peak_segment, "
            "peak_score=excluded.peak_score, score=excluded.score, explanation=excluded.explanation, "
            "end_reason=excluded.end_reason, updated_at=excluded.updated_at",
            (*alert_values(a), at))
        self._db.execute("INSERT INTO alert_events (alert_id, type, time, payload) VALUES (?, ?, ?, ?)",
                         (a["id"], event["type"], at, json.dumps(event)))

    def _snapshot(self, alert_id: str, jpeg: bytes) -> None:
        """The alert's snapshot file (replaced when the peak moves): written whole, then renamed. Only an
        alert still open takes one (a late snapshot never replaces an ended alert's picture)."""
        check_snapshot(alert_id, jpeg)
        if self._db.execute("SELECT 1 FROM alerts WHERE id = ? AND active = 1", (alert_id,)).fetchone() is None:
            return
        name = snapshot_name(alert_id)
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.snapshot_dir / (name + ".tmp")
        tmp.write_bytes(jpeg)
        os.replace(tmp, self.snapshot_dir / name)
        self._db.execute("UPDATE alerts SET snapshot = ? WHERE id = ?", (name, alert_id))

    def checkpoint(self) -> None:
        """Fold the WAL into the file and truncate it: on a disk that was full, this gives its space back."""
        with self._write_lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def snapshot_path(self, alert_id: str) -> Path | None:
        """The alert's snapshot file, when it has one that still exists."""
        alert = self.alert(alert_id)
        if alert is None or not alert.get("snapshot"):
            return None
        path = self.snapshot_dir / alert["snapshot"]
        return path if path.is_file() else None

    def snapshot(self, alert_id: str) -> bytes | None:
        """The alert's snapshot JPEG (written size-capped by the monitor), None when it has none."""
        path = self.snapshot_path(alert_id)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except FileNotFoundError:  # pruned meanwhile
            return None

    def acknowledge(self, alert_id: str, *, at: float | None = None) -> bool:
        """Mark an alert acknowledged (committed before returning); False when no such alert."""
        with self._write_lock, self._db:
            cur = self._db.execute("UPDATE alerts SET acknowledged_at = ? WHERE id = ?",
                                   (time.time() if at is None else at, alert_id))
        return cur.rowcount == 1

    def prune(self, *, now: float | None = None) -> int:
        """Apply the retention: scores, status changes and snapshots older than `days`; then, while the file
        and its snapshots together are over the cap, the oldest of either (the alert rows stay, and an open
        alert keeps its picture). Returns the rows and snapshots deleted."""
        cutoff = (time.time() if now is None else now) - self.retention.days * 86400
        deleted = 0
        with self._db:
            deleted += self._db.execute("DELETE FROM scores WHERE end < ?", (cutoff,)).rowcount
            deleted += self._db.execute("DELETE FROM status WHERE time < ?", (cutoff,)).rowcount
            old = self._db.execute("SELECT id, snapshot FROM alerts WHERE snapshot IS NOT NULL AND start_time < ?",
                                   (cutoff,)).fetchall()
            for alert_id, name in old:  # the alert stays; its picture goes with the retention period
                self._drop_snapshot(alert_id, name)
            deleted += len(old)
        pictures = self._snapshot_bytes()  # kept up to date below: listing the folder each turn is quadratic
        while self._db_bytes() + pictures > self.retention.max_bytes:
            # Oldest first across both kinds: a chunk of the oldest scores, or the oldest ended alert's
            # snapshot when it is older (neither kind is emptied to spare the other).
            oldest_score = self._db.execute("SELECT MIN(end) FROM scores").fetchone()[0]
            picture = self._db.execute("SELECT id, snapshot, start_time FROM alerts WHERE snapshot IS NOT NULL "
                                       "AND active = 0 ORDER BY start_time LIMIT 1").fetchone()
            if oldest_score is None and picture is None:
                break
            if picture is not None and (oldest_score is None or picture[2] <= oldest_score):
                with self._db:
                    pictures -= self._drop_snapshot(picture[0], picture[1])
                deleted += 1
                continue
            with self._db:
                deleted += self._db.execute("DELETE FROM scores WHERE rowid IN (SELECT rowid FROM scores ORDER BY "
                                            "end LIMIT 10000)").rowcount
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
        return deleted

    def _drop_snapshot(self, alert_id: str, name: str) -> int:
        """Delete an alert's picture (the alert row stays) inside the caller's transaction; its bytes."""
        f = self.snapshot_dir / name
        size = 0
        with contextlib.suppress(FileNotFoundError):
            size = f.stat().st_size
            f.unlink()
        self._db.execute("UPDATE alerts SET snapshot = NULL WHERE id = ?", (alert_id,))
        return size

    def size_bytes(self) -> int:
        """The database file, its WAL and the snapshots: what the size cap (Retention.max_bytes) holds."""
        return self._db_bytes() + self._snapshot_bytes()

    def _db_bytes(self) -> int:
        return _file_bytes([self.path, self.path.with_name(self.path.name + "-wal")])

    def _snapshot_bytes(self) -> int:
        if not self.snapshot_dir.is_dir():
            return 0
        return _file_bytes([p for p in self.snapshot_dir.iterdir() if p.suffix == ".jpg"])

    # -- reads -------------------------------------------------------------------------------------------
    def _read_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            with self._lock:
                self._all_readers.append(conn)
            self._readers.conn = conn
        return conn

    def alerts(self, *, camera: str | None = None, since: float | None = None, until: float | None = None,
               active: bool | None = None, limit: int = 50, offset: int = 0, before: str | None = None
               ) -> list[dict[str, Any]]:
        """Alerts, newest first (start time, then id), filtered and paged.

        before: an alert id; the page starts right after it in this order. A keyset page is an index range
        (alerts_page, alerts_camera_page), so it costs the same at any depth; a large offset scans the rows it
        skips. ValueError when `before` names no alert."""
        where: list[str] = ["1=1"]
        args: list[Any] = []
        alert_page_clause(where, args, camera=camera, since=since, until=until, active=active, mark="?")
        reader = self._read_connection()
        if before is not None:
            row = reader.execute("SELECT start_time, id FROM alerts WHERE id = ?", (before,)).fetchone()
            if row is None:
                raise ValueError(f"before: no alert {before[:80]!r}")
            # (start_time, id) after the cursor in "start_time DESC, id ASC"; the first term is the index range.
            where.append("start_time <= ? AND (start_time < ? OR id > ?)")
            args.extend((row[0], row[0], row[1]))
        # The WHERE terms are this method's own fixed fragments; every value goes in as a ? parameter.
        sql = (f"SELECT * FROM alerts WHERE {' AND '.join(where)} ORDER BY start_time DESC, id "  # noqa: S608
               "LIMIT ? OFFSET ?")
        rows = reader.execute(sql, (*args, max(0, min(limit, MAX_PAGE)), max(0, offset))).fetchall()
        return [alert_row(r) for r in rows]

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        row = self._read_connection().execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return None if row is None else alert_row(row)

    def active_alerts(self) -> list[dict[str, Any]]:
        """Alerts still active: after a crash, the ones the previous run left open."""
        return self.alerts(active=True, limit=1000)

    def scores(self, camera: str, start: float, end: float) -> list[dict[str, Any]]:
        rows = self._read_connection().execute(
            "SELECT segment, start, end, score, label FROM scores WHERE camera = ? AND end >= ? AND start <= ? "
            "ORDER BY start", (camera, start, end)).fetchall()
        return [dict(r) for r in rows]

    def count(self, table: str) -> int:
        if table not in COUNTED_TABLES:
            raise ValueError(f"no table {table!r}")
        sql = f"SELECT COUNT(*) FROM {table}"  # noqa: S608 - table is one of the four names checked above
        return int(self._read_connection().execute(sql).fetchone()[0])


def _file_bytes(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        with contextlib.suppress(FileNotFoundError):  # a snapshot replaced or pruned meanwhile
            total += p.stat().st_size
    return total


def snapshot_dir(store_path: Path) -> Path:
    return store_path.with_name(store_path.stem + "-snapshots")
