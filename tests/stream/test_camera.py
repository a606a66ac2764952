"""One camera's pipeline alone: real CameraScoring, results fed through its queue, its stop and its reports."""

from __future__ import annotations

import asyncio
import logging

import pytest
from stream_doubles import camera_pipeline

from corevad.prompt import parse_answer
from corevad_stream.camera import CameraPipeline
from corevad_stream.entities import CameraStatus, ScoringOutput, SegmentJob, SegmentResult
from corevad_stream.messages import AlertEventRecord, ModelRecord, ScoreRecord
from corevad_stream.ring import FrameRing

ANOMALY = "Anomalous scenes. A man climbs the fence."


def _pipeline(*, ring: FrameRing | None = None) -> CameraPipeline:
    return camera_pipeline("c", ring=ring, refinement={"smooth_length": 1},
                           alerts={"open_threshold": 0.6, "close_threshold": 0.4})


def _result(i: int, text: str = ANOMALY, error: str | None = None) -> SegmentResult:
    job = SegmentJob(camera="c", index=i, start=float(i), end=i + 1.0, clock=i + 1.0, n_frames=30)
    return SegmentResult(job, parse_answer(text), None, None, None, None, 0.05, error=error,
                         error_kind=None if error is None else "timeout")


async def test_results_are_scored_in_order_and_the_marker_ends_the_open_alert_with_the_stop_reason() -> None:
    cam = _pipeline()
    outs: list[ScoringOutput] = []

    async def publish(out: ScoringOutput) -> None:
        outs.append(out)

    for i in range(3):
        cam.cut(_result(i).job)
    assert cam.busy() and cam.counters.segments == 3
    task = asyncio.create_task(cam.run(publish))
    for i in range(3):
        await cam.results.put(_result(i))
    cam.stop_reason = "camera removed"
    await cam.results.put(SegmentJob.end_marker("c"))
    await asyncio.wait_for(task, 10)
    assert cam.finished.is_set() and not cam.busy()
    msgs = [m for out in outs for m in out.messages]
    assert [m.payload.index for m in msgs if isinstance(m.payload, ScoreRecord)] == [0, 1, 2]
    events = [m.payload for m in msgs if isinstance(m.payload, AlertEventRecord)]
    assert events[0].type == "new" and events[-1].type == "end"
    assert events[-1].after_json()["end_reason"] == "camera removed"
    first_model = next(m for m in msgs if isinstance(m.payload, ModelRecord))
    assert first_model.camera == "c" and first_model.payload.state == "ok"  # type: ignore[union-attr]
    assert cam.overview()["open_threshold"] == 0.6 and cam.overview()["state"] == "unknown"  # finished


async def test_an_unanswered_segment_marks_the_cameras_model_and_is_published_as_unavailable() -> None:
    cam = _pipeline()
    outs: list[ScoringOutput] = []

    async def publish(out: ScoringOutput) -> None:
        outs.append(out)

    task = asyncio.create_task(cam.run(publish))
    await cam.results.put(_result(0, error="no answer in 30 s"))
    await cam.results.put(SegmentJob.end_marker("c"))
    await asyncio.wait_for(task, 10)
    msgs = [m for out in outs for m in out.messages]
    [score] = [m.payload for m in msgs if isinstance(m.payload, ScoreRecord)]
    assert score.available is False and score.error == "timeout" and score.to_json()["score"] is None
    assert cam.counters.model_state == "degraded" and cam.counters.unanswered == 1


async def test_watchdog_questions_stall_only_a_busy_camera_and_overdue_needs_an_open_alert() -> None:
    cam = _pipeline()
    assert cam.stalled(100.0) == [] and cam.overdue() is None  # nothing in flight, no alert
    cam.cut(_result(0).job)
    msgs = cam.stalled(100.0)
    assert msgs[0].kind == "model" and cam.counters.model_state == "down"


async def test_settle_ends_what_is_open_when_the_marker_never_comes() -> None:
    cam = _pipeline()
    outs: list[ScoringOutput] = []

    async def publish(out: ScoringOutput) -> None:
        outs.append(out)

    cam.task = asyncio.create_task(cam.run(publish))
    for i in range(3):
        await cam.results.put(_result(i))
    while cam.counters.scored < 3:
        await asyncio.sleep(0.01)
    await cam.settle(publish, reason="monitor stopped", timeout=0.2)  # no marker: the model never finished
    assert cam.finished.is_set()
    await asyncio.gather(cam.task, return_exceptions=True)
    assert cam.task.cancelled()  # the scoring task waited for a marker that never came
    ends = [m.payload for out in outs for m in out.messages
            if isinstance(m.payload, AlertEventRecord) and m.payload.type == "end"]
    assert len(ends) == 1 and ends[0].after_json()["end_reason"] == "monitor stopped"
    change = cam.went_offline("monitor stopped")
    assert change is not None and change.status is CameraStatus.OFFLINE
    assert cam.went_offline("monitor stopped") is None  # already offline: nothing more to say


def test_a_segment_without_a_ring_slot_is_counted_and_said_unless_the_camera_is_stopping(
        caplog: pytest.LogCaptureFixture) -> None:
    ring = FrameRing(1, 1, size=4)
    cam = _pipeline(ring=ring)
    with caplog.at_level(logging.WARNING):
        cam.lost_no_slot(7)
        assert cam.counters.drops == 1 and cam.counters.segments == 1 and cam.no_slot == 1
        assert "no free frame slot" in caplog.text and "segment 7" in caplog.text
        caplog.clear()
        cam.stop_source("monitor stopped")  # closes the ring
        cam.lost_no_slot(8)
    assert cam.counters.drops == 2 and cam.no_slot == 1 and caplog.text == ""


def test_a_disarmed_camera_keeps_its_card_picture_live_and_submits_nothing() -> None:
    import numpy as np

    from corevad_stream.arming import Arming

    cam = _pipeline()
    cam.set_arming(Arming(False, "disarmed", None, "manual"))
    released: list[int] = []
    submitted: list[SegmentJob] = []
    frames = [np.full((4, 6, 3), i, dtype=np.uint8) for i in range(2)]
    for i, frame in enumerate(frames):
        job = SegmentJob(camera="c", index=i, start=float(i), end=i + 1.0, clock=i + 1.0, n_frames=30,
                         full_frame_bgr=frame, _release=lambda i=i: released.append(i))
        cam.admit(job, submitted.append)
    assert submitted == [] and released == [0, 1] and cam.counters.disarmed_skipped == 2
    assert cam.latest_frame is frames[1]  # the newest frame, though no segment went to the model
