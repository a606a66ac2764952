"""The App wired end to end with doubles of our model protocols: overload, failures, garbled answers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from stream_doubles import ANOMALOUS, GARBLED, NORMAL, HashEncoder, ScriptedBackend, stream_config

from corevad_stream import App, MemorySink
from corevad_stream.sinks.jsonl import JsonlSink, read_jsonl


async def test_model_three_times_slower_than_real_time_keeps_memory_and_latency_bounded() -> None:
    # 3 cameras at 5 segments/s (0.2 s segments); the model needs 0.2 s per segment -> 3x too slow.
    seg_s, model_s = 0.2, 0.2
    cams = [{"name": f"c{i}", "url": "frameless://", "rate": "native"} for i in range(3)]
    cfg = stream_config(cams, runtime={"segment_seconds": seg_s, "max_batch": 1, "max_pending_per_camera": 2})
    backend = ScriptedBackend(delay_s=model_s)
    sink = MemorySink()
    pending_seen = []
    async with App(cfg, backend=backend, sinks=[sink]) as app:
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline:
            pending_seen.append(app.batcher.pending())
            await asyncio.sleep(0.05)
    stats = app.stats()  # after shutdown: in-flight segments were flushed through the model
    cams_stats = stats["cameras"]
    assert max(pending_seen) <= 3 * 2  # never more than the per-camera bound
    drops = {c: s["drops"] for c, s in cams_stats.items()}
    scored = {c: s["scored"] for c, s in cams_stats.items()}
    assert all(d > 0 for d in drops.values()), drops
    for c, s in cams_stats.items():  # every segment cut is either scored or counted as dropped
        assert s["segments"] == s["scored"] + s["drops"], (c, s)
    assert min(scored.values()) >= max(scored.values()) // 2 - 1, scored  # fair share of the model
    lat = [m.payload["latency_s"] for m in sink.of("score")]  # type: ignore[index]
    # Bounded: (pending bound + in flight) x model time x cameras, with slack for a noisy machine.
    assert max(lat) < (2 + 1) * model_s * 3 + 2.0, max(lat)


async def test_garbled_answers_are_counted_and_scored_as_normal(tmp_path: Path) -> None:
    def answer(clip):  # type: ignore[no-untyped-def]
        return GARBLED if clip.index % 3 == 0 else (ANOMALOUS if clip.index % 3 == 1 else NORMAL)

    cfg = stream_config([{"name": "g", "url": "frameless://300", "rate": "fast", "overload_policy": "block"}],
                        refinement={"smooth_length": 1})
    sink = MemorySink()
    async with App(cfg, backend=ScriptedBackend(answer), sinks=[sink]) as app:
        await app.wait_finished(timeout=60)
        stats = app.stats()
    scores = sorted(sink.of("score", "g"), key=lambda m: m.payload["index"])  # type: ignore[index]
    assert len(scores) == 10 and stats["cameras"]["g"]["unparsed"] == 4  # segments 0, 3, 6, 9
    for m in scores:
        p = m.payload
        assert isinstance(p, dict)
        assert p["parsed"] == (p["index"] % 3 != 0)
        assert p["score"] == (1.0 if p["index"] % 3 == 1 else 0.0)  # unparsed -> label 0


async def test_bad_cameras_report_clear_errors_and_others_keep_running(tmp_path: Path, test_video: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    cams = [
        {"name": "good", "url": str(test_video), "rate": "fast", "overload_policy": "block"},
        {"name": "corrupt", "url": str(corrupt)},
        {"name": "missing", "url": str(tmp_path / "nope.mp4")},
        {"name": "unreachable", "url": "rtsp://user:secret@127.0.0.1:9/stream"},
    ]
    cfg = stream_config(cams)
    sink = MemorySink()
    async with App(cfg, backend=ScriptedBackend(), encoder=HashEncoder(), sinks=[sink]) as app:
        await asyncio.wait_for(app.cameras["good"].finished.wait(), 60)
        await sink.wait_for(lambda ms: any(m.kind == "status" and m.camera == "unreachable" and
                                           m.payload["state"] == "offline" for m in ms), 30)  # type: ignore[index]
        await asyncio.sleep(1.0)  # a retry or two of the unreachable camera
        stats = app.stats()
    assert stats["cameras"]["good"]["scored"] == 4  # the 4 s test video
    reasons = {m.camera: m.payload["reason"] for m in sink.of("status")  # type: ignore[index]
               if m.payload["state"] == "offline" and m.payload["reason"] != "monitor stopped"}  # type: ignore[index]
    assert "cannot open or decode file" in reasons["corrupt"] and str(corrupt) in reasons["corrupt"]
    assert "file not found" in reasons["missing"]
    assert "cannot open stream rtsp://***@127.0.0.1:9/stream" in reasons["unreachable"]
    assert stats["cameras"]["unreachable"]["reconnects"] >= 1
    assert "secret" not in repr([m.payload for m in sink.messages])


async def test_jsonl_sink_records_lifecycle_and_shutdown_publishes_offline(tmp_path: Path) -> None:
    cfg = stream_config([{"name": "j", "url": "frameless://", "rate": "native"}],
                        runtime={"segment_seconds": 0.1}, jsonl={"path": str(tmp_path / "out.jsonl")},
                        alerts={"open_threshold": 0.6, "close_threshold": 0.4, "close_after_s": 3, "cooldown_s": 10})
    backend = ScriptedBackend(lambda clip: ANOMALOUS if clip.index >= 3 else NORMAL)
    async with App(cfg, backend=backend) as app:
        while app.counters["j"].scored < 8:
            await asyncio.sleep(0.05)
    assert backend.closed is False  # models given by the caller stay the caller's
    recs = read_jsonl(tmp_path / "out.jsonl")
    topics = [r["topic"] for r in recs]
    assert topics[0] == "corevad/available" and recs[0]["payload"] == "online" and recs[0]["retain"]
    assert recs[-1]["topic"] == "corevad/available" and recs[-1]["payload"] == "offline"
    assert "corevad/j/score" in topics and "corevad/stats" in topics
    status = [r["payload"] for r in recs if r["topic"] == "corevad/j/status"]
    assert status[0]["status"] == "online" and status[-1] == {**status[-1], "status": "offline",
                                                              "reason": "monitor stopped"}
    events = [r["payload"] for r in recs if r["topic"] == "corevad/events"]
    assert events and events[0]["type"] == "new" and events[0]["before"] is None
    assert events[0]["after"]["explanation"] == ["A man smashes the shop window."]
    assert events[-1]["type"] == "end"  # an alert open at shutdown is ended, and says why
    assert events[-1]["after"]["end_reason"] == "monitor stopped"
    assert events[0]["after"]["id"].startswith(f"j-{app.run_id}-")
    states = [r["payload"] for r in recs if r["topic"] == "corevad/j/state"]
    # Truthful retained state: unknown until the first score, then normal, then the alert.
    assert states == ["unknown", "normal", "anomalous", "unknown"]  # unknown again once stopped


async def test_extra_sinks_are_entered_and_a_failing_sink_does_not_stop_others(tmp_path: Path) -> None:
    class Broken(MemorySink):
        async def send(self, message):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    good = JsonlSink(tmp_path / "x.jsonl")
    cfg = stream_config([{"name": "s", "url": "frameless://90", "rate": "fast", "overload_policy": "block"}])
    async with App(cfg, backend=ScriptedBackend(), sinks=[Broken(name="broken"), good]) as app:
        await app.wait_finished(timeout=30)
    assert app.publisher.errors > 0
    assert sum(r["kind"] == "score" for r in read_jsonl(tmp_path / "x.jsonl")) == 3


@pytest.mark.parametrize("policy", ["drop_oldest", "stride"])
async def test_live_policies_never_block_the_source(policy: str) -> None:
    cfg = stream_config([{"name": "p", "url": "frameless://3000", "rate": "fast", "overload_policy": policy}],
                        runtime={"max_pending_per_camera": 2, "max_batch": 1})
    async with App(cfg, backend=ScriptedBackend(delay_s=0.05)) as app:
        await app.wait_finished(timeout=60)
        c = app.stats()["cameras"]["p"]
    assert c["segments"] == 100 and c["drops"] > 50 and c["scored"] + c["drops"] == 100


async def test_the_last_stats_say_offline_and_jsonl_events_name_their_camera(tmp_path: Path) -> None:
    cfg = stream_config([{"name": "k", "url": "frameless://", "rate": "native"}],
                        jsonl={"path": str(tmp_path / "o.jsonl")}, refinement={"smooth_length": 1},
                        runtime={"segment_seconds": 0.1})
    async with App(cfg, backend=ScriptedBackend(lambda c: ANOMALOUS)) as app:
        while app.counters["k"].scored < 3:
            await asyncio.sleep(0.05)
    assert app.failed_cameras() == []  # stopped by us, not failed
    recs = read_jsonl(tmp_path / "o.jsonl")
    stats = [r["payload"] for r in recs if r["kind"] == "stats"]
    assert stats[-1]["cameras"]["k"]["status"] == "offline"
    assert all(r["camera"] == "k" for r in recs if r["kind"] == "events")
    assert [r["payload"] for r in recs if r["kind"] == "available"] == ["online", "offline"]


async def test_auto_features_use_clip_where_frames_exist_and_the_text_context_elsewhere(video_factory) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    class Sentences:  # a double of our TextEncoder protocol
        name, dim = "double", 4

        def encode_texts(self, texts):  # type: ignore[no-untyped-def]
            return np.tile(np.array([1.0, 0.0, 0.0, 0.0], np.float32), (len(texts), 1))

    video = video_factory("a.mp4", seconds=2, size=(64, 48))
    cfg = stream_config([{"name": "cam", "url": str(video), "rate": "fast", "overload_policy": "block"},
                         {"name": "replayed", "url": "frameless://60", "rate": "fast", "overload_policy": "block"}],
                        refinement={"text_context": True})  # use_features: auto (the default)
    sink = MemorySink()
    async with App(cfg, backend=ScriptedBackend(), encoder=HashEncoder(), text_encoder=Sentences(),
                   sinks=[sink]) as app:
        await app.wait_finished(timeout=60)
        cam, replayed = app.cameras["cam"].scoring, app.cameras["replayed"].scoring
    assert cam.use_features and not cam.text_context  # frames + CLIP: the paper's refinement
    assert replayed.text_context and not replayed.use_features  # no frames: the text context
    assert len(sink.of("score", "cam")) == 2 and len(sink.of("score", "replayed")) == 2
