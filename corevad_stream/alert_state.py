"""The record of open alerts that survives a crash, so a restarted monitor can end them truthfully.

Why: after a SIGKILL mid-alert the retained state stayed `anomalous` and the alert never got an `end`.
Every alert event rewrites one small JSON file (atomic replace, fsync'd: alert events are rare, a few per
hour per camera); on start the monitor ends what it finds there with reason "monitor restarted" and clears
it. The file lives beside the MQTT outbox (the state directory), one per topic prefix.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from .errors import StreamError

log = logging.getLogger(__name__)

MAX_BYTES = 4 * 1024 * 1024  # a few thousand open alerts; anything bigger is not ours


class AlertStateError(StreamError):
    """The open-alert record cannot be read or written."""


class OpenAlerts:
    """camera -> the open alert's dict (Alert.to_dict()), mirrored to `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._open: dict[str, dict[str, Any]] = {}

    def load(self) -> dict[str, dict[str, Any]]:
        """The alerts a previous run left open (empty when none or no file). Unreadable files are set aside."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise AlertStateError(f"open-alert record {self.path}: {exc.strerror or exc}") from None
        try:
            if size > MAX_BYTES:
                raise ValueError(f"{size} bytes (limit {MAX_BYTES})")
            data = json.loads(self.path.read_bytes())
            if not isinstance(data, dict) or not all(isinstance(v, dict) and "id" in v for v in data.values()):
                raise ValueError("not a mapping of camera -> alert")
        except (OSError, ValueError) as exc:
            bad = self.path.with_name(self.path.name + ".bad")
            log.error("open-alert record %s is unreadable (%s); moved to %s", self.path, exc, bad)
            os.replace(self.path, bad)
            return {}
        return data

    def set(self, camera: str, alert: dict[str, Any] | None) -> None:
        """Record the camera's open alert (None: it has none) and write the file."""
        if alert is None:
            if self._open.pop(camera, None) is None:
                return
        else:
            self._open[camera] = alert
        self._write()

    def clear(self) -> None:
        self._open.clear()
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(self._open, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:  # counted by the caller's log; alerts still go out
            log.error("cannot write the open-alert record %s: %s", self.path, exc)
