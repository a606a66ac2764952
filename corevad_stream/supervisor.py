"""The supervisor: once a second, per-camera rates and lag, the hung-model watchdog, and <prefix>/stats.

Rates are events per second over a sliding 10 s window (steady under batching, unlike a 1 s difference).
The watchdog exists because a hung model produces no outcome at all: once a batch has been in the model for
model_down_after_s the model (and every camera with segments waiting) is marked down, and an open alert
that has waited too long for answers ends. Cameras may come and go while it runs: it reads the live map.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from .entities import ScoringOutput, WatchedCamera
from .messages import Message


class RateWindow:
    """Events per second over a sliding window (10 s): steady under batching, unlike a 1 s difference."""

    def __init__(self, window_s: float = 10.0) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self._points: collections.deque[tuple[float, int]] = collections.deque()

    def rate(self, now: float, total: int) -> float:
        self._points.append((now, total))
        while len(self._points) > 2 and now - self._points[1][0] >= self.window_s:
            self._points.popleft()
        t0, n0 = self._points[0]
        return (total - n0) / (now - t0) if now > t0 else 0.0


class WatchedModel(Protocol):
    """What the supervisor asks of the model stage (model_stage.ModelStage)."""

    def inflight_s(self, now: float | None = None) -> float | None: ...

    def stalled(self, seconds: float) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class Supervisor:
    """`await supervisor.run()` until cancelled; stats() is the <prefix>/stats payload at any time.

    cameras: the app's live camera map. dispatch: publishes what the watchdog's alert ends produce.
    sink_stats/store_stats/mqtt_stats: the `sinks`, `store` and `mqtt` parts of the stats.
    """

    def __init__(self, *, cameras: Mapping[str, WatchedCamera], model: WatchedModel,
                 dispatch: Callable[[WatchedCamera, ScoringOutput], Awaitable[None]],
                 publish: Callable[[Message], None], stats_interval_s: float, run_id: str,
                 sink_stats: Callable[[], dict[str, Any]],
                 store_stats: Callable[[], dict[str, Any] | None],
                 mqtt_stats: Callable[[], dict[str, Any] | None] = lambda: None, tick_s: float = 1.0) -> None:
        if stats_interval_s <= 0 or tick_s <= 0:
            raise ValueError(f"stats_interval_s and tick_s must be > 0, got {stats_interval_s}, {tick_s}")
        self.cameras = cameras
        self.model = model
        self._dispatch = dispatch
        self._publish = publish
        self.stats_interval_s = stats_interval_s
        self.tick_s = tick_s
        self.run_id = run_id
        self._sink_stats = sink_stats
        self._store_stats = store_stats
        self._mqtt_stats = mqtt_stats
        self.started = time.monotonic()
        self._windows: dict[str, tuple[RateWindow, RateWindow]] = {}

    async def run(self) -> None:
        last_pub = time.monotonic()
        while True:
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            await self.tick(now)
            if now - last_pub >= self.stats_interval_s:
                last_pub = now
                self.publish_stats()

    async def tick(self, now: float) -> None:
        """One round: rates and lag of every camera, then the watchdog."""
        for name in [n for n in self._windows if n not in self.cameras]:
            del self._windows[name]  # a removed camera
        for name, cam in list(self.cameras.items()):
            fw, sw = self._windows.setdefault(name, (RateWindow(), RateWindow()))
            c = cam.counters
            c.fps_in, c.segments_per_s = fw.rate(now, c.frames), sw.rate(now, c.scored)
            c.queue_lag_s = cam.lag(now)
        await self.watchdog(now)

    async def watchdog(self, now: float) -> None:
        """A hung model produces no outcome at all: mark it down, and end alerts that waited too long."""
        stuck = self.model.inflight_s(now)
        if stuck is not None:
            self.model.stalled(stuck)
            for cam in list(self.cameras.values()):
                for m in cam.stalled(stuck):
                    self._publish(m)
        for cam in list(self.cameras.values()):
            out = cam.overdue()
            if out is not None:
                await self._dispatch(cam, out)

    def publish_stats(self) -> None:
        self._publish(Message("stats", self.stats()))

    def stats(self) -> dict[str, Any]:
        """Per-camera counters and runtime totals (what <prefix>/stats carries)."""
        return {
            "uptime_s": round(time.monotonic() - self.started, 1),
            "run_id": self.run_id,
            "cameras": {name: cam.counters.snapshot() for name, cam in self.cameras.items()},
            "model": self.model.stats(),
            "sinks": self._sink_stats(),
            "store": self._store_stats(),
            "mqtt": self._mqtt_stats(),
        }
