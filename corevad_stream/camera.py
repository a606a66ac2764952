"""One camera's pipeline past the batcher: in-flight bookkeeping, model health, scoring and its messages.

Why an object per camera: the App only wires stages together; what belongs to a camera (its counters, its
segments still waiting for a score, its model state, its alert record) lives here, updated on the event
loop only. A stream is finished when its end-of-stream marker comes out of the results queue: the marker
travels behind the camera's segments through the batcher and the worker, so nothing counts segments.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .config import CameraConfig
from .entities import CameraCounters, SegmentJob
from .health import HealthChange, ModelHealth, ModelState
from .messages import Message
from .ring import FrameRing
from .scoring import CameraScoring, ScoringOutput
from .sources import Source
from .worker import SegmentResult

log = logging.getLogger(__name__)


class CameraPipeline:
    """Everything the app keeps for one camera; every method runs on the event loop."""

    def __init__(self, cfg: CameraConfig, *, counters: CameraCounters, scoring: CameraScoring,
                 ring: FrameRing | None, results_bound: int, down_after_s: float) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.counters = counters
        self.scoring = scoring
        self.ring = ring
        self.results: asyncio.Queue[SegmentResult | SegmentJob] = asyncio.Queue(maxsize=results_bound)
        self.health = ModelHealth(down_after_s=down_after_s)
        self.source: Source | None = None
        self.finished = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.latest_clock = 0.0  # stream clock of the newest segment cut (scored or not)
        self.stop_reason: str | None = None  # why an open alert ends at the marker (None: end of stream)
        self._inflight: dict[int, float] = {}  # segment index -> monotonic time it was cut, until scored/dropped

    # -- bookkeeping -----------------------------------------------------------------------------------
    def cut(self, job: SegmentJob) -> None:
        """A segment was cut and handed to the batcher."""
        self.counters.segments += 1
        self.latest_clock = max(self.latest_clock, job.clock)
        self._inflight[job.index] = time.monotonic()

    def lost(self, index: int | None = None) -> None:
        """A segment was dropped (overload, stride, no ring slot, shutdown); None: it was never cut."""
        if index is None:
            self.counters.segments += 1
        else:
            self._inflight.pop(index, None)
        self.counters.drops += 1

    def lag(self, now: float | None = None) -> float:
        """Age of the oldest segment not yet scored, waiting or in the model."""
        if not self._inflight:
            return 0.0
        return (time.monotonic() if now is None else now) - min(self._inflight.values())

    def busy(self) -> bool:
        return bool(self._inflight)

    # -- model health ----------------------------------------------------------------------------------
    def model_message(self, change: HealthChange | None) -> list[Message]:
        if change is None:
            return []
        c = self.counters
        c.model_state, c.model_reason = change.state.value, change.reason
        level = logging.WARNING if change.state is not ModelState.OK else logging.INFO
        log.log(level, "camera %s: model %s%s", self.name, change.state.value,
                f" ({change.reason})" if change.reason else "")
        msgs = [Message("model", self.health.snapshot(), camera=self.name, retain=True)]
        msgs += self.scoring.set_model_down(change.state is ModelState.DOWN).messages
        return msgs

    # -- the scoring task ------------------------------------------------------------------------------
    async def run(self, publish: Callable[[ScoringOutput], Awaitable[None]]) -> None:
        """Score results in order until the end marker; then finish (end an open alert) and set `finished`."""
        while True:
            item = await self.results.get()
            if isinstance(item, SegmentJob):  # the end-of-stream marker
                break
            self._inflight.pop(item.job.index, None)
            try:
                if item.answered:
                    change = self.health.success()
                else:
                    change = self.health.failure(item.error_kind or "error", item.error or "")
                out = self.scoring.process(item)
                out.messages[:0] = self.model_message(change)
            except Exception:  # noqa: BLE001 - one camera's scoring bug must not stop the others
                log.exception("camera %s: scoring failed on segment %d", self.name, item.job.index)
                out = ScoringOutput()
            await publish(out)
        await self.finish(publish, reason=self.stop_reason)

    async def finish(self, publish: Callable[[ScoringOutput], Awaitable[None]], *, reason: str | None) -> None:
        if self.finished.is_set():
            return
        try:
            await publish(self.scoring.finish() if reason is None else self.scoring.finish(reason))
        except Exception:  # noqa: BLE001 - same boundary as process()
            log.exception("camera %s: final scoring failed", self.name)
        self.finished.set()
