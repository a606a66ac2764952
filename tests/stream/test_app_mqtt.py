"""End to end: a video file -> runtime (replay answers + tiny CLIP) -> real Mosquitto -> aiomqtt subscriber."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from stream_doubles import stream_config

from corevad.models import ClipConfig, ReplayBackend, load_clip
from corevad.models.tiny import register_tiny_clip
from corevad_stream import App


@pytest.mark.slow
async def test_alert_lifecycle_scores_state_status_and_snapshot_reach_the_broker(
        mosquitto, mqtt_collector, video_factory: Callable[..., Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    video = video_factory("street.mp4", seconds=9, size=(160, 120))
    answers = (["Normal scenes.\nCars pass on the road."] * 2
               + ["Anomalous scenes.\nTwo men fight next to a car."] * 3
               + ["Normal scenes.\nCars pass on the road."] * 4)
    sub = await mqtt_collector(mosquitto, topics=("t/#",))
    cfg = stream_config(
        # Native rate, as a live camera: while the MQTT link is still coming up, the sink keeps only the
        # latest non-event message per topic, so a fast replay could race the first connection.
        [{"name": "street", "url": str(video), "rate": "native"}],
        mqtt={"host": mosquitto.host, "port": mosquitto.port, "prefix": "t",
              "outbox": {"path": str(tmp_path / "outbox.sqlite")}},
        refinement={"use_features": False, "smooth_length": 1},
        alerts={"snapshot": True, "close_after_s": 2, "cooldown_s": 0},
        runtime={"frame_size": 64})
    clip = load_clip(ClipConfig(model=register_tiny_clip(), pretrained=None, device="cpu", dtype="float32"))
    async with App(cfg, backend=ReplayBackend({"street": answers}), encoder=clip) as app:
        await app.wait_finished(timeout=120)
        await sub.wait_for(lambda: len(sub.on("t/street/score")) >= 9, timeout=30, what="9 scores")
    await sub.wait_for(lambda: sub.payloads("t/available")[-1:] == [b"offline"], timeout=30, what="offline")

    scores = [json.loads(p) for p in sub.payloads("t/street/score")]
    assert [s["index"] for s in scores] == list(range(9))
    assert [s["label"] for s in scores] == [0] * 2 + [1] * 3 + [0] * 4
    events = [json.loads(p) for p in sub.payloads("t/events")]
    assert [e["type"] for e in events] == ["new", "end"]
    new, end = events
    assert new["before"] is None and new["after"]["camera"] == "street" and new["after"]["start_segment"] == 2
    assert new["after"]["explanation"] == ["Two men fight next to a car."]
    assert end["before"]["active"] is True and end["after"]["active"] is False
    assert end["after"]["end_segment"] == 6 and end["after"]["peak_score"] == 1.0  # 2 s below 0.4 after 4
    # Retained state: normal after the alert, unknown once the file ended (nobody watches any more).
    assert sub.payloads("t/street/state")[-3:] == [b"anomalous", b"normal", b"unknown"]
    status = [json.loads(p) for p in sub.payloads("t/street/status")]
    # Retained topics carry the latest value: a "connecting" superseded before the link was up is skipped.
    assert [s["state"] for s in status][-2:] == ["online", "ended"]
    assert [s["status"] for s in status][-2:] == ["online", "offline"]
    assert all(m.retain is False for m in sub.on("t/street/score"))
    snap = sub.payloads("t/street/snapshot")
    assert snap and snap[-1][:2] == b"\xff\xd8"  # a JPEG
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(snap[-1], np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (120, 160, 3)  # the camera's resolution, not the model's 64x64 square input
    assert b"online" in sub.payloads("t/available")


@pytest.mark.slow
async def test_broker_outage_mid_run_delays_alerts_but_loses_none(mosquitto, mqtt_collector, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from stream_doubles import ScriptedBackend

    from corevad_stream import MemorySink

    def answer(clip):  # type: ignore[no-untyped-def]
        return "Anomalous scenes.\nA fight." if clip.index % 10 in (3, 4) else "Normal scenes.\nA street."

    sub = await mqtt_collector(mosquitto, topics=("o/events",))
    cfg = stream_config([{"name": "cam", "url": "frameless://", "rate": "native"}],
                        mqtt={"host": mosquitto.host, "port": mosquitto.port, "prefix": "o",
                              "outbox": {"path": str(tmp_path / "outbox.sqlite")},
                              "reconnect": {"min_delay_s": 0.1, "max_delay_s": 0.5}},
                        refinement={"smooth_length": 1}, alerts={"close_after_s": 0, "cooldown_s": 0},
                        runtime={"segment_seconds": 0.1})
    produced = MemorySink()
    async with App(cfg, backend=ScriptedBackend(answer), sinks=[produced]):
        await produced.wait_for(lambda ms: sum(m.kind == "events" for m in ms) >= 2, 30)
        await asyncio.to_thread(mosquitto.stop)
        n_before = sum(m.kind == "events" for m in produced.messages)
        await produced.wait_for(lambda ms: sum(m.kind == "events" for m in ms) >= n_before + 4, 30)
        await asyncio.to_thread(mosquitto.start)
        await produced.wait_for(lambda ms: sum(m.kind == "events" for m in ms) >= n_before + 8, 30)
    want = [(m.payload["type"], m.payload["after"]["id"]) for m in produced.of("events")]  # type: ignore[index]

    def received() -> list[tuple[str, str]]:
        # QoS 1 is at-least-once: an event in flight when the broker died may arrive twice; keep the first.
        seen = [(e["type"], e["after"]["id"]) for e in (json.loads(p) for p in sub.payloads("o/events"))]
        return list(dict.fromkeys(seen))

    await sub.wait_for(lambda: len(received()) >= len(want), timeout=60, what=f"{len(want)} events")
    assert received() == want  # every event, in order, despite the outage
