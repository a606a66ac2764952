"""Prometheus endpoint: per-camera counters over HTTP, basic auth when configured."""

from __future__ import annotations

import asyncio

import httpx
from stream_doubles import ScriptedBackend, stream_config

from corevad_stream import App

GARBLED_EVERY_OTHER = ScriptedBackend(lambda c: "???" if c.index % 2 else "Normal scenes.\nA quiet street.")


async def test_metrics_endpoint_reports_per_camera_counters() -> None:
    cfg = stream_config([{"name": "m1", "url": "frameless://150", "rate": "fast", "overload_policy": "block"}],
                        metrics={"enabled": True, "port": 0})
    async with App(cfg, backend=GARBLED_EVERY_OTHER) as app:
        await app.wait_finished(timeout=30)
        assert app.metrics_server is not None
        url = f"http://127.0.0.1:{app.metrics_server.port}/metrics"
        async with httpx.AsyncClient() as client:
            text = (await client.get(url, timeout=10)).text
    assert 'corevad_camera_segments_total{camera="m1"} 5.0' in text
    assert 'corevad_camera_unparsed_total{camera="m1"} 2.0' in text
    assert 'corevad_camera_frames_total{camera="m1"} 150.0' in text
    assert 'corevad_camera_drops_total{camera="m1"} 0.0' in text
    assert 'corevad_camera_reconnects_total{camera="m1"} 0.0' in text
    assert 'corevad_segment_latency_seconds_count{camera="m1"} 5.0' in text


async def test_metrics_basic_auth(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TEST_METRICS_PW", "s3cret")
    cfg = stream_config([{"name": "m2", "url": "frameless://", "rate": "native"}],
                        metrics={"enabled": True, "port": 0, "username": "prom", "password_env": "TEST_METRICS_PW"})
    async with App(cfg, backend=ScriptedBackend()) as app:
        assert app.metrics_server is not None
        url = f"http://127.0.0.1:{app.metrics_server.port}/metrics"
        async with httpx.AsyncClient() as client:
            denied = await client.get(url, timeout=10)
            wrong = await client.get(url, auth=("prom", "nope"), timeout=10)
            ok = await client.get(url, auth=("prom", "s3cret"), timeout=10)
        await asyncio.sleep(0)
    assert denied.status_code == 401 and wrong.status_code == 401
    assert ok.status_code == 200 and "corevad_camera_frames_total" in ok.text


async def test_model_health_is_scraped_down_then_up() -> None:
    class Outage:
        name = "outage"
        failing = False

        def answer(self, clips):  # type: ignore[no-untyped-def]
            if self.failing:
                raise TimeoutError("model server did not answer")
            return ["Normal scenes.\nA quiet street."] * len(clips)

        def close(self) -> None:
            pass

    backend = Outage()
    cfg = stream_config([{"name": "m3", "url": "frameless://", "rate": "native"}],
                        metrics={"enabled": True, "port": 0},
                        runtime={"segment_seconds": 0.1, "model_down_after_s": 0.3})
    async with App(cfg, backend=backend) as app:
        assert app.metrics_server is not None
        url = f"http://127.0.0.1:{app.metrics_server.port}/metrics"

        async def scrape_until(needle: str) -> str:
            async with httpx.AsyncClient() as client:
                for _ in range(100):
                    text = (await client.get(url, timeout=10)).text
                    if needle in text:
                        return text
                    await asyncio.sleep(0.1)
            raise AssertionError(f"{needle!r} never scraped:\n{text}")

        up = await scrape_until("corevad_model_up 1.0")
        assert 'corevad_model_state{state="ok"} 1.0' in up and "corevad_model_last_success_timestamp_seconds 1." in up
        backend.failing = True
        down = await scrape_until("corevad_model_up 0.0")
        assert 'corevad_model_errors_total{kind="error"}' in down
        await scrape_until('corevad_camera_model_up{camera="m3"} 0.0')
        assert 'corevad_camera_unanswered_total{camera="m3"}' in down
        backend.failing = False
        await scrape_until("corevad_model_up 1.0")
