"""The record of open alerts that survives a crash, so a restarted monitor can end them truthfully.

Why: after a SIGKILL mid-alert the retained state stayed `anomalous` and the alert never got an `end`.
Every alert event updates the `open_alerts` table of the event store's sqlite file, committed before the
event is published (alert events are rare, a few per hour per camera; a WAL commit survives a killed
process). On start the monitor ends what it finds there with reason "monitor restarted" and clears it.
One file holds both this record and the history (store.py), even when the history is turned off; the
record is written here, synchronously, because the history's writer is a queued thread that may be behind.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from .entities import RESTART_REASON
from .errors import StreamError
from .messages import AlertEventRecord, Message

log = logging.getLogger(__name__)


class AlertStateError(StreamError):
    """The open-alert record cannot be read or written."""


class OpenAlerts:
    """camera -> the open alert's dict (Alert.to_dict()), mirrored to the store file at `path`."""

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

    def load(self) -> dict[str, dict[str, Any]]:
        """The alerts a previous run left open (empty when none). Rows that do not parse are logged and skipped."""
        try:
            rows = self._conn().execute("SELECT camera, alert FROM open_alerts").fetchall()
        except sqlite3.Error as exc:
            raise AlertStateError(f"open-alert record {self.path}: {exc}") from None
        out: dict[str, dict[str, Any]] = {}
        for camera, text in rows:
            try:
                alert = json.loads(text)
                if not isinstance(alert, dict) or "id" not in alert:
                    raise ValueError("not an alert")
            except ValueError as exc:
                log.error("open-alert record %s: camera %s: unreadable row (%s); skipped", self.path, camera, exc)
                continue
            out[camera] = alert
        return out

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

    def clear(self) -> None:
        try:
            db = self._conn()
            with db:
                db.execute("DELETE FROM open_alerts")
        except (sqlite3.Error, AlertStateError) as exc:
            log.error("cannot write the open-alert record %s: %s", self.path, exc)

    def close(self) -> None:
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
