"""A real RTSP camera (GStreamer server fixture): the runtime recovers when the server dies and comes back."""

from __future__ import annotations

import asyncio
import time

import pytest
from stream_doubles import HashEncoder, ScriptedBackend, stream_config

from corevad_stream import App, MemorySink
from corevad_stream.messages import Message


def statuses(sink: MemorySink, cam: str) -> list[str]:
    """The camera's published states: connecting / online / offline / ended."""
    return [m.payload["state"] for m in sink.of("status", cam)]  # type: ignore[index]


async def wait_for(pred, timeout: float) -> None:  # type: ignore[no-untyped-def]
    async def loop() -> None:
        while not pred():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(loop(), timeout)


@pytest.mark.slow
async def test_camera_recovers_after_the_rtsp_server_is_killed_and_restarted(rtsp_server) -> None:  # type: ignore[no-untyped-def]
    cfg = stream_config([{"name": "door", "url": rtsp_server.url}])
    sink = MemorySink()
    async with App(cfg, backend=ScriptedBackend(), encoder=HashEncoder(), sinks=[sink]) as app:
        c = app.counters["door"]
        await wait_for(lambda: c.scored >= 2, 60)
        assert statuses(sink, "door") == ["connecting", "online"]
        await asyncio.to_thread(rtsp_server.kill)
        await wait_for(lambda: statuses(sink, "door")[-1] == "offline", 60)
        offline: Message = sink.of("status", "door")[-1]
        reason = offline.payload["reason"]  # type: ignore[index]
        # A killed server is seen at once and said so, not reported as a 10 s stall.
        assert offline.retain and "the connection closed" in reason, reason
        await wait_for(lambda: "Connection refused" in sink.of("status", "door")[-1].payload["reason"], 30)
        scored_during_outage = c.scored
        await asyncio.sleep(1.5)  # several failed reconnects while the server is down
        await asyncio.to_thread(rtsp_server.start)
        await wait_for(lambda: statuses(sink, "door")[-1] == "online", 60)
        await wait_for(lambda: c.scored >= scored_during_outage + 2, 60)
        assert c.reconnects >= 1
        indices = [m.payload["index"] for m in sink.of("score", "door")]  # type: ignore[index]
        assert indices == sorted(set(indices))  # numbering keeps going after the reconnect
    seq = statuses(sink, "door")
    assert seq[:2] == ["connecting", "online"] and "offline" in seq[2:-1] and seq[-1] == "offline"  # stopped
    assert seq.count("online") >= 2 and seq.count("connecting") >= 2


@pytest.mark.slow
async def test_a_stalled_stream_is_detected_and_reconnected(rtsp_server) -> None:  # type: ignore[no-untyped-def]
    import os
    import signal

    cfg = stream_config([{"name": "hall", "url": rtsp_server.url}],
                        runtime={"reconnect": {"initial_s": 0.2, "max_s": 1.0, "open_timeout_s": 3,
                                               "stall_timeout_s": 2}})
    sink = MemorySink()
    async with App(cfg, backend=ScriptedBackend(), sinks=[sink]) as app:
        c = app.counters["hall"]
        await wait_for(lambda: c.scored >= 1, 60)
        os.kill(rtsp_server.proc.pid, signal.SIGSTOP)  # alive, connection open, but no more frames
        t_stop = time.monotonic()
        try:
            await wait_for(lambda: statuses(sink, "hall")[-1] == "offline", 60)
            detected_s = time.monotonic() - t_stop
            print(f"stall detected after {detected_s:.2f} s (stall_timeout_s 2)")
            reason = sink.of("status", "hall")[-1].payload["reason"]  # type: ignore[index]
            assert "stalled (no frame for 2 s)" in reason, reason
            # Within the stall timeout plus one status hop (it took 3x, 6 s, before the progress check).
            assert detected_s < 2 + 1.5, detected_s
        finally:
            os.kill(rtsp_server.proc.pid, signal.SIGCONT)
        before = c.scored
        await wait_for(lambda: statuses(sink, "hall")[-1] == "online", 60)
        await wait_for(lambda: c.scored > before, 60)


@pytest.mark.slow
async def test_open_failures_name_the_cause_ffmpeg_reported(rtsp_server) -> None:  # type: ignore[no-untyped-def]
    from corevad_stream.testing import free_port

    cams = [{"name": "wrongpath", "url": rtsp_server.url.replace("/cam", "/nope")},
            {"name": "refused", "url": f"rtsp://admin:s3cret@127.0.0.1:{free_port()}/cam"},
            {"name": "nohost", "url": "rtsp://camera.invalid/cam"}]
    sink = MemorySink()
    async with App(stream_config(cams), backend=ScriptedBackend(), sinks=[sink]):
        def reason(cam: str) -> str:
            offline = [m.payload["reason"] for m in sink.of("status", cam) if m.payload["state"] == "offline"]
            return offline[-1] if offline else ""

        await wait_for(lambda: all(reason(c["name"]) for c in cams), 30)
    assert "404 Not Found" in reason("wrongpath"), reason("wrongpath")
    assert "Connection refused" in reason("refused") and "s3cret" not in reason("refused"), reason("refused")
    assert "cannot resolve host camera.invalid" in reason("nohost"), reason("nohost")
