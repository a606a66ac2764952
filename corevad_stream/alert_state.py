"""The record of open alerts that survives a crash, so a restarted monitor can end them truthfully.

Why: after a SIGKILL mid-alert the retained state stayed `anomalous` and the alert never got an `end`.
Every alert event updates the `open_alerts` table of the event store's sqlite file, committed before the
event is published (alert events are rare, a few per hour per camera; a WAL commit survives a killed
process). On start the monitor ends what it finds there with reason "monitor restarted" and clears it.
One file holds both this record and the history (store/), even when the history is turned off; the
record is written here, synchronously, because the history's writer is a queued thread that may be behind.

On PostgreSQL (store.url) the record is the `open_alerts` table of the shared database (PostgresOpenAlerts),
so the monitor that takes a camera over can end what a dead one left open. Why its writes run on a thread of
their own with a bounded wait: set() is called on the event loop before an alert is published, and a frozen
or unreachable server must not stall scoring; past the wait the alert goes out and the write lands later (in
order) or is logged as failed, as a sqlite write the disk refused is.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from corevad.threads import DaemonPool

from .entities import RESTART_REASON
from .errors import StreamError
from .messages import AlertEventRecord, Message
from .store import StoreLocation

log = logging.getLogger(__name__)


class AlertStateError(StreamError):
    """The open-alert record cannot be read or written."""


class OpenAlertRecord(Protocol):
    """camera -> the open alert's dict (Alert.to_dict()), kept where a restarted (or another) monitor finds it.
    load and clear take the cameras to look at (None: all of them)."""

    def load(self, cameras: Iterable[str] | None = None) -> dict[str, dict[str, Any]]: ...

    def set(self, camera: str, alert: dict[str, Any] | None) -> None: ...

    def take(self, cameras: Iterable[str]) -> dict[str, dict[str, Any]]: ...

    def clear(self, cameras: Iterable[str] | None = None) -> None: ...

    def close(self) -> None: ...


def open_alert_record(location: StoreLocation) -> OpenAlertRecord:
    """The record beside the history: the store's sqlite file, or its PostgreSQL database."""
    if location.path is not None:
        return OpenAlerts(location.path)
    assert location.url is not None
    return PostgresOpenAlerts(location.url, password=location.password)


def _parse_rows(rows: Iterable[tuple[str, str]], where: str) -> dict[str, dict[str, Any]]:
    """Rows that do not parse are logged and skipped."""
    out: dict[str, dict[str, Any]] = {}
    for camera, text in rows:
        try:
            alert = json.loads(text)
            if not isinstance(alert, dict) or "id" not in alert:
                raise ValueError("not an alert")
        except ValueError as exc:
            log.error("open-alert record %s: camera %s: unreadable row (%s); skipped", where, camera, exc)
            continue
        out[camera] = alert
    return out


