"""Cut a camera's frames into 1-second segments and keep only the frames the VLM samples from each.

Runs in the camera's source thread. A segment is the frames of one second at the stream's frame rate
(30 at 30 fps); its sampled frames follow corevad.segments.sample_indices, are resized once to the
model size and converted to RGB straight into a ring-buffer slot (a camera with zones has each sampled
frame cropped to its zones' box first, by corevad_stream.zones). The source decodes but does not
convert the other frames (cv2 grab() without retrieve()): measured here on 640x480 H.264, read() costs
1.34 ms of CPU per frame, grab() 1.04 ms, so skipping 22 of 30 conversions pays for the resizing, the
batching and the scoring (the whole runtime costs ~1.1x bare read() decoding; tools/bench_stream.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import cv2
import numpy as np

from corevad.segments import sample_indices

from .entities import SegmentJob
from .ring import FrameRing
from .zones import CameraZones

log = logging.getLogger(__name__)


def prepare_frame_into(frame_bgr: np.ndarray, dst: np.ndarray) -> None:
    """Resize a BGR frame to dst's square size and store it as RGB in dst (no allocation beyond cv2's)."""
    size = dst.shape[0]
    # Bilinear, not INTER_AREA: measured 0.6 ms vs 3.1 ms per 640x480 -> 448 frame here, and INTER_AREA
    # alone made the runtime cost 60% more CPU than decoding; the models' processors resample again anyway.
    cv2.resize(frame_bgr, (size, size), dst=dst, interpolation=cv2.INTER_LINEAR)
    cv2.cvtColor(dst, cv2.COLOR_BGR2RGB, dst=dst)


def prepare_frame(frame_bgr: np.ndarray, size: int) -> np.ndarray:
    """The same transform as the runtime's ingest, returning a new (size, size, 3) RGB array."""
    out = np.empty((size, size, 3), dtype=np.uint8)
    prepare_frame_into(frame_bgr, out)
    return out


class Segmenter:
    """Per-camera segmenting state. Call start_stream(fps) on (re)connect, then wants()/push() per frame."""

    def __init__(self, camera: str, *, ring: FrameRing | None, frames_per_segment: int,
                 emit: Callable[[SegmentJob], None], on_no_slot: Callable[[int], None] | None = None,
                 segment_seconds: float = 1.0, first_index: int = 0, keep_full_frame: bool = False,
                 lossless: bool = False, context: str | None = None, zones: CameraZones | None = None) -> None:
        self.camera = camera
        self.context = context  # the camera's scene context: every segment carries it to the model
        self.ring = ring
        self.k = frames_per_segment
        self.emit = emit
        self.on_no_slot = on_no_slot
        self.segment_seconds = segment_seconds
        self.keep_full_frame = keep_full_frame
        self.lossless = lossless  # wait for a ring slot (overload policy block) instead of dropping the segment
        self.zones = zones  # crop sampled frames to the camera's zones (ZoneError: they do not fit the frame)
        self._full: np.ndarray | None = None
        self.index = first_index
        self.fps = 30.0
        self.seg_len = 30
        self._slot_of_pos = np.full(30, -1, dtype=np.int64)
        self._pos = 0
        self._slot: int | None = None
        self._slot_ok = True
        self._start = 0.0
        self._frames_total = 0  # frames over the camera's life: the stream clock

    @property
    def clock(self) -> float:
        return self._frames_total / self.fps

    def start_stream(self, fps: float) -> None:
        """A new connection: drop any partial segment and cut at this stream's frame rate."""
        self.abandon()
        self.fps = float(fps)
        self.seg_len = max(1, round(self.fps * self.segment_seconds))
        self._slot_of_pos = np.full(self.seg_len, -1, dtype=np.int64)
        self._slot_of_pos[sample_indices(0, self.seg_len, self.k)] = np.arange(min(self.k, self.seg_len))

    def wants(self) -> bool:
        """Whether the next frame is a sampled one (the source retrieves only those)."""
        return self.ring is not None and self._slot_of_pos[self._pos] >= 0

    def push(self, frame_bgr: np.ndarray | None, t: float) -> None:
        """One decoded frame at wall-clock t (frame_bgr None when it is not sampled or frame-less)."""
        if self._pos == 0:
            self._begin(t)
        k = self._slot_of_pos[self._pos]
        if k >= 0 and frame_bgr is not None and self._slot is not None:
            seen = frame_bgr if self.zones is None else self.zones.crop(frame_bgr)
            prepare_frame_into(seen, self.ring.view(self._slot)[k])  # type: ignore[union-attr]
            if self.keep_full_frame and k == self.k // 2:
                # The alert snapshot at the camera's resolution, uncropped (the sampled copy is squashed to
                # the model's square input, and cropped to the zones): one frame a segment, alive only while
                # the segment is in flight.
                self._full = frame_bgr.copy()
        self._pos += 1
        self._frames_total += 1
        if self._pos == self.seg_len:
            # end = when the segment's last frame arrived: the moment it could be acted on (latency origin).
            self._finish(t, self.seg_len)

    def flush_partial(self, t: float) -> None:
        """End of a finite stream: emit the partial last segment with the sampled frames it has."""
        if self._pos > 0:
            self._finish(t, self._pos)

    def abandon(self) -> None:
        """Connection lost mid-segment: forget the partial segment (its index is not reused)."""
        self._full = None
        if self._pos > 0:
            self.index += 1
        self._pos = 0
        if self._slot is not None and self.ring is not None:
            self.ring.release(self._slot)
        self._slot = None

    def _begin(self, t: float) -> None:
        self._start = t
        self._slot = None
        self._slot_ok = True
        if self.ring is not None:
            # Lossless: the source thread waits here until the model gives a slot back (or the ring closes).
            self._slot = self.ring.acquire(wait=self.lossless)
            if self._slot is None:
                self._slot_ok = False

    def _finish(self, end: float, n_frames: int) -> None:
        index = self.index
        self.index += 1
        self._pos = 0
        if self.ring is not None and not self._slot_ok:
            # Every slot is still leased downstream: this segment has no frames to give, count it dropped.
            if self.on_no_slot is not None:
                self.on_no_slot(index)
            return
        frames = None
        release = None
        if self._slot is not None and self.ring is not None:
            slot, ring = self._slot, self.ring
            view = ring.view(slot)
            # A partial last segment keeps only the sampled positions it reached.
            n = int((self._slot_of_pos[:n_frames] >= 0).sum())
            frames = view[: max(1, min(n, view.shape[0]))]
            release = functools.partial(ring.release, slot)
        self._slot = None
        full, self._full = self._full, None
        self.emit(SegmentJob(camera=self.camera, index=index, start=self._start, end=end, clock=self.clock,
                             n_frames=n_frames, frames=frames, full_frame_bgr=full, context=self.context,
                             _release=release))
