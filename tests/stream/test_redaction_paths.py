"""Issue 18 item 7: camera passwords holding '@', '/' or a space never leave the monitor, on any path the red
team found them on: /api/cameras, the SSE stream, MQTT status, Home Assistant discovery and attributes,
JSONL, the logs and the sqlite store. Real Mosquitto, real HTTP server, real store; the cameras' RTSP port is
closed, so they go offline with their URL in the reason."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import httpx
import pytest
from stream_doubles import ScriptedBackend, stream_config

from corevad_stream import App
from corevad_stream.redact import install_redaction, redact

# Each camera URL with the parts of its password that must never be seen.
CAMERAS = {
    "at": ("rtsp://admin:p@ss/w0rd@127.0.0.1:9/x", ["p@ss", "ss/w0rd", "w0rd"]),
    "space": ("rtsp://admin:my pass@127.0.0.1:9/y", ["my pass", "admin:my"]),
    "both": ("rtsp://op:a b@c d@127.0.0.1:9/z", ["a b@c", "b@c d", "c d@"]),
}


@pytest.mark.parametrize(("url", "shown"), [
    ("rtsp://admin:p@ss/w0rd@cam/", "rtsp://***@cam/"),
    ("rtsp://admin:my pass@cam.lan:554/live", "rtsp://***@cam.lan:554/live"),
    ("cannot open stream rtsp://admin:p@ss/w0rd@[fe80::1]:554/x: refused", "cannot open stream "
                                                                           "rtsp://***@[fe80::1]:554/x: refused"),
    ('{"url": "rtsp://a:p@ss w@cam/", "reason": "mail admin@example.com"}',
     '{"url": "rtsp://***@cam/", "reason": "mail admin@example.com"}'),  # stops at the JSON string's end
    ("rtsp://a:b@c/ and rtsp://d:e f@g/", "rtsp://***@c/ and rtsp://***@g/"),  # two URLs on one line
    ('rtsp://admin:pa"ss@cam/', "rtsp://***@cam/"),
])
def test_user_info_ends_at_the_last_at_before_the_host(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert redact(shown) == shown  # idempotent


async def test_no_path_shows_a_password_with_at_slash_or_space(mosquitto, mqtt_collector,  # type: ignore[no-untyped-def]
                                                               tmp_path: Path) -> None:
    log_text = io.StringIO()
    handler = logging.StreamHandler(log_text)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    install_redaction(root)  # what the command line does at start-up
    sub = await mqtt_collector(mosquitto, topics=("homeassistant/#", "red/#"))
    cfg = stream_config([{"name": n, "url": u} for n, (u, _) in CAMERAS.items()],
                        metrics={"enabled": True, "port": 0}, store={"path": str(tmp_path / "e.sqlite3")},
                        jsonl={"path": str(tmp_path / "out.jsonl")},
                        mqtt={"host": mosquitto.host, "port": mosquitto.port, "prefix": "red",
                              "outbox": {"path": str(tmp_path / "outbox.sqlite")},
                              "home_assistant": {"discovery": True}})
    sse: list[str] = []
    try:
        async with App(cfg, backend=ScriptedBackend()) as app:
            assert app.metrics_server is not None
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.metrics_server.port}",
                                         timeout=20) as client:
                async with client.stream("GET", "/api/stream") as resp:
                    async def read() -> None:  # status changes repeat while the cameras retry
                        async for line in resp.aiter_lines():
                            sse.append(line)
                            if sum('"kind": "status"' in x for x in sse) >= 3:
                                return

                    await asyncio.wait_for(read(), 30)
                await sub.wait_for(lambda: all(sub.payloads(f"red/{n}/status") for n in CAMERAS), timeout=30,
                                   what="every camera's status")
                await sub.wait_for(lambda: len([t for t in sub.seen_topics() if t.startswith("homeassistant/")])
                                   >= 3 * len(CAMERAS), timeout=30, what="discovery configs")
                cameras = (await client.get("/api/cameras")).json()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    mqtt_text = "\n".join(m.payload.decode("utf-8", "replace") for t in sub.seen_topics() for m in sub.on(t))
    store_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("e.sqlite3*"))
    paths = {"api": json.dumps(cameras), "sse": "\n".join(sse), "mqtt+ha": mqtt_text,
             "jsonl": (tmp_path / "out.jsonl").read_text(), "logs": log_text.getvalue(),
             "sqlite": store_bytes.decode("utf-8", "replace")}
    by_name = {c["name"]: c for c in cameras}
    assert by_name["at"]["url"] == "rtsp://***@127.0.0.1:9/x" and by_name["space"]["url"] == "rtsp://***@127.0.0.1:9/y"
    assert by_name["both"]["url"] == "rtsp://***@127.0.0.1:9/z"
    status = json.loads(sub.payloads("red/at/status")[-1])
    assert status["url"] == "rtsp://***@127.0.0.1:9/x" and status["state"] in ("offline", "reconnecting")
    for where, text in paths.items():
        assert "***@127.0.0.1" in text or where in ("sqlite",), where  # the redacted form is really there
        for _, secrets in CAMERAS.values():
            for secret in secrets:
                assert secret not in text, f"{secret!r} in {where}"
