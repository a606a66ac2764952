"""The test services themselves: Mosquitto and the RTSP camera start, serve, stop, and return on one port."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import cv2
import pytest

from corevad_stream.testing import Mosquitto, RtspServer, port_open

CAPTURE_PARAMS = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 10000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]


async def _roundtrip(
    broker: Mosquitto, topic: str, payload: bytes, username: str | None = None, password: str | None = None
) -> list[bytes]:
    """Subscribe, publish one QoS-1 message, and return what the subscriber got (plus retained)."""
    async with aiomqtt.Client(broker.host, broker.port, username=username, password=password) as sub:
        await sub.subscribe(topic, qos=1)
        async with aiomqtt.Client(broker.host, broker.port, username=username, password=password) as pub:
            await pub.publish(topic, payload, qos=1)
        async with asyncio.timeout(10):
            async for message in sub.messages:
                return [bytes(message.payload)]  # type: ignore[arg-type]
    return []


async def test_mosquitto_roundtrip_and_restart_keeps_port_and_retained(mosquitto: Mosquitto) -> None:
    assert await _roundtrip(mosquitto, "t/a", b"hello") == [b"hello"]
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as pub:
        await pub.publish("t/retained", b"kept", qos=1, retain=True)
    port = mosquitto.port
    mosquitto.stop()
    assert not port_open(mosquitto.host, port)
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(mosquitto.host, port, timeout=2):
            pass
    mosquitto.restart()
    assert mosquitto.port == port and mosquitto.starts == 2
    async with aiomqtt.Client(mosquitto.host, port) as sub:
        await sub.subscribe("t/retained", qos=1)
        async with asyncio.timeout(10):
            message = await anext(aiter(sub.messages))
    assert message.payload == b"kept" and message.retain


async def test_mosquitto_with_credentials_refuses_anonymous(
    mosquitto_factory: Callable[..., Mosquitto],
) -> None:
    broker = mosquitto_factory(username="cam", password="s3cret pass")
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(broker.host, broker.port, timeout=5):
            pass
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(broker.host, broker.port, username="cam", password="wrong", timeout=5):
            pass
    got = await _roundtrip(broker, "t/auth", b"ok", username="cam", password="s3cret pass")
    assert got == [b"ok"]


def test_generated_video_is_h264_at_requested_size(
    test_video: Path, video_factory: Callable[..., Path]
) -> None:
    cap = cv2.VideoCapture(str(test_video), cv2.CAP_FFMPEG)
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 120
    assert cap.get(cv2.CAP_PROP_FPS) == 30
    ok, frame = cap.read()
    assert ok and frame.shape == (240, 320, 3)
    cap.release()
    other = video_factory("big.mp4", seconds=1, size=(640, 480), fps=25)
    cap = cv2.VideoCapture(str(other), cv2.CAP_FFMPEG)
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 480)
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 25
    cap.release()


def _read_frames(url: str, n: int) -> list[tuple[int, int, int]]:
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, CAPTURE_PARAMS)
    shapes: list[tuple[int, int, int]] = []
    try:
        while cap.isOpened() and len(shapes) < n:
            ok, frame = cap.read()
            if not ok:
                break
            shapes.append(frame.shape)
    finally:
        cap.release()
    return shapes


@pytest.fixture
def rtsp_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")


@pytest.mark.slow
def test_rtsp_server_serves_looped_file_and_survives_restart(rtsp_server: RtspServer, rtsp_tcp: None) -> None:
    # 150 frames > the 120-frame file: the stream loops instead of ending.
    assert _read_frames(rtsp_server.url, 150) == [(240, 320, 3)] * 150
    url = rtsp_server.url
    # A reader connected while the server dies sees its stream end, not hang forever.
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, CAPTURE_PARAMS)
    assert cap.read()[0]
    rtsp_server.kill()
    ended = threading.Event()

    def drain() -> None:
        while cap.read()[0]:
            pass
        ended.set()

    threading.Thread(target=drain, daemon=True).start()
    assert ended.wait(30), "reader still getting frames 30 s after the server was killed"
    cap.release()
    assert _read_frames(url, 1) == []
    rtsp_server.start()
    assert rtsp_server.url == url
    assert _read_frames(url, 10) == [(240, 320, 3)] * 10


def test_rtsp_server_test_pattern(rtsp_server_factory: Callable[..., RtspServer], rtsp_tcp: None) -> None:
    server = rtsp_server_factory(testsrc=True, size=(640, 480), mount="live/one")
    assert server.url.endswith("/live/one")
    assert _read_frames(server.url, 5) == [(480, 640, 3)] * 5
