"""Dispatch: one camera's scoring output -> the open-alert record, the latency metric, the sinks, a snapshot.

Alert events get their notification fields here (title, explanation, severity, links: notify.Notifier), as
the last step before they are published.

Works from the typed records scoring produced (nothing is re-read from a serialised payload): a score
that was answered feeds the alert-latency histogram with its unrounded latency; an alert event updates
the crash-safe open-alert record before it is published; a moved alert peak becomes a JPEG snapshot.
Why the snapshot has its own thread: JPEG encoding used to share the default thread pool with the HTTP
API's reads, so a burst of API requests delayed alerts to a p99 of 9.7 s (issue 18 item 6); scoring and
alerts must never wait on the web side.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import cv2
import numpy as np

from corevad.threads import DaemonPool

from .entities import ScoringOutput
from .messages import AlertEventRecord, Message, ScoreRecord
from .notify import Notifier
from .zones import ZoneLayout, draw_zones


class AlertRecordBook(Protocol):
    """Where open alerts are recorded, committed before they are published (alert_state.OpenAlerts; a group
    member's fenced record in the shared database, group.GroupAlertRecord, is awaited)."""

    def set(self, camera: str, alert: dict[str, Any] | None) -> None | Awaitable[None]: ...


class Dispatch:
    """`await dispatch(camera, output, snapshot_quality=q, zones=layout)`; close() ends the snapshot thread."""

    def __init__(self, *, publish: Callable[[Message], None], open_alerts: AlertRecordBook,
                 observe_latency: Callable[[str, float], None] | None = None,
                 notifier: Notifier | None = None) -> None:
        self._publish = publish
        self.notifier = notifier or Notifier(public_url=None)
        self._open_alerts = open_alerts
        self._observe_latency = observe_latency
        self._snapshots = DaemonPool(1, name="corevad[dispatch].snapshot")
        self.snapshots_failed = 0

    def close(self) -> None:
        self._snapshots.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, camera: str, out: ScoringOutput, *, snapshot_quality: int,
                       zones: ZoneLayout | None = None) -> None:
        for m in out.messages:
            p = m.payload
            if isinstance(p, ScoreRecord) and p.available and self._observe_latency is not None:
                self._observe_latency(camera, max(0.0, p.latency_s))
            elif isinstance(p, AlertEventRecord):
                done = self._open_alerts.set(camera, p.after_json() if p.active else None)
                if inspect.isawaitable(done):
                    await done
        for m in out.messages:
            self._publish(self.notifier.complete(m))
        if out.snapshot is not None:
            loop = asyncio.get_running_loop()
            jpeg = await loop.run_in_executor(self._snapshots, functools.partial(
                encode_jpeg, out.snapshot, snapshot_quality, zones=zones))
            if jpeg is None:
                self.snapshots_failed += 1
                return
            self._publish(Message("snapshot", jpeg, camera=camera, retain=True, alert_id=out.snapshot_alert))


def encode_jpeg(frame_bgr: np.ndarray, quality: int, *, zones: ZoneLayout | None = None) -> bytes | None:
    """The one JPEG encoder of camera frames (alert snapshots, the cards' latest frame): with zones, their
    outlines and names are drawn on a copy first. A frame of another size than the zones were resolved for
    (the squashed model input a camera without full-frame snapshots falls back to) is encoded as it is."""
    if zones is not None and frame_bgr.shape[:2] == (zones.height, zones.width):
        frame_bgr = draw_zones(frame_bgr, zones)
    ok, buf = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else None
