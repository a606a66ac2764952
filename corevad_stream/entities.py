"""The data that crosses stages: segments, results, prepared batches, policies, reasons, the source protocol.

Why one module: stages (sources, segmenter, batcher, model stage, scoring, dispatch, supervisor) import
these types and never each other, so a stage can be built and tested alone and no import circle forms.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from corevad.alerts import AlertTracker
from corevad.causal import ScoredSegment
from corevad.models.base import Clip
from corevad.types import Verdict

from .messages import Message

# Why an open alert ended or a camera went offline when the monitor itself did it (not the camera or model).
STOP_REASON = "monitor stopped"
RESTART_REASON = "monitor restarted"
REMOVED_REASON = "camera removed"
DISARMED_REASON = "disarmed"  # an open alert's end_reason when its camera is disarmed (corevad_stream.arming)


class OverloadPolicy(enum.StrEnum):
    """What the batcher does when segments arrive faster than the model answers."""

    DROP_OLDEST = "drop_oldest"  # live: keep the freshest segments, drop the oldest waiting ones
    STRIDE = "stride"  # live: keep every k-th segment of a backlogged camera (k doubles while behind)
    BLOCK = "block"  # replay: lossless, the source waits for room (never for live cameras)


class CameraStatus(enum.StrEnum):
    """A camera's connection state (published retained on <prefix>/<camera>/status)."""

    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"
    ENDED = "ended"  # a finite file reached its end (not an error)


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A status transition; reason says why (URLs already redacted)."""

    camera: str
    status: CameraStatus
    reason: str = ""
    at: float = field(default_factory=time.time)


@dataclass(slots=True, kw_only=True)
class SegmentJob:
    """One 1-second segment on its way to the model.

    frames: (k, S, S, 3) uint8 RGB, a view into the camera's ring buffer slot (valid until release()),
    or None for frame-less segments (replay backends answer those by (camera, index)).
    start/end: wall-clock seconds; clock: seconds of stream at the segment's end (hysteresis clock).
    """

    camera: str
    index: int
    start: float
    end: float
    clock: float
    n_frames: int
    frames: np.ndarray | None = None
    enqueued: float = 0.0  # time.monotonic() when the batcher accepted it
    full_frame_bgr: np.ndarray | None = None  # the middle sampled frame at the camera's resolution (snapshots)
    context: str | None = None  # the camera's scene context (its prompt; corevad.prompt.compose_prompt)
    # The end-of-stream marker: the last item of a camera that finished. It travels the same path as the
    # camera's segments (batcher queue, worker, results queue), so it arrives after every one of them and
    # nothing has to count segments to know a stream is done. Never dropped, never sent to the model.
    end_of_stream: bool = False
    _release: Callable[[], None] | None = None

    @classmethod
    def end_marker(cls, camera: str) -> SegmentJob:
        return cls(camera=camera, index=-1, start=0.0, end=0.0, clock=0.0, n_frames=0, end_of_stream=True)

    def release(self) -> None:
        """Give the ring slot back (idempotent)."""
        fn, self._release = self._release, None
        self.frames = None
        self.full_frame_bgr = None
        if fn is not None:
            fn()


@dataclass(slots=True)
class CameraCounters:
    """Counters one camera's stages update (read by metrics, stats and the live view).

    Plain ints written by one stage each; reads from other threads may be one update stale.
    """

    frames: int = 0
    segments: int = 0
    reconnects: int = 0
    drops: int = 0
    unparsed: int = 0
    unanswered: int = 0  # segments the model gave no valid answer for (errors, timeouts, empty answers)
    scored: int = 0
    disarmed_skipped: int = 0  # segments cut while the camera was not armed: never sent to the model (source)
    source_restarts: int = 0
    status: CameraStatus = CameraStatus.CONNECTING
    reason: str = ""
    fps_in: float = 0.0
    segments_per_s: float = 0.0
    queue_lag_s: float = 0.0
    last_latency_s: float = 0.0
    last_score: float | None = None
    state: str = "unknown"  # as published (retained) until the first score
    last_explanation: str = ""
    model_state: str = "unknown"
    model_reason: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, object]:
        return {
            "frames": self.frames, "segments": self.segments, "reconnects": self.reconnects,
            "drops": self.drops, "unparsed": self.unparsed, "unanswered": self.unanswered, "scored": self.scored,
            "source_restarts": self.source_restarts, "disarmed_skipped": self.disarmed_skipped,
            "model_state": self.model_state,
            "model_reason": self.model_reason,
            "status": self.status.value, "reason": self.reason, "fps_in": round(self.fps_in, 2),
            "segments_per_s": round(self.segments_per_s, 3), "queue_lag_s": round(self.queue_lag_s, 4),
            "latency_s": round(self.last_latency_s, 4),
            "last_score": None if self.last_score is None else round(self.last_score, 4),
            "state": self.state, "last_explanation": self.last_explanation,
        }


@dataclass(slots=True)
class SegmentResult:
    """A segment after the model: its verdict, features and (optionally) its middle frame, BGR."""

    job: SegmentJob
    verdict: Verdict
    visual: np.ndarray | None
    response_emb: np.ndarray | None
    description_emb: np.ndarray | None
    snapshot: np.ndarray | None
    model_s: float
    error: str | None = None  # set: the model gave no valid answer for this segment (verdict is a placeholder)
    error_kind: str | None = None
    answer_text_emb: np.ndarray | None = None  # sentence-encoder embeddings (text-anchored context)
    description_text_emb: np.ndarray | None = None
    p_anomalous: float | None = None  # P("Anomalous") from the backend, when it gives one
    # Two-phase delivery (describe on_demand with a backend that splits): this segment's verdict is out, its
    # description follows as a DescriptionUpdate. The scores never wait for it and are never recomputed.
    description_pending: bool = False

    @property
    def answered(self) -> bool:
        return self.error is None


@dataclass(slots=True, kw_only=True)
class DescriptionUpdate:
    """A segment's description, delivered after its verdict (two-phase delivery), for its camera's explanations.

    description: the answer's description line; None when the description pass failed for this segment
    (error and error_kind say why): the verdict already delivered stands, only the explanation lacks it.
    text_emb: the description's sentence embedding (explanation ranking), when the runtime has a text encoder.
    model_s: seconds the description pass took for its batch.
    """

    camera: str
    index: int
    description: str | None
    model_s: float
    error: str | None = None
    error_kind: str | None = None
    text_emb: np.ndarray | None = None


@dataclass(slots=True, kw_only=True)
class DescriptionPass:
    """What the model stage holds between a batch's two phases (opaque to it; worker.ModelWorker reads it).

    verdict_pass: the backend's corevad.models.base.VerdictPass; jobs: the batch's segments (their ring slots
    already given back); held: rows whose verdict comes only with their answer (their features so far)."""

    verdict_pass: Any
    jobs: list[SegmentJob]
    held: dict[int, tuple[np.ndarray | None, np.ndarray | None]] = field(default_factory=dict)


@dataclass(slots=True)
class PreparedBatch:
    """A batch after preprocessing: the backend's prepared inputs, or the error that stopped them."""

    jobs: list[SegmentJob]
    clips: list[Clip]
    prepared: Any = None  # None: the backend has no prepare step (answers come from answer_scored)
    error: tuple[str, str] | None = None
    prep_s: float = 0.0


