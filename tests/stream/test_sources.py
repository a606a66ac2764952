"""Sources: backoff, frame-less spec, native-rate pacing vs fast replay on a real file, loop without reconnects."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from corevad_stream.config import CameraConfig, ReconnectConfig
from corevad_stream.entities import CameraCounters, CameraStatus, SegmentJob, StatusChange
from corevad_stream.ring import FrameRing
from corevad_stream.segmenter import Segmenter
from corevad_stream.sources import VideoSource, frameless_spec


def test_frameless_spec() -> None:
    assert frameless_spec("frameless://1412?fps=25") == (1412, 25.0)
    assert frameless_spec("frameless://") == (None, 30.0)


def run_source(video: Path, **cam: object) -> tuple[list[SegmentJob], list[StatusChange], CameraCounters, float]:
    jobs: list[SegmentJob] = []
    statuses: list[StatusChange] = []
    counters = CameraCounters()
    ring = FrameRing(64, 8, size=32)
    seg = Segmenter("f", ring=ring, frames_per_segment=8, emit=jobs.append)
    src = VideoSource(CameraConfig(name="f", url=str(video), **cam), segmenter=seg, counters=counters,  # type: ignore[arg-type]
                      on_status=statuses.append, reconnect=ReconnectConfig())
    done = threading.Event()
    src.on_exit = done.set
    t0 = time.monotonic()
    src.start()
    assert done.wait(120)
    return jobs, statuses, counters, time.monotonic() - t0


def test_native_rate_paces_a_file_like_a_live_camera(video_factory) -> None:  # type: ignore[no-untyped-def]
    video = video_factory("native.mp4", seconds=3, size=(64, 48))
    jobs, statuses, counters, took = run_source(video, rate="native")
    assert [j.index for j in jobs] == [0, 1, 2] and counters.frames == 90
    assert took >= 2.8  # 3 s of video takes 3 s
    starts = [j.start for j in jobs]
    assert all(0.9 < b - a < 1.3 for a, b in zip(starts, starts[1:], strict=False))  # wall-clock timestamps
    assert [s.status for s in statuses] == [CameraStatus.CONNECTING, CameraStatus.ONLINE, CameraStatus.ENDED]


def test_fast_rate_and_loop(video_factory) -> None:  # type: ignore[no-untyped-def]
    video = video_factory("fast.mp4", seconds=4, size=(64, 48))
    jobs, _, _, took = run_source(video, rate="fast")
    assert len(jobs) == 4 and took < 4.0
    assert jobs[-1].clock == pytest.approx(4.0)


def test_looping_file_keeps_numbering_without_reconnects(video_factory) -> None:  # type: ignore[no-untyped-def]
    video = video_factory("loop.mp4", seconds=2, size=(64, 48))
    jobs: list[SegmentJob] = []
    statuses: list[StatusChange] = []
    counters = CameraCounters()
    seg = Segmenter("l", ring=None, frames_per_segment=8, emit=jobs.append)
    src = VideoSource(CameraConfig(name="l", url=str(video), rate="fast", loop=True), segmenter=seg,
                      counters=counters, on_status=statuses.append, reconnect=ReconnectConfig())
    src.start()
    deadline = time.monotonic() + 60
    while len(jobs) < 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    src.stop()
    src.join(30)
    assert [j.index for j in jobs[:7]] == list(range(7))
    assert counters.reconnects == 0 and [s.status for s in statuses][:2] == [CameraStatus.CONNECTING,
                                                                            CameraStatus.ONLINE]
    assert CameraStatus.OFFLINE not in [s.status for s in statuses]


def test_demo_sample_clip_is_generated_once_on_first_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    from corevad_stream import sample

    monkeypatch.setenv("COREVAD_CACHE", str(tmp_path))
    calls: list[Path] = []
    real = sample.make_clip

    def short(path: Path, **kw: object) -> Path:
        calls.append(path)
        return real(path, seconds=1.0)

    monkeypatch.setattr(sample, "make_clip", short)
    path = sample.ensure_sample_clip("demo")
    assert path == tmp_path / "samples" / "demo.mp4" and sample.ensure_sample_clip("demo") == path
    assert len(calls) == 1
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 480)
    n = 0
    while cap.grab():
        n += 1
    assert n == 30


@pytest.mark.slow
def test_a_camera_past_2000_failed_reconnects_still_recovers(rtsp_server_factory, test_video: Path) -> None:  # type: ignore[no-untyped-def]
    from corevad_stream.testing import free_port

    port = free_port()
    statuses: list[StatusChange] = []
    counters = CameraCounters()
    seg = Segmenter("c", ring=FrameRing(8, 8, size=32), frames_per_segment=8, emit=lambda job: job.release())
    src = VideoSource(CameraConfig(name="c", url=f"rtsp://127.0.0.1:{port}/cam"), segmenter=seg, counters=counters,
                      on_status=statuses.append,
                      reconnect=ReconnectConfig(initial_s=0.001, max_s=0.05, open_timeout_s=2, stall_timeout_s=2))
    src.backoff.attempt = 2000  # 2.0**2000 overflowed a float and killed the thread before the one Backoff
    src.start()
    try:
        deadline = time.monotonic() + 30
        while counters.reconnects < 20 and time.monotonic() < deadline:  # still trying, past attempt 2,000
            time.sleep(0.05)
        assert counters.reconnects >= 20 and src.alive and src.backoff.attempt > 2000
        rtsp_server_factory(file=test_video, port=port)
        deadline = time.monotonic() + 30
        while counters.frames < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counters.frames >= 30 and statuses[-1].status is CameraStatus.ONLINE
        assert counters.source_restarts == 0  # recovered by reconnecting, not by crashing
    finally:
        src.stop()
        src.join(10)


def test_a_crashing_source_is_restarted_by_its_supervisor_and_counted() -> None:
    from corevad.backoff import BackoffPolicy
    from corevad_stream.sources import FramelessSource

    class Flaky(FramelessSource):
        crashes = 0

        def _run(self) -> None:
            if Flaky.crashes < 2:
                Flaky.crashes += 1
                raise RuntimeError("decoder bug")
            super()._run()

    jobs: list[SegmentJob] = []
    statuses: list[StatusChange] = []
    counters = CameraCounters()
    exits: list[float] = []
    seg = Segmenter("f", ring=None, frames_per_segment=8, emit=jobs.append)
    src = Flaky(CameraConfig(name="f", url="frameless://90", rate="fast"), segmenter=seg, counters=counters,
                on_status=statuses.append, restart=BackoffPolicy(initial_s=0.01, max_s=0.05, jitter=0))
    src.on_exit = lambda: exits.append(time.monotonic())
    src.start()
    src.join(10)
    assert counters.source_restarts == 2 and len(exits) == 1  # one exit: when the stream really ended
    crashed = [s.reason for s in statuses if s.status is CameraStatus.OFFLINE]
    assert crashed == [f"source crashed: RuntimeError: decoder bug; restart {k}" for k in (1, 2)]
    assert statuses[-1].status is CameraStatus.ENDED and [j.index for j in jobs] == [0, 1, 2]
