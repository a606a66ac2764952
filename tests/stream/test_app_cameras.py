"""Cameras that come and go while the app runs, and the lossless `block` policy, with real file cameras."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from stream_doubles import ANOMALOUS, NORMAL, ScriptedBackend, stream_config

from corevad_stream import App, MemorySink
from corevad_stream.config import CameraConfig


async def _until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    async def loop() -> None:
        while not pred():
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(loop(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_a_camera_added_at_run_time_starts_scoring_and_a_removed_one_stops_and_ends_its_alert(
        video_factory: Callable[..., Path]) -> None:
    clip = video_factory("loop.mp4", seconds=2.0)
    # "door" sees an anomaly from its third segment on; "yard" stays normal.
    backend = ScriptedBackend(lambda c: ANOMALOUS if c.source == "door" and c.index >= 2 else NORMAL)
    cfg = stream_config([{"name": "yard", "url": str(clip), "rate": "native", "loop": True}],
                        refinement={"smooth_length": 1},
                        alerts={"open_threshold": 0.6, "close_threshold": 0.4, "close_after_s": 30})
    sink = MemorySink()
    async with App(cfg, backend=backend, sinks=[sink]) as app:
        await _until(lambda: app.counters["yard"].scored >= 1, 30, "yard's first score")
        door = CameraConfig(name="door", url=str(clip), rate="native", loop=True)
        await app.add_camera(door)
        await _until(lambda: any(m.kind == "events" and m.payload["type"] == "new"  # type: ignore[index]
                                 for m in sink.messages), 40, "door's alert")
        assert set(app.cameras) == {"yard", "door"}
        await app.remove_camera("door")
        assert set(app.cameras) == {"yard"} and "door" not in app.stats()["cameras"]
        door_scores = len(sink.of("score", "door"))
        yard_before = app.counters["yard"].scored
        await _until(lambda: app.counters["yard"].scored >= yard_before + 2, 30, "yard keeps scoring")
        assert len(sink.of("score", "door")) == door_scores  # the removed camera scores nothing more
        overview = {c["name"] for c in app.camera_overview()}
    assert overview == {"yard"}
    events = [m.payload for m in sink.of("events")]
    door_events = [e for e in events if e["after"]["camera"] == "door"]  # type: ignore[index]
    assert door_events[0]["type"] == "new" and door_events[-1]["type"] == "end"  # type: ignore[index]
    assert door_events[-1]["after"]["end_reason"] == "camera removed"  # type: ignore[index]
    status = [m.payload for m in sink.of("status", "door")]
    assert "online" in [s["state"] for s in status]  # type: ignore[index]
    assert status[-1]["state"] == "offline" and status[-1]["reason"] == "camera removed"  # type: ignore[index]
    assert [m.payload for m in sink.of("state", "door")][-1] == "unknown"  # nobody watches it any more
    # yard was never disturbed: it ran until the app stopped, and stopped like any camera.
    assert [m.payload for m in sink.of("status", "yard")][-1]["reason"] == "monitor stopped"  # type: ignore[index]


async def test_adding_a_camera_twice_or_removing_an_unknown_one_is_refused(test_video: Path) -> None:
    cfg = stream_config([{"name": "a", "url": str(test_video), "rate": "native", "loop": True}])
    async with App(cfg, backend=ScriptedBackend()) as app:
        with pytest.raises(ValueError, match="already running"):
            await app.add_camera(CameraConfig(name="a", url=str(test_video)))
        with pytest.raises(ValueError, match="nope"):
            await app.remove_camera("nope")


async def test_block_is_lossless_for_a_fast_file_camera_even_when_the_frame_ring_is_full(
        video_factory: Callable[..., Path]) -> None:
    # 12 one-second segments read as fast as possible; one segment may wait per camera, so the ring has
    # 2 x 1 + 2 = 4 slots while a slow model holds whole batches of 4: the ring runs dry again and again.
    # Before the fix 46 of 60 such segments were dropped without a log line.
    clip = video_factory("fast.mp4", seconds=12.0)
    cfg = stream_config([{"name": "f", "url": str(clip), "rate": "fast", "overload_policy": "block"}],
                        runtime={"max_pending_per_camera": 1, "max_batch": 4})
    backend = ScriptedBackend(delay_s=0.1)
    sink = MemorySink()
    async with App(cfg, backend=backend, sinks=[sink]) as app:
        await app.wait_finished(timeout=120)
        stats = app.stats()["cameras"]["f"]
    assert app.cameras["f"].ring is not None and app.cameras["f"].ring.slots == 4
    assert stats["drops"] == 0 and stats["segments"] == 12 and stats["scored"] == 12, stats
    assert sorted(m.payload["index"] for m in sink.of("score", "f")) == list(range(12))  # type: ignore[index]
