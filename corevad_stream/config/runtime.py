"""Section `runtime`: segmenting, batching, overload behaviour, shutdown and where state lives."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from corevad.paths import state_dir
from corevad.schema import BackoffConfig, StrictModel

# The policy is data the batcher acts on; the schema only names it (one definition, in entities).
from ..entities import OverloadPolicy

__all__ = ["OverloadPolicy", "ReconnectConfig", "RuntimeConfig"]


class ReconnectConfig(BackoffConfig):
    """Exponential backoff with jitter for cameras that fail, stall or end unexpectedly (`runtime.reconnect`)."""

    open_timeout_s: float = Field(10.0, gt=0, le=600, description="Give up opening a stream after this.")
    stall_timeout_s: float = Field(10.0, gt=0, le=600, description="No complete segment for this long = "
                                                                   "stalled; reconnect.")


class RuntimeConfig(StrictModel):
    """Segmenting, batching and overload behaviour."""

    frames_per_segment: int = Field(8, gt=0, le=64, description="Frames sampled per 1-second segment for the VLM.")
    frame_size: int = Field(448, ge=16, le=2048, description="Sampled frames are resized once at ingest to this "
                                                             "square size (RGB).")
    segment_seconds: float = Field(1.0, gt=0, le=60, description="Segment length in seconds of stream.")
    max_batch: int = Field(8, gt=0, le=1024, description="Most segments per model call.")
    # 0 by default: while the model is busy, segments queue up and form batches anyway; waiting when it is
    # idle only adds latency (alert latency is a target, see tools/bench_stream.py).
    max_wait_s: float = Field(0.0, ge=0, le=60, description="Longest wait for a batch to fill once one segment is in.")
    overlap_preprocessing: bool = Field(True, description="Preprocess the next batch (CPU) while the model runs "
                                                          "this one (backends with a prepare step: transformers).")
    overload_policy: OverloadPolicy = Field(OverloadPolicy.DROP_OLDEST, description="drop_oldest, stride "
                                                                                    "or block (lossless).")
    max_pending_per_camera: int = Field(3, gt=0, le=1000, description="Segments a camera may have waiting.")
    max_pending_total: int = Field(64, gt=0, le=100_000, description="Segments waiting over all cameras.")
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig, description="Camera retries.")
    stats_interval_s: float = Field(10.0, gt=0, le=3600, description="Period of <prefix>/stats messages "
                                                                     "and of the plain stats log line.")
    sink_queue: int = Field(1000, gt=0, le=100_000_000, description="Messages buffered per sink (oldest "
                                                                  "non-event dropped).")
    shutdown_timeout_s: float = Field(10.0, gt=0, le=600, description="Time to flush in-flight work on shutdown "
                                                                      "(one deadline for sources, model, scoring).")
    model_down_after_s: float = Field(15.0, gt=0, le=3600, description="The model state goes `down` when no "
                                      "valid answer came for this long (failures, or a batch in flight).")
    state_dir: Path | None = Field(None, description="Where the event store (with the record of open alerts "
                                                     "kept across restarts) and the MQTT outbox live (default "
                                                     "$XDG_STATE_HOME/corevad or ~/.local/state/corevad).")

    def state_path(self) -> Path:
        return self.state_dir or state_dir()