StatusCallback = Callable[[StatusChange], None]


class Source(Protocol):
    """What the app needs from a source: a name, start, stop, join."""

    name: str
    # Set by the app before start(): called (from any thread) once the source has stopped for good.
    on_exit: Callable[[], None] | None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...


class FrameSink(Protocol):
    """What a source feeds its decoded frames into (the camera's Segmenter), from the source thread."""

    index: int
    seg_len: int
    segment_seconds: float

    def start_stream(self, fps: float) -> None: ...

    def wants(self) -> bool: ...

    def push(self, frame_bgr: np.ndarray | None, t: float) -> None: ...

    def flush_partial(self, t: float) -> None: ...

    def abandon(self) -> None: ...


@dataclass(slots=True)
class ScoringOutput:
    """What one result produced: messages to publish and, when an alert's peak moved, the frame to snapshot."""

    messages: list[Message] = field(default_factory=list)
    snapshot: np.ndarray | None = None
    snapshot_alert: str | None = None  # the alert whose peak the snapshot shows
    scored: list[ScoredSegment] = field(default_factory=list)


class CameraScorer(Protocol):
    """What a camera's pipeline needs from its scoring (scoring.CameraScoring)."""

    state: str
    tracker: AlertTracker
    use_features: bool

    def process(self, result: SegmentResult) -> ScoringOutput: ...

    def describe(self, update: DescriptionUpdate) -> ScoringOutput: ...

    def finish(self, reason: str = ...) -> ScoringOutput: ...

    def unscored_until(self, clock: float, *, segment: bool = False) -> ScoringOutput: ...

    def set_model_down(self, down: bool) -> ScoringOutput: ...

    def disarm(self) -> ScoringOutput: ...

    def rearm(self) -> ScoringOutput: ...


class WatchedCamera(Protocol):
    """What the supervisor asks of a camera's pipeline (camera.CameraPipeline)."""

    name: str
    counters: CameraCounters

    def lag(self, now: float | None = None) -> float: ...

    def stalled(self, seconds: float) -> list[Message]: ...

    def overdue(self) -> ScoringOutput | None: ...
