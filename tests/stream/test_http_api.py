"""The review API against the real server (uvicorn) and a real event store (sqlite and PostgreSQL): cameras,
events (filters, paging), one event with its scores, acknowledgement, the live SSE stream, basic auth, redaction."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from stream_doubles import ANOMALOUS, NORMAL, ScriptedBackend, store_section, stream_config

from corevad_stream import App
from corevad_stream.store import StoreLocation


def _answer(clip):  # type: ignore[no-untyped-def]
    return ANOMALOUS if clip.index % 20 in (2, 3, 4) else NORMAL


async def test_api_lists_filters_shows_and_acknowledges_alerts(store_at: StoreLocation) -> None:
    cams = [{"name": "gate", "url": "frameless://1800", "rate": "fast", "overload_policy": "block"},
            {"name": "door", "url": "rtsp://admin:hunter2@127.0.0.1:9/x"}]  # never connects: status offline
    cfg = stream_config(cams, metrics={"enabled": True, "port": 0}, store=store_section(store_at),
                        refinement={"smooth_length": 1}, alerts={"close_after_s": 0, "cooldown_s": 0})
    async with App(cfg, backend=ScriptedBackend(_answer)) as app:
        await asyncio.wait_for(app.cameras["gate"].finished.wait(), 60)
        assert app.metrics_server is not None
        base = f"http://127.0.0.1:{app.metrics_server.port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for _ in range(100):  # the store sink writes on its own thread
                events = (await client.get("/api/events", params={"camera": "gate"})).json()
                if len(events) == 3:
                    break
                await asyncio.sleep(0.05)
            cameras = (await client.get("/api/cameras")).json()
            ended = (await client.get("/api/events", params={"state": "ended", "limit": 1, "offset": 1})).json()
            one = (await client.get(f"/api/events/{events[0]['id']}")).json()
            missing = await client.get("/api/events/nope")
            acked = await client.post(f"/api/events/{events[0]['id']}/ack", json={})
            after = (await client.get(f"/api/events/{events[0]['id']}")).json()
            bad = await client.get("/api/events", params={"state": "maybe"})
            not_finite = await client.get("/api/events", params={"since": "nan"})
            metrics = await client.get("/metrics")
    assert [e["start_segment"] for e in events] == [42, 22, 2]  # newest first
    assert all(not e["active"] and e["explanation"] == ["A man smashes the shop window."] for e in events)
    assert len(ended) == 1 and ended[0]["id"] == events[1]["id"]  # paging
    assert one["scores"] and {s["segment"] for s in one["scores"]} >= {42, 43, 44}
    assert missing.status_code == 404 and acked.json() == {"acknowledged": True} and after["acknowledged_at"]
    assert not_finite.status_code == 400 and "finite" in not_finite.json()["error"]
    assert bad.status_code == 400 and "corevad_camera_scored_total" in metrics.text
    by_name = {c["name"]: c for c in cameras}
    assert by_name["gate"]["scored"] == 60 and by_name["door"]["url"] == "rtsp://***@127.0.0.1:9/x"
    assert "hunter2" not in json.dumps(cameras)  # credentials never leave the monitor


async def test_live_stream_pushes_alert_events_and_credentials_guard_every_route(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_PW", "s3cret")
    cfg = stream_config([{"name": "lane", "url": "frameless://", "rate": "native"}],
                        metrics={"enabled": True, "port": 0, "username": "op", "password_env": "API_PW"},
                        store={"path": str(tmp_path / "e.sqlite3")}, refinement={"smooth_length": 1},
                        alerts={"close_after_s": 0, "cooldown_s": 0}, runtime={"segment_seconds": 0.1})
    async with App(cfg, backend=ScriptedBackend(_answer)) as app:
        assert app.metrics_server is not None
        base = f"http://127.0.0.1:{app.metrics_server.port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("/api/events")).status_code == 401
            assert (await client.get("/")).status_code == 401  # the page too
            page = await client.get("/", auth=("op", "s3cret"))
            js = await client.get("/static/corevad.js", auth=("op", "s3cret"))
            outside = [(await client.get(u, auth=("op", "s3cret"))).status_code
                       for u in ("/static/corevad.service", "/static/..%2F..%2Fapp.py", "/static/.hidden.js",
                                 "/static/nope.css")]
            assert (await client.get("/api/stream")).status_code == 401
            kinds: list[str] = []
            async with client.stream("GET", "/api/stream", auth=("op", "s3cret")) as resp:
                assert resp.headers["content-type"].startswith("text/event-stream")

                async def read() -> None:
                    async for line in resp.aiter_lines():
                        if line.startswith("data: "):
                            kinds.append(json.loads(line[6:])["kind"])
                            if "events" in kinds and "state" in kinds:
                                return

                await asyncio.wait_for(read(), 20)  # an alert opens within ~0.5 s of stream time
    assert "events" in kinds and "state" in kinds
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert js.status_code == 200 and "EventSource" in js.text
    assert outside == [404, 404, 404, 404]  # only the page's own files, by plain name
