"""GET /api/cameras/{name}/frame.jpg against the real server: the camera's latest frame through the snapshot
encoder, 204 before one exists, 404 for an unknown camera, one encode per camera per cache period, the size
bound, and the page's basic auth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from corevad_stream import http
from corevad_stream.dispatch import encode_jpeg
from corevad_stream.http import HttpServer


def _real_frame(video_factory: Callable[..., Path]) -> np.ndarray:
    ok, frame = cv2.VideoCapture(str(video_factory("gate.mp4", seconds=1, size=(320, 240)))).read()
    assert ok
    return frame


def _server(frames: dict[str, np.ndarray | None], calls: list[str], *, username: str | None = None,
            password: str | None = None) -> HttpServer:
    def latest(name: str) -> bytes | None:
        calls.append(name)
        frame = frames[name]  # KeyError: not a camera of this server
        return None if frame is None else encode_jpeg(frame, 80)

    return HttpServer(host="127.0.0.1", port=0, render_metrics=lambda: b"", cameras=list, model=dict,
                      store=None, feed=None, latest_frame=latest, username=username,
                      password=password)


async def test_the_latest_frame_is_served_cached_and_bounded(video_factory: Callable[..., Path],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    frame = _real_frame(video_factory)
    frames: dict[str, np.ndarray | None] = {"gate": frame, "door": None}
    calls: list[str] = []
    monkeypatch.setattr(http, "FRAME_CACHE_S", 3600.0)  # everything below is inside one cache period
    async with _server(frames, calls) as server, httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
        first = await client.get("/api/cameras/gate/frame.jpg")
        again = await client.get("/api/cameras/gate/frame.jpg?t=2")
        none_yet = await client.get("/api/cameras/door/frame.jpg")
        unknown = await client.get("/api/cameras/nope/frame.jpg")
        encodes_cached = list(calls)
        monkeypatch.setattr(http, "FRAME_CACHE_S", 0.0)  # every request now encodes the newest frame
        frames["gate"] = np.zeros_like(frame)
        fresh = await client.get("/api/cameras/gate/frame.jpg")
        monkeypatch.setattr(http, "FRAME_MAX_BYTES", 100)
        too_big = await client.get("/api/cameras/gate/frame.jpg")
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    decoded = cv2.imdecode(np.frombuffer(first.content, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape == frame.shape
    assert first.content == encode_jpeg(frame, 80)  # the snapshot encoder's own bytes
    assert again.content == first.content and none_yet.status_code == 204 and not none_yet.content
    assert unknown.status_code == 404 and unknown.json() == {"error": "no such camera"}
    assert encodes_cached == ["gate", "door", "nope"]  # the second gate request came from the cache
    assert fresh.status_code == 200 and fresh.content != first.content
    assert too_big.status_code == 503 and "over 100 bytes" in too_big.json()["error"]


async def test_the_frame_needs_the_pages_credentials(video_factory: Callable[..., Path]) -> None:
    calls: list[str] = []
    async with _server({"gate": _real_frame(video_factory)}, calls, username="op", password="s3cret") as server:
        url = f"http://127.0.0.1:{server.port}/api/cameras/gate/frame.jpg"
        async with httpx.AsyncClient(timeout=10) as client:
            refused = await client.get(url)
            allowed = await client.get(url, auth=("op", "s3cret"))
    assert refused.status_code == 401 and allowed.status_code == 200 and calls == ["gate"]