class OpenAlerts:
    """The record in the store's sqlite file at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            from .store import StoreError, connect

            try:
                self._db = connect(self.path)
            except StoreError as exc:
                raise AlertStateError(f"open-alert record: {exc}") from None
        return self._db

    def load(self, cameras: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """The alerts a previous run left open (empty when none). Rows that do not parse are logged and skipped."""
        try:
            rows = self._conn().execute("SELECT camera, alert FROM open_alerts").fetchall()
        except sqlite3.Error as exc:
            raise AlertStateError(f"open-alert record {self.path}: {exc}") from None
        wanted = None if cameras is None else set(cameras)
        return _parse_rows(((c, a) for c, a in rows if wanted is None or c in wanted), str(self.path))

    def set(self, camera: str, alert: dict[str, Any] | None) -> None:
        """Record the camera's open alert (None: it has none), committed."""
        try:
            db = self._conn()
            with db:
                if alert is None:
                    db.execute("DELETE FROM open_alerts WHERE camera = ?", (camera,))
                else:
                    db.execute("INSERT OR REPLACE INTO open_alerts VALUES (?, ?)", (camera, json.dumps(alert)))
        except (sqlite3.Error, AlertStateError) as exc:  # logged; alerts still go out
            log.error("cannot write the open-alert record %s: %s", self.path, exc)

    def take(self, cameras: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Remove and return these cameras' open alerts in one transaction: of two callers, one gets each."""
        wanted = list(cameras)
        try:
            db = self._conn()
            with db:
                db.execute("BEGIN IMMEDIATE")
                rows = [r for r in db.execute("SELECT camera, alert FROM open_alerts").fetchall() if r[0] in wanted]
                db.executemany("DELETE FROM open_alerts WHERE camera = ?", [(r[0],) for r in rows])
        except sqlite3.Error as exc:
            raise AlertStateError(f"open-alert record {self.path}: {exc}") from None
        return _parse_rows(rows, str(self.path))

    def clear(self, cameras: Iterable[str] | None = None) -> None:
        try:
            db = self._conn()
            with db:
                if cameras is None:
                    db.execute("DELETE FROM open_alerts")
                else:
                    db.executemany("DELETE FROM open_alerts WHERE camera = ?", [(c,) for c in cameras])
        except (sqlite3.Error, AlertStateError) as exc:
            log.error("cannot write the open-alert record %s: %s", self.path, exc)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class PostgresOpenAlerts:
    """The record in the `open_alerts` table of the store's PostgreSQL database (created by the store's
    migrations, which run here too, so the record works with the history turned off)."""

    def __init__(self, url: str, *, password: str | None = None, commit_wait_s: float = 2.0,
                 connect_timeout_s: float = 5.0) -> None:
        if commit_wait_s <= 0:
            raise ValueError(f"commit_wait_s must be > 0, got {commit_wait_s}")
        self.url = url
        self._password = password
        self._commit_wait_s = commit_wait_s
        self._connect_timeout_s = connect_timeout_s
        self._db: Any = None
        self._writes = DaemonPool(1, name="corevad[alerts].record")  # one thread: writes land in order
        self._last: concurrent.futures.Future[None] | None = None
        self._behind_logged = False

    def _conn(self) -> Any:
        import psycopg

        from .store._postgres import connect_kwargs, migrate

        if self._db is None or self._db.closed:
            self._db = psycopg.connect(self.url, autocommit=True,
                                       **connect_kwargs(self._password, connect_timeout_s=self._connect_timeout_s))
            migrate(self._db, self.url)
        return self._db

    def _run(self, sql: str, args: Any = ()) -> list[Any]:
        import psycopg

        try:
            conn = self._conn()
            with conn.transaction():
                cur = conn.execute(sql, args)
                return list(cur.fetchall()) if cur.description is not None else []
        except psycopg.Error:
            if self._db is not None and (self._db.broken or self._db.closed):
                self._db.close()
                self._db = None
            raise

    def load(self, cameras: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """The alerts left open (by a previous run, or by the monitor that watched these cameras before)."""
        import psycopg

        from .store import StoreError

        try:
            if cameras is None:
                rows = self._run("SELECT camera, alert FROM open_alerts")
            else:
                rows = self._run("SELECT camera, alert FROM open_alerts WHERE camera = ANY(%s)", (list(cameras),))
        except (psycopg.Error, StoreError) as exc:
            raise AlertStateError(f"open-alert record {self.url}: {' '.join(str(exc).split())}") from None
        return _parse_rows(rows, self.url)

    def set(self, camera: str, alert: dict[str, Any] | None) -> None:
        """Record the camera's open alert (None: it has none), committed before returning unless the database
        does not answer within commit_wait_s (then it lands later, in order, or is logged as failed)."""
        args: tuple[str, ...]
        if alert is None:
            sql, args = "DELETE FROM open_alerts WHERE camera = %s", (camera,)
        else:
            sql, args = ("INSERT INTO open_alerts VALUES (%s, %s) ON CONFLICT (camera) DO UPDATE SET "
                         "alert = excluded.alert", (camera, json.dumps(alert)))
        self._submit(sql, args)

    def take(self, cameras: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Remove and return these cameras' open alerts in one statement: of two monitors taking the same camera
        at once, one gets its alert (so a dead monitor's alert is ended once). AlertStateError when the
        database does not answer."""
        import psycopg

        from .store import StoreError

        wanted = list(cameras)
        try:
            rows = self._writes.submit(self._run, "DELETE FROM open_alerts WHERE camera = ANY(%s) "
                                       "RETURNING camera, alert", (wanted,)).result(timeout=self._commit_wait_s * 5)
        except concurrent.futures.TimeoutError:
            raise AlertStateError(f"open-alert record {self.url}: no answer within "
                                  f"{self._commit_wait_s * 5:.0f} s") from None
        except (psycopg.Error, StoreError) as exc:
            raise AlertStateError(f"open-alert record {self.url}: {' '.join(str(exc).split())}") from None
        return _parse_rows(rows, self.url)

    def clear(self, cameras: Iterable[str] | None = None) -> None:
        if cameras is None:
            self._submit("DELETE FROM open_alerts", ())
        else:
            self._submit("DELETE FROM open_alerts WHERE camera = ANY(%s)", (list(cameras),))

    def _submit(self, sql: str, args: Any) -> None:
        behind = self._last is not None and not self._last.done()
        future = self._writes.submit(self._write, sql, args)
        self._last = future
        if behind:  # the database is already not answering: no second wait on the event loop
            if not self._behind_logged:
                self._behind_logged = True
                log.error("open-alert record %s does not answer: writes wait in order and alerts still go out",
                          self.url)
            return
        try:
            future.result(timeout=self._commit_wait_s)
            self._behind_logged = False
        except concurrent.futures.TimeoutError:
            log.error("open-alert record %s: no commit within %.1f s; the alert goes out, the write lands later",
                      self.url, self._commit_wait_s)

    def _write(self, sql: str, args: Any) -> None:
        import psycopg

        from .store import StoreError

        try:
            self._run(sql, args)
        except (psycopg.Error, StoreError) as exc:  # logged; alerts still go out
            log.error("cannot write the open-alert record %s: %s", self.url, " ".join(str(exc).split()))

    def close(self) -> None:
        self._writes.shutdown(wait=False)
        if self._last is not None:
            try:
                self._last.result(timeout=self._commit_wait_s)  # what is queued lands, within the bound
            except concurrent.futures.TimeoutError:
                log.error("open-alert record %s: the last write did not finish before closing", self.url)
        if self._db is not None:
            self._db.close()
            self._db = None


def ended_by_restart(left_open: dict[str, dict[str, Any]], now: float | None = None) -> list[Message]:
    """The `end` events of alerts a previous run left open: reason "monitor restarted", ended now."""
    now = time.time() if now is None else now
    out = []
    for camera, alert in left_open.items():
        after = {**alert, "active": False, "end_time": alert.get("end_time") or now, "end_reason": RESTART_REASON}
        log.warning("camera %s: ending alert %s left open by the previous run (%s)", camera, alert.get("id"),
                    RESTART_REASON)
        out.append(Message("events", AlertEventRecord(type="end", before=alert, after=after)))
    return out
