"""Camera sources: each camera is read in its own thread (OpenCV's FFmpeg backend) and reconnected on failure.

Decoding blocks, so it never runs on the event loop. Every failure (cannot open, stalled, unexpected end)
becomes a status change with a redacted reason and a retry after an exponential backoff with jitter;
a failing camera only ever touches its own thread. A source thread that crashes (a bug, not a camera
failure) is restarted by its supervisor loop with its own backoff and counted; only a file that ends
(or a stop) finishes a source. Files either play at their native rate (live
simulation) or as fast as the pipeline takes them (replay), and may loop (demo).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import cv2

from corevad.backoff import Backoff, BackoffPolicy

from .config import DEFAULT_FPS as _FALLBACK_FPS
from .config import CameraConfig, ReconnectConfig
from .config.cameras import frameless_spec
from .entities import CameraCounters, CameraStatus, FrameSink, StatusCallback, StatusChange
from .errors import ZoneError
from .redact import redact

log = logging.getLogger(__name__)

class _ThreadSource:
    def __init__(self, cam: CameraConfig, *, segmenter: FrameSink, counters: CameraCounters,
                 on_status: StatusCallback, restart: BackoffPolicy | None = None) -> None:
        self.cam = cam
        self.restart_policy = restart or BackoffPolicy()
        self.name = cam.name
        self.segmenter = segmenter
        self.counters = counters
        self.on_status = on_status
        self.on_exit: Callable[[], None] | None = None
        self._published: tuple[CameraStatus, str] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._guarded, name=f"corevad[{cam.name}].source", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _status(self, status: CameraStatus, reason: str = "") -> None:
        reason = redact(reason)
        if (status, reason) == self._published:
            return
        self._published = (status, reason)
        self.counters.status, self.counters.reason = status, reason
        try:
            self.on_status(StatusChange(self.name, status, reason))
        except Exception:  # noqa: BLE001 - an observer failing must not stop the camera
            log.exception("camera %s: status observer failed", self.name)

    def _guarded(self) -> None:
        """The supervisor: run the source; after a crash, restart it with backoff until stopped."""
        backoff = Backoff(self.restart_policy)
        try:
            while not self._stop.is_set():
                try:
                    self._run()
                    return
                except Exception as exc:  # noqa: BLE001 - the thread's boundary: log, count, restart
                    self.counters.source_restarts += 1
                    delay = backoff.next_delay()
                    log.exception("camera %s: source crashed (restart %d in %.1f s)", self.name,
                                  self.counters.source_restarts, delay)
                    with contextlib.suppress(Exception):
                        self.segmenter.abandon()
                    self._status(CameraStatus.OFFLINE, f"source crashed: {type(exc).__name__}: {exc}; "
                                                       f"restart {self.counters.source_restarts}")
                    if self._stop.wait(delay):
                        return
        finally:
            if self.on_exit is not None:
                self.on_exit()

    def _run(self) -> None:
        raise NotImplementedError


class VideoSource(_ThreadSource):
    """RTSP / HTTP / file camera read with cv2.VideoCapture(CAP_FFMPEG) in a thread."""

    def __init__(self, cam: CameraConfig, *, segmenter: FrameSink, counters: CameraCounters,
                 on_status: StatusCallback, reconnect: ReconnectConfig, rng: random.Random | None = None) -> None:
        super().__init__(cam, segmenter=segmenter, counters=counters, on_status=on_status,
                         restart=reconnect.policy())
        self.reconnect = reconnect
        self.backoff = Backoff(reconnect.policy(), rng=rng)
        self.url = cam.url[len("file://"):] if cam.url.startswith("file://") else cam.url

    def _open(self) -> cv2.VideoCapture:
        # TCP interleaving for RTSP: UDP loses packets on busy hosts and gives grey frames.
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        # The read timeout is the stall timeout: one grab that blocks that long is a stall (see _read).
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.reconnect.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.reconnect.stall_timeout_s * 1000)]
        return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)

    def _fps(self, cap: cv2.VideoCapture) -> float:
        if self.cam.fps:
            return float(self.cam.fps)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not 1.0 <= fps <= 240.0:
            log.warning("camera %s reports fps %.3g; using %.0f (set cameras[].fps to override)",
                        self.name, fps, _FALLBACK_FPS)
            return _FALLBACK_FPS
        return fps

    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopped; True when stopped."""
        return self._stop.wait(seconds)

    def _run(self) -> None:
        is_file = self.cam.is_file
        first = True
        looped = False
        while not self._stop.is_set():
            if not first and not looped:
                self.counters.reconnects += 1
            first = False
            if is_file and not Path(self.url).is_file():
                log.error("camera %s: file not found: %s", self.name, self.url)
                self._status(CameraStatus.OFFLINE, f"file not found: {self.url}")
                return
            if not looped:  # a looping file restarts silently: it never went away
                self._status(CameraStatus.CONNECTING, "")
            looped = False
            cap = self._open()
            try:
                if not cap.isOpened():
                    reason = (f"cannot open or decode file {self.url}" if is_file
                              else f"cannot open stream {redact(self.url)}: "
                                   f"{open_failure_cause(self.url, self.reconnect.open_timeout_s)}")
                    log.error("camera %s: %s", self.name, reason)
                    self._status(CameraStatus.OFFLINE, reason)
                    if is_file:
                        return  # a file that does not open will not get better
                    if self._wait(self.backoff.next_delay()):
                        return
                    continue
                outcome = self._read(cap, is_file)
            except ZoneError as exc:
                # Its pixel zones do not fit the frames: this camera's config is wrong and no reconnect fixes
                # it. The camera stops with the error as its status reason; the other cameras go on.
                self.segmenter.abandon()
                log.error("camera %s: config error: %s", self.name, exc)
                self._status(CameraStatus.OFFLINE, f"config error: {exc}")
                return
            finally:
                cap.release()
            if outcome == "stopped":
                return
            if outcome == "ended":
                self._status(CameraStatus.ENDED, "end of file")
                return
            if outcome == "looped":
                looped = True
                continue
            # "lost": unexpected end or stall on a live stream, or a file that broke before its first frame.
            reason = outcome[len("lost:"):]
            log.warning("camera %s: %s; reconnecting", self.name, reason)
            self._status(CameraStatus.OFFLINE, reason)
            if is_file and reason.startswith("no frame"):
                return
            if self._wait(self.backoff.next_delay()):
                return

    def _read(self, cap: cv2.VideoCapture, is_file: bool) -> str:
        seg, counters = self.segmenter, self.counters
        fps = self._fps(cap)
        seg.start_stream(fps)
        native = is_file and self.cam.rate == "native"
        period = 1.0 / fps
        stall = self.reconnect.stall_timeout_s
        t0 = time.monotonic()
        # Progress, not mere return values: OpenCV's grab() returns True twice after its read timeout
        # (measured: a SIGSTOPped RTSP server was noticed after 3x stall_timeout_s), and a stray frame every
        # few seconds is not a live stream. A grab that took about the read timeout is not a frame; a stream
        # without a complete segment for stall_timeout_s + one segment is stalled.
        last_frame = last_segment = t0
        index = seg.index
        n = 0
        while not self._stop.is_set():
            if native:
                delay = t0 + n * period - time.monotonic()
                if delay > 0 and self._wait(delay):
                    break
            g0 = time.monotonic()
            ok = cap.grab()
            now = time.monotonic()
            if not ok:
                if n == 0:
                    return "lost:no frame could be decoded" if is_file else "lost:stream gave no frame"
                if is_file:
                    t = time.time()
                    if self.cam.loop:
                        return "looped"  # reopened: the partial segment is dropped, numbering continues
                    seg.flush_partial(t)
                    return "ended"
                seg.abandon()
                gap = now - last_frame
                if gap >= 0.9 * stall:
                    return f"lost:stream stalled (no frame for {gap:.0f} s)"
                return f"lost:stream ended: the connection closed ({gap:.1f} s after the last frame)"
            if not is_file:
                if now - g0 < 0.9 * stall:
                    last_frame = now
                elif now - last_frame >= stall:
                    seg.abandon()
                    return f"lost:stream stalled (no frame for {now - last_frame:.0f} s)"
                if now - last_segment >= stall + seg.segment_seconds:
                    seg.abandon()
                    return (f"lost:stream stalled (no complete segment for {now - last_segment:.0f} s: "
                            f"{n} frames in {now - t0:.0f} s)")
            t = time.time()
            if n == 0:
                self.backoff.reset()
                self._status(CameraStatus.ONLINE, "")  # no-op when unchanged (a looping file)
            frame = None
            if seg.wants():
                ok, frame = cap.retrieve()
                if not ok:
                    frame = None
            seg.push(frame, t)
            if seg.index != index:
                index, last_segment = seg.index, now
            counters.frames += 1
            n += 1
        seg.abandon()
        return "stopped"


