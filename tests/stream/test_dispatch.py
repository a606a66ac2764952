"""Dispatch alone: the open-alert record from typed events, unrounded latency, snapshots off the web's pool."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from corevad.alerts import Alert, AlertEvent
from corevad_stream.alert_state import OpenAlerts
from corevad_stream.dispatch import Dispatch
from corevad_stream.entities import ScoringOutput
from corevad_stream.messages import AlertEventRecord, Message, ScoreRecord


def _alert(end_time: float | None = None) -> Alert:
    return Alert(id="c-r-0", camera="c", start_index=0, start_time=1.0, peak_index=0, peak_score=0.9, score=0.9,
                 last_index=0, explanation=("a fight",), end_time=end_time, end_index=None if end_time is None else 3,
                 end_reason=None if end_time is None else "end of stream")


class _NoDefaultPool(concurrent.futures.ThreadPoolExecutor):
    """The loop's default pool (the one the HTTP API's reads use), made unusable: nothing may wait on it."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        raise AssertionError("the scoring path used the default thread pool")


async def test_events_keep_the_open_alert_record_and_scores_feed_latency_unrounded(tmp_path: Path) -> None:
    record = OpenAlerts(tmp_path / "s.sqlite3")
    record.load()
    published: list[Message] = []
    latencies: list[tuple[str, float]] = []
    dispatch = Dispatch(publish=published.append, open_alerts=record,
                        observe_latency=lambda cam, s: latencies.append((cam, s)))
    new = Message("events", AlertEventRecord.of(AlertEvent("new", None, _alert())))
    score = Message("score", ScoreRecord(index=0, start=0.0, end=1.0, score=0.9, latency_s=0.123456789,
                                         model_s=0.1), camera="c")
    unanswered = Message("score", ScoreRecord(index=1, start=1.0, end=2.0, available=False, latency_s=5.0,
                                              model_s=0.1, error="timeout", reason="slow"), camera="c")
    await dispatch("c", ScoringOutput(messages=[score, unanswered, new]), snapshot_quality=80)
    assert latencies == [("c", 0.123456789)]  # unrounded, and an unanswered segment is no latency sample
    assert published[:2] == [score, unanswered]
    # The event goes out with its notification fields (dispatch adds them last), otherwise as it came.
    sent = published[2].payload
    assert isinstance(sent, AlertEventRecord) and sent.notice is not None
    assert dataclasses.replace(sent, notice=None) == new.payload
    assert (sent.notice.title, sent.notice.severity, sent.notice.event_url) == ("c: a fight", "medium", None)
    assert record.load() == {"c": _alert().to_dict()}  # committed: a crash now leaves it to be ended
    end = Message("events", AlertEventRecord.of(AlertEvent("end", _alert(), _alert(end_time=4.0))))
    await dispatch("c", ScoringOutput(messages=[end]), snapshot_quality=80)
    assert record.load() == {}
    dispatch.close()
    record.close()


async def test_a_snapshot_is_encoded_on_the_dispatch_thread_never_on_the_default_pool(tmp_path: Path) -> None:
    asyncio.get_running_loop().set_default_executor(_NoDefaultPool())
    record = OpenAlerts(tmp_path / "s.sqlite3")
    published: list[Message] = []
    threads: list[str] = []
    dispatch = Dispatch(publish=published.append, open_alerts=record)
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, 32:] = (0, 0, 255)  # right half red (BGR)

    import corevad_stream.dispatch as dispatch_module

    real = dispatch_module.encode_jpeg

    def spy(f: np.ndarray, q: int, **kwargs: Any) -> bytes | None:
        threads.append(threading.current_thread().name)
        return real(f, q, **kwargs)

    dispatch_module.encode_jpeg = spy  # type: ignore[assignment]
    try:
        await dispatch("c", ScoringOutput(snapshot=frame, snapshot_alert="c-r-0"), snapshot_quality=90)
    finally:
        dispatch_module.encode_jpeg = real  # type: ignore[assignment]
        dispatch.close()
        record.close()
    [snap] = published
    assert snap.kind == "snapshot" and snap.alert_id == "c-r-0" and snap.retain and isinstance(snap.payload, bytes)
    decoded = cv2.imdecode(np.frombuffer(snap.payload, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == frame.shape and decoded[24, 50, 2] > 200 and decoded[24, 10, 2] < 50
    assert threads and threads[0].startswith("corevad[dispatch].snapshot")
