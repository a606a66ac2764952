"""One camera's pipeline past the batcher: in-flight bookkeeping, model health, scoring and its messages.

Why an object per camera: the App only wires stages together; what belongs to a camera (its counters, its
segments still waiting for a score, its model state, its resolved config sections, its alert record) lives
here, updated on the event loop only. A stream is finished when its end-of-stream marker comes out of the
results queue: the marker travels behind the camera's segments through the batcher and the worker, so
nothing counts segments. The camera's config sections (global + its overrides) are resolved once, when the
pipeline is built, and read from here by scoring, dispatch and /api/cameras.

Arming (corevad_stream.arming decides, arming_control applies): a camera that is not armed keeps decoding
(its status, reconnects and latest frame stay live for the page) but its segments are released at the
segmenter (`admit`) instead of being submitted, so it spends no model time; what was already waiting in the
batcher is dropped, and results of segments cut before the camera was last armed are discarded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from .arming import Arming
from .config import AlertsConfig, CameraConfig, RefinementConfig
from .entities import (
    CameraCounters,
    CameraScorer,
    CameraStatus,
    DescriptionUpdate,
    ScoringOutput,
    SegmentJob,
    SegmentResult,
    Source,
    StatusChange,
)
from .health import HealthChange, ModelHealth, ModelState
from .messages import Message
from .ring import FrameRing
from .zones import CameraZones, ZoneLayout, zones_overview

log = logging.getLogger(__name__)

Publish = Callable[[ScoringOutput], Awaitable[None]]


class CameraPipeline:
    """Everything the app keeps for one camera; every method runs on the event loop.

    cfg: the camera's config; alerts/refinement: its resolved sections (the global ones with its overrides).
    ring: its frame ring (None: frame-less), closed when the camera stops so a waiting source wakes up.
    zones: its zones as its segmenter crops with them (None: the whole frame).
    """

    def __init__(self, cfg: CameraConfig, *, counters: CameraCounters, scoring: CameraScorer,
                 ring: FrameRing | None, results_bound: int, down_after_s: float, alerts: AlertsConfig,
                 refinement: RefinementConfig, zones: CameraZones | None = None) -> None:
        if results_bound < 1:
            raise ValueError(f"results_bound must be >= 1, got {results_bound}")
        self.cfg = cfg
        self.name = cfg.name
        self.alerts = alerts
        self.refinement = refinement
        self.counters = counters
        self.scoring = scoring
        self.ring = ring
        self.zones = zones
        self.results: asyncio.Queue[SegmentResult | SegmentJob | DescriptionUpdate] = asyncio.Queue(
            maxsize=results_bound)
        self.health = ModelHealth(down_after_s=down_after_s)
        self.source: Source | None = None
        self.finished = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.latest_clock = 0.0  # stream clock of the newest segment cut (scored or not)
        # The newest full-resolution frame a segment carried (the snapshot candidate; None until one, or when
        # alerts.snapshot is off): the review page's card shows it through /api/cameras/{name}/frame.jpg.
        self.latest_frame: np.ndarray | None = None
        self.stop_reason: str | None = None  # why an open alert ends at the marker (None: end of stream)
        self._inflight: dict[int, float] = {}  # segment index -> monotonic time it was cut, until scored/dropped
        self.no_slot = 0  # segments lost because every ring slot was still leased downstream
        self.prompt: str | None = None  # the prompt the model reads for this camera (None: the backend has none)
        # Read by the source thread (admit): a plain bool, set on the loop only.
        self.armed = True
        self.arming = Arming(True, "armed", None, "config")  # the latest decision, as /api/cameras shows it
        self._armed_since = 0.0  # monotonic: results of segments cut before this are stale

    # -- arming ----------------------------------------------------------------------------------------
    def admit(self, job: SegmentJob, submit: Callable[[SegmentJob], None]) -> None:
        """Source thread: submit a cut segment to the batcher, or release it while the camera is not armed."""
        if self.armed:
            submit(job)
        else:
            if job.full_frame_bgr is not None:  # the card's picture stays live while nothing is scored
                self.latest_frame = job.full_frame_bgr  # the segmenter's own copy (a reference swap)
            job.release()
            self.counters.disarmed_skipped += 1

    def set_arming(self, arming: Arming) -> ScoringOutput:
        """Apply an arming decision; the scoring output (an alert ended, the state) is for dispatch."""
        self.arming = arming
        if arming.armed == self.armed:
            return ScoringOutput()
        self.armed = arming.armed
        if arming.armed:
            self._armed_since = time.monotonic()
            return self.scoring.rearm()
        return self.scoring.disarm()

    # -- bookkeeping -----------------------------------------------------------------------------------
    def cut(self, job: SegmentJob) -> None:
        """A segment was cut and handed to the batcher."""
        self.counters.segments += 1
        self.latest_clock = max(self.latest_clock, job.clock)
        self._inflight[job.index] = time.monotonic()
        if job.full_frame_bgr is not None:
            self.latest_frame = job.full_frame_bgr  # a copy the segmenter made: never written again

    def lost(self, index: int | None = None) -> None:
        """A segment was dropped (overload, stride, no ring slot, shutdown); None: it was never cut."""
        if index is None:
            self.counters.segments += 1
        else:
            self._inflight.pop(index, None)
        self.counters.drops += 1

    def lost_no_slot(self, index: int) -> None:
        """The segmenter had no ring slot for segment `index` (a live policy; block waits instead): say so."""
        self.lost(None)
        if self.ring is not None and self.ring.closed:
            return  # the camera is stopping: the ring was closed on purpose
        self.no_slot += 1
        if self.no_slot in (1, 10, 100) or self.no_slot % 1000 == 0:
            log.warning("camera %s: no free frame slot (the model is behind): segment %d dropped, %d so far",
                        self.name, index, self.no_slot)

    def lag(self, now: float | None = None) -> float:
        """Age of the oldest segment not yet scored, waiting or in the model."""
        if not self._inflight:
            return 0.0
        return (time.monotonic() if now is None else now) - min(self._inflight.values())

    def busy(self) -> bool:
        return bool(self._inflight)

    def overview(self) -> dict[str, Any]:
        """The camera as /api/cameras shows it: (redacted) URL, status, model state, state, last score, alert
        thresholds, zones (as configured, with their pixel boxes once a frame gave the size), its scene context
        and the prompt the model reads for it (context included)."""
        c = self.counters
        return {"name": self.name, "url": self.cfg.safe_url, "status": c.status.value, "reason": c.reason,
                "model_state": c.model_state, "state": c.state, "last_score": c.last_score,
                "last_explanation": c.last_explanation, "scored": c.scored, "drops": c.drops,
                "open_threshold": self.alerts.open_threshold, "close_threshold": self.alerts.close_threshold,
                "context": self.cfg.context, "prompt": self.prompt,
                "arming": self.arming.to_json(),
                **zones_overview(self.cfg.zones, self.zone_layout)}

    @property
    def zone_layout(self) -> ZoneLayout | None:
        """The zones in the current frame size's pixels (None: no zones, or no frame yet)."""
        return self.zones.layout if self.zones is not None else None

    # -- model health ----------------------------------------------------------------------------------
    def model_message(self, change: HealthChange | None) -> list[Message]:
        if change is None:
            return []
        c = self.counters
        c.model_state, c.model_reason = change.state.value, change.reason
        level = logging.WARNING if change.state is not ModelState.OK else logging.INFO
        log.log(level, "camera %s: model %s%s", self.name, change.state.value,
                f" ({change.reason})" if change.reason else "")
        msgs = [Message("model", self.health.record(), camera=self.name, retain=True)]
        msgs += self.scoring.set_model_down(change.state is ModelState.DOWN).messages
        return msgs

    # -- the watchdog's questions (asked by the supervisor) --------------------------------------------
    def stalled(self, seconds: float) -> list[Message]:
        """A batch has been in the model this long: the camera's model is down if it has segments waiting."""
        return self.model_message(self.health.stalled(seconds)) if self.busy() else []

    def overdue(self) -> ScoringOutput | None:
        """An open alert that has waited too long for answers ends (None: no alert open or stream done)."""
        if self.scoring.tracker.active is None or self.finished.is_set():
            return None
        return self.scoring.unscored_until(self.latest_clock)

    # -- stopping (shutdown or removal) ----------------------------------------------------------------
    def stop_source(self, reason: str) -> None:
        """Ask the source to stop; an open alert will end with `reason` when the end marker is scored."""
        self.stop_reason = reason
        if self.ring is not None:
            self.ring.close()  # a lossless source waiting for a slot wakes up
        if self.source is not None:
            self.source.stop()

    def source_alive(self) -> bool:
        return self.source is not None and bool(getattr(self.source, "alive", False))

    async def settle(self, publish: Publish, *, reason: str, timeout: float) -> None:
        """Wait up to `timeout` for the end marker to be scored; then end whatever is still open."""
        try:
            await asyncio.wait_for(self.finished.wait(), timeout)
        except TimeoutError:
            log.warning("camera %s: scoring did not finish in time (%s); ending open alerts now", self.name, reason)
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if not self.finished.is_set():
            await self.finish(publish, reason=reason)
            while not self.results.empty():  # nobody scores them now: free a model stage waiting to deliver
                self.results.get_nowait()

    def went_offline(self, reason: str, *, always: bool = False) -> StatusChange | None:
        """A camera still online or connecting (or any, with always) is now offline for `reason`."""
        c = self.counters
        if not always and c.status not in (CameraStatus.ONLINE, CameraStatus.CONNECTING):
            return None
        c.status, c.reason = CameraStatus.OFFLINE, reason  # the last stats say so
        return StatusChange(self.name, CameraStatus.OFFLINE, reason)

    # -- the scoring task ------------------------------------------------------------------------------
    async def run(self, publish: Publish) -> None:
        """Score results in order until the end marker; then finish (end an open alert) and set `finished`.
        A description delivered after its verdict updates the explanations only."""
        while True:
            item = await self.results.get()
            if isinstance(item, SegmentJob):  # the end-of-stream marker
                break
            if isinstance(item, DescriptionUpdate):  # a description after its verdict (two-phase delivery)
                if not self.armed:
                    continue  # its segment was cut before a disarm: nothing of it is scored
                try:
                    out = self.scoring.describe(item)
                except Exception:  # noqa: BLE001 - same boundary as process()
                    log.exception("camera %s: description of segment %d failed to apply", self.name, item.index)
                    out = ScoringOutput()
                await publish(out)
                continue
            cut_at = self._inflight.pop(item.job.index, None)
            if not self.armed or (cut_at is not None and cut_at < self._armed_since):
                self.counters.drops += 1  # cut before a disarm: its answer is not scored (a loop-side count)
                continue
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

    async def finish(self, publish: Publish, *, reason: str | None) -> None:
        if self.finished.is_set():
            return
        try:
            await publish(self.scoring.finish() if reason is None else self.scoring.finish(reason))
        except Exception:  # noqa: BLE001 - same boundary as process()
            log.exception("camera %s: final scoring failed", self.name)
        self.finished.set()