def open_failure_cause(url: str, timeout_s: float) -> str:
    """Why a stream does not open, as FFmpeg says it (404, connection refused, unauthorized, timeout).

    OpenCV only reports "not opened"; the cause is in FFmpeg's stderr. PyAV's open raises FFmpeg's error
    with its message, so one bounded probe names it. Never raises.
    """
    parsed = urlparse(url)
    if parsed.hostname:
        try:
            socket.getaddrinfo(parsed.hostname, parsed.port or None)
        except (socket.gaierror, UnicodeError) as exc:
            return f"cannot resolve host {parsed.hostname} ({getattr(exc, 'strerror', None) or exc})"
        except OSError:
            pass
    try:
        import av

        options = {"rtsp_transport": "tcp"} if parsed.scheme.startswith("rtsp") else {}
        container = av.open(url, options=options, timeout=(timeout_s, timeout_s))
        container.close()
    except Exception as exc:  # noqa: BLE001 - any failure here is the answer we want
        cause = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError) or "timed out" in cause.lower():
            return f"timeout after {timeout_s:g} s ({cause})"
        return redact(str(cause))
    return "FFmpeg opens it but OpenCV could not (unsupported codec?)"


class FramelessSource(_ThreadSource):
    """Segments without frames (frameless://<n_frames>?fps=30): replay backends answer them by index.

    rate "fast" emits as fast as the pipeline accepts; "native" paces segments at the stream rate.
    """

    def __init__(self, cam: CameraConfig, *, segmenter: FrameSink, counters: CameraCounters,
                 on_status: StatusCallback, restart: BackoffPolicy | None = None) -> None:
        super().__init__(cam, segmenter=segmenter, counters=counters, on_status=on_status, restart=restart)
        self.n_frames, self.fps = frameless_spec(cam.url)
        if cam.fps:
            self.fps = float(cam.fps)

    def _run(self) -> None:
        seg = self.segmenter
        seg.start_stream(self.fps)
        self._status(CameraStatus.ONLINE, "")
        t0 = time.monotonic()
        n = 0
        while not self._stop.is_set() and (self.n_frames is None or n < self.n_frames):
            if self.cam.rate == "native" and n % seg.seg_len == 0:
                delay = t0 + n / self.fps - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
            seg.push(None, time.time())
            self.counters.frames += 1
            n += 1
        if self._stop.is_set():
            seg.abandon()
            return
        seg.flush_partial(time.time())
        self._status(CameraStatus.ENDED, "end of stream")
