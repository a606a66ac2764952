"""The PostgreSQL backend of the event store: the same tables, results and retention as the sqlite one, in a
database several monitors can share (psycopg 3; readers from a psycopg_pool pool).

Why one writer connection under a lock plus a reader pool: the store sink writes from its own thread (as on
sqlite), acknowledgements come from the API's threads, and the API reads on several threads at once. A
connection the server dropped (restart, outage) is thrown away and opened again on the next call; the
error goes to the caller, so the sink retries the write (sinks/store.py) and the API answers 503.

Why snapshots are `bytea` rows and not large objects: a snapshot is one JPEG of tens to hundreds of kB,
written whole and read whole; a bytea row is deleted with plain SQL in the same transaction as its alert's
update and counted by pg_total_relation_size, while large objects need lo_unlink (or vacuumlo) or they leak,
and their own privileges. The column is STORAGE EXTERNAL: JPEG does not compress, so pglz is not tried.

Size cap: the store's tables as the server counts them (pg_total_relation_size: heap, TOAST, indexes). A
DELETE frees space for reuse but does not shrink the files, so pruning to the cap deletes the oldest rows by
an estimate (bytes per score row, each snapshot's size), then runs VACUUM FULL on the tables it cut (as the
sqlite store VACUUMs its file) and measures again. Ids use the "C" collation so pages sort as on sqlite.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

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

# Every table of the store (the size cap counts them all).
TABLES = ("alerts", "alert_events", "status", "scores", "open_alerts", "snapshots", "schema_version")
# Any fixed 64-bit key: migrations of monitors that start at once take turns on it.
_MIGRATION_LOCK = 0x636F726576616431  # "corevad1"

_V1 = """
CREATE TABLE IF NOT EXISTS alerts (
    id text COLLATE "C" PRIMARY KEY, camera text NOT NULL, start_time double precision NOT NULL,
    end_time double precision, active boolean NOT NULL, start_segment integer, end_segment integer,
    peak_segment integer, peak_score double precision, score double precision, explanation text NOT NULL,
    end_reason text, acknowledged_at double precision, updated_at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_camera_time ON alerts (camera, start_time);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts (start_time);
CREATE INDEX IF NOT EXISTS alerts_page ON alerts (start_time DESC, id);
CREATE INDEX IF NOT EXISTS alerts_camera_page ON alerts (camera, start_time DESC, id);
CREATE TABLE IF NOT EXISTS alert_events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, alert_id text NOT NULL, type text NOT NULL,
    time double precision NOT NULL, payload text NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_events_alert ON alert_events (alert_id);
CREATE TABLE IF NOT EXISTS status (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, camera text, kind text NOT NULL,
    time double precision NOT NULL, state text NOT NULL, reason text NOT NULL
);
CREATE INDEX IF NOT EXISTS status_time ON status (time);
CREATE TABLE IF NOT EXISTS scores (
    camera text NOT NULL, segment integer NOT NULL, start double precision NOT NULL,
    "end" double precision NOT NULL, score double precision, label integer, PRIMARY KEY (camera, start)
);
CREATE INDEX IF NOT EXISTS scores_end ON scores ("end");
CREATE TABLE IF NOT EXISTS open_alerts (camera text PRIMARY KEY, alert text NOT NULL);
"""
_V2 = """
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS snapshot text;
CREATE TABLE IF NOT EXISTS snapshots (
    alert_id text COLLATE "C" PRIMARY KEY REFERENCES alerts (id) ON DELETE CASCADE, jpeg bytea NOT NULL,
    bytes integer NOT NULL
);
ALTER TABLE snapshots ALTER COLUMN jpeg SET STORAGE EXTERNAL;
"""
# The same versions as the sqlite store's (1: the history tables, 2: snapshots). Append only.
MIGRATIONS: tuple[str, ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)


def connect_kwargs(password: str | None, *, connect_timeout_s: float) -> dict[str, Any]:
    """libpq settings for every connection of the store and the open-alert record: a bounded connect, and
    TCP keepalives so a server host that vanished is noticed in about 20 s instead of the kernel's 2 hours."""
    return {"password": password, "connect_timeout": max(1, math.ceil(connect_timeout_s)),
            "application_name": "corevad", "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
            "keepalives_count": 2}


def migrate(conn: Any, where: str, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Bring the database to len(migrations) in one transaction; the version it was at. Monitors starting at
    once take turns on an advisory lock, so each step runs once."""
    target = len(migrations)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        version = 0 if row is None else int(row[0] if not isinstance(row, dict) else row["version"])
        if version > SCHEMA_VERSION:
            raise StoreError(f"event store {where}: schema version {version} is newer than this corevad's "
                             f"({SCHEMA_VERSION}); use the newer corevad or another database")
        for step in migrations[version:]:
            conn.execute(step)
        if row is None:
            conn.execute("INSERT INTO schema_version VALUES (%s)", (target,))
        elif version < target:
            conn.execute("UPDATE schema_version SET version = %s", (target,))
    return version


class PostgresStore:
    """The PostgreSQL event store (url without the password, the password apart). Opening it connects and
    migrates the schema: StoreError when the database cannot be reached then."""

    def __init__(self, url: str, *, password: str | None = None, retention: Retention = Retention(),
                 readers: int = 4, connect_timeout_s: float = 5.0) -> None:
        try:
            import psycopg
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise StoreError(f"store.url needs the optional package {exc.name!r}: pip install "
                             "'corevad[postgres]'") from None
        if readers < 1:
            raise ValueError(f"readers must be >= 1, got {readers}")
        self._psycopg = psycopg
        self.url = url
        self.retention = retention
        self._kwargs = connect_kwargs(password, connect_timeout_s=connect_timeout_s)
        self._timeout_s = connect_timeout_s
        self._write_lock = threading.Lock()  # the writer connection: the sink's thread and acknowledgements
        self._db: Any = None
        try:
            with self._write_lock:
                migrate(self._writer(), url)
        except psycopg.Error as exc:
            self._drop_writer()
            raise StoreError(f"event store {url}: {_one_line(exc)}") from None
        self._pool = ConnectionPool(url, kwargs={**self._kwargs, "autocommit": True, "row_factory": dict_row},
                                    min_size=1, max_size=readers, open=False, timeout=connect_timeout_s,
                                    check=ConnectionPool.check_connection, name="corevad-store-readers")
        self._pool.open(wait=False)

    @property
    def where(self) -> str:
        return self.url

    def close(self) -> None:
        self._pool.close(timeout=2.0)
        with self._write_lock:
            self._drop_writer()

    # -- the writer connection ---------------------------------------------------------------------------
    def _writer(self) -> Any:
        """The open writer connection, or a new one (psycopg.OperationalError while the server is down)."""
        if self._db is None or self._db.closed:
            self._db = self._psycopg.connect(self.url, autocommit=True, **self._kwargs)
        return self._db

    def _drop_writer(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except self._psycopg.Error:
                pass
            self._db = None

    def _writing(self, work: Callable[[Any], Any]) -> Any:
        """Run `work(conn)` in one transaction on the writer; a connection the server broke is dropped (the
        next call opens a new one) and the error goes to the caller."""
        with self._write_lock:
            conn = self._writer()
            try:
                with conn.transaction():
                    return work(conn)
            except self._psycopg.Error:
                if conn.broken or conn.closed:
                    self._drop_writer()
                raise

    # -- writes (the store sink's thread) ----------------------------------------------------------------
    def write(self, kind: str, camera: str | None, payload: Any, at: float, *, alert_id: str | None = None
              ) -> None:
        """One published message, committed (alert_id: the alert a snapshot shows)."""
        import json

        if kind == "events" and isinstance(payload, dict):
            a = payload["after"]
            values = (*alert_values(a), at)
            event = (a["id"], payload["type"], at, json.dumps(payload))
            self._writing(lambda conn: self._alert(conn, values, event))
        elif kind == "snapshot" and isinstance(payload, bytes) and alert_id is not None:
            jpeg = payload
            check_snapshot(alert_id, jpeg)
            self._writing(lambda conn: self._snapshot(conn, alert_id, jpeg))
        elif kind == "score" and isinstance(payload, dict) and camera is not None:
            row = (camera, int(payload["index"]), float(payload["start"]), float(payload["end"]),
                   payload.get("score"), payload.get("label"))
            self._writing(lambda conn: conn.execute(
                'INSERT INTO scores VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (camera, start) DO UPDATE SET '
                'segment = excluded.segment, "end" = excluded."end", score = excluded.score, '
                'label = excluded.label', row))
        elif kind in ("status", "model") and isinstance(payload, dict):
            row2 = (camera, "camera" if kind == "status" else "model", at, str(payload.get("state", "")),
                    str(payload.get("reason", "")))
            self._writing(lambda conn: conn.execute(
                "INSERT INTO status (camera, kind, time, state, reason) VALUES (%s, %s, %s, %s, %s)", row2))

    @staticmethod
    def _alert(conn: Any, values: tuple[Any, ...], event: tuple[Any, ...]) -> None:
        conn.execute(
            "INSERT INTO alerts (id, camera, start_time, end_time, active, start_segment, end_segment, "
            "peak_segment, peak_score, score, explanation, end_reason, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
            "end_time = excluded.end_time, active = excluded.active, end_segment = excluded.end_segment, "
            "peak_segment = excluded.peak_segment, peak_score = excluded.peak_score, score = excluded.score, "
            "explanation = excluded.explanation, end_reason = excluded.end_reason, updated_at = excluded.updated_at",
            values)
        conn.execute("INSERT INTO alert_events (alert_id, type, time, payload) VALUES (%s, %s, %s, %s)", event)

    @staticmethod
    def _snapshot(conn: Any, alert_id: str, jpeg: bytes) -> None:
        """Only an alert still open takes one (a late snapshot never replaces an ended alert's picture)."""
        if conn.execute("SELECT 1 FROM alerts WHERE id = %s AND active", (alert_id,)).fetchone() is None:
            return
        conn.execute("INSERT INTO snapshots (alert_id, jpeg, bytes) VALUES (%s, %s, %s) ON CONFLICT (alert_id) "
                     "DO UPDATE SET jpeg = excluded.jpeg, bytes = excluded.bytes", (alert_id, jpeg, len(jpeg)))
        conn.execute("UPDATE alerts SET snapshot = %s WHERE id = %s", (snapshot_name(alert_id), alert_id))

    def checkpoint(self) -> None:
        """Nothing to give back here (sqlite folds its WAL); the server manages its own log."""

    def acknowledge(self, alert_id: str, *, at: float | None = None) -> bool:
        """Mark an alert acknowledged (committed before returning); False when no such alert."""
        when = time.time() if at is None else at
        cur = self._writing(lambda conn: conn.execute("UPDATE alerts SET acknowledged_at = %s WHERE id = %s",
                                                      (when, alert_id)))
        return bool(cur.rowcount == 1)

    def prune(self, *, now: float | None = None) -> int:
        """Apply the retention as the sqlite store does: scores, status changes and snapshots older than `days`;
        then, while the store is over the cap, the oldest scores or ended alerts' snapshots, whichever are
        older (alert rows stay; an open alert keeps its picture). Returns the rows and snapshots deleted."""
        cutoff = (time.time() if now is None else now) - self.retention.days * 86400

        def by_age(conn: Any) -> int:
            n = conn.execute('DELETE FROM scores WHERE "end" < %s', (cutoff,)).rowcount
            n += conn.execute("DELETE FROM status WHERE time < %s", (cutoff,)).rowcount
            old = conn.execute("DELETE FROM snapshots s USING alerts a WHERE s.alert_id = a.id AND "
                               "a.start_time < %s RETURNING s.alert_id", (cutoff,)).fetchall()
            if old:
                conn.execute("UPDATE alerts SET snapshot = NULL WHERE id = ANY(%s)", ([r[0] for r in old],))
            return int(n) + len(old)

        deleted: int = self._writing(by_age)
        for _round in range(4):  # each round ends measured (VACUUM FULL); more than two is never needed here
            size = self.size_bytes()
            if size <= self.retention.max_bytes:
                break
            cut, touched = self._cut_to_cap(size)
            deleted += cut
            if not touched:
                break  # nothing left to delete: open alerts' pictures and alert rows stay
            with self._write_lock:
                conn = self._writer()
                try:
                    for table in sorted(touched):  # outside a transaction (VACUUM cannot run in one)
                        conn.execute(f"VACUUM FULL {table}")
                except self._psycopg.Error:
                    if conn.broken or conn.closed:
                        self._drop_writer()
                    raise
        return deleted

    def _cut_to_cap(self, size: int) -> tuple[int, set[str]]:
        """Delete the oldest until the estimate is under the cap; (deleted, the tables cut)."""
        cap = self.retention.max_bytes
        rows = self._writing(lambda c: c.execute("SELECT COUNT(*), pg_total_relation_size('scores') FROM scores"
                                                 ).fetchone())
        per_score = rows[1] / rows[0] if rows[0] else 0.0
        deleted, touched, estimate = 0, set(), size
        while estimate > cap:
            def oldest(conn: Any) -> tuple[Any, Any]:
                score = conn.execute('SELECT MIN("end") FROM scores').fetchone()[0]
                picture = conn.execute("SELECT a.id, a.start_time, s.bytes FROM alerts a JOIN snapshots s ON "
                                       "s.alert_id = a.id WHERE NOT a.active ORDER BY a.start_time LIMIT 1"
                                       ).fetchone()
                return score, picture

            oldest_score, picture = self._writing(oldest)
            if oldest_score is None and picture is None:
                break
            if picture is not None and (oldest_score is None or picture[1] <= oldest_score):
                self._writing(functools.partial(_drop_snapshot, alert_id=picture[0]))
                estimate -= int(picture[2])
                deleted += 1
                touched.add("snapshots")
                continue
            chunk = 10_000 if per_score <= 0 else max(1, min(10_000, math.ceil((estimate - cap) / per_score)))
            n = self._writing(functools.partial(_drop_oldest_scores, rows=chunk))
            estimate -= int(n * per_score) if per_score > 0 else 0
            deleted += n
            touched.add("scores")
        return deleted, touched

    def size_bytes(self) -> int:
        """The store's tables with their TOAST (the snapshots) and indexes: what the size cap holds."""
        total = " + ".join(f"pg_total_relation_size('{t}')" for t in TABLES)
        return int(self._read_one(f"SELECT {total} AS n")["n"])  # noqa: S608 - fixed table names

    # -- reads -------------------------------------------------------------------------------------------
    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows from a reader connection; StoreError while the database cannot be reached."""
        try:
            with self._pool.connection() as conn:
                rows: list[dict[str, Any]] = conn.execute(sql, args).fetchall()  # type: ignore[assignment]
                return rows
        except self._psycopg.OperationalError as exc:  # PoolTimeout is one: no connection in time
            raise StoreError(f"event store {self.url}: {_one_line(exc)}") from None

    def _read_one(self, sql: str, args: Sequence[Any] = ()) -> dict[str, Any]:
        return self._read(sql, args)[0]

    def alerts(self, *, camera: str | None = None, since: float | None = None, until: float | None = None,
               active: bool | None = None, limit: int = 50, offset: int = 0, before: str | None = None
               ) -> list[dict[str, Any]]:
        """Alerts, newest first (start time, then id), filtered and paged; as SqliteStore.alerts."""
        where: list[str] = ["TRUE"]
        args: list[Any] = []
        alert_page_clause(where, args, camera=camera, since=since, until=until, active=active, mark="%s")
        if before is not None:
            rows = self._read("SELECT start_time, id FROM alerts WHERE id = %s", (before,))
            if not rows:
                raise ValueError(f"before: no alert {before[:80]!r}")
            where.append("start_time <= %s AND (start_time < %s OR id > %s)")
            args.extend((rows[0]["start_time"], rows[0]["start_time"], rows[0]["id"]))
        # The WHERE terms are this method's own fixed fragments; every value goes in as a parameter.
        sql = (f"SELECT * FROM alerts WHERE {' AND '.join(where)} ORDER BY start_time DESC, id "  # noqa: S608
               "LIMIT %s OFFSET %s")
        return [alert_row(r) for r in self._read(sql, (*args, max(0, min(limit, MAX_PAGE)), max(0, offset)))]

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT * FROM alerts WHERE id = %s", (alert_id,))
        return alert_row(rows[0]) if rows else None

    def active_alerts(self) -> list[dict[str, Any]]:
        """Alerts still active: after a crash, the ones the previous run left open."""
        return self.alerts(active=True, limit=MAX_PAGE)

    def scores(self, camera: str, start: float, end: float) -> list[dict[str, Any]]:
        return self._read('SELECT segment, start, "end", score, label FROM scores WHERE camera = %s AND '
                          '"end" >= %s AND start <= %s ORDER BY start', (camera, start, end))

    def snapshot(self, alert_id: str) -> bytes | None:
        rows = self._read("SELECT jpeg FROM snapshots WHERE alert_id = %s", (alert_id,))
        return bytes(rows[0]["jpeg"]) if rows else None

    def count(self, table: str) -> int:
        if table not in COUNTED_TABLES:
            raise ValueError(f"no table {table!r}")
        return int(self._read_one(f"SELECT COUNT(*) AS n FROM {table}")["n"])  # noqa: S608 - checked above


def _drop_snapshot(conn: Any, *, alert_id: str) -> None:
    conn.execute("DELETE FROM snapshots WHERE alert_id = %s", (alert_id,))
    conn.execute("UPDATE alerts SET snapshot = NULL WHERE id = %s", (alert_id,))


def _drop_oldest_scores(conn: Any, *, rows: int) -> int:
    return int(conn.execute('DELETE FROM scores WHERE ctid IN (SELECT ctid FROM scores ORDER BY "end" LIMIT %s)',
                            (rows,)).rowcount)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
