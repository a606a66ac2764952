"""Durability of the whole monitor with real parts: the README's multi-monitor recipe on one Mosquitto, and the
event store's health while its disk fails (tmpfs forced full)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from stream_doubles import ScriptedBackend, stream_config

from corevad_stream import App
from corevad_stream.store import SqliteStore


def _fight_at_3_and_4(clip: Any) -> str:
    return "Anomalous scenes.\nA fight." if clip.index in (3, 4) else "Normal scenes.\nA street."


async def test_two_monitors_with_one_prefix_and_their_own_state_dirs(  # type: ignore[no-untyped-def]
        mosquitto, mqtt_collector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))  # the shared default: neither may use it
    sub = await mqtt_collector(mosquitto, topics=("site/events",))

    def config(camera: str) -> Any:
        return stream_config([{"name": camera, "url": "frameless://600", "rate": "fast", "overload_policy": "block"}],
                             mqtt={"host": mosquitto.host, "port": mosquitto.port, "prefix": "site"},
                             refinement={"smooth_length": 1}, alerts={"close_after_s": 0, "cooldown_s": 0},
                             runtime={"state_dir": str(tmp_path / camera)})

    async with App(config("east"), backend=ScriptedBackend(_fight_at_3_and_4)) as east, \
            App(config("west"), backend=ScriptedBackend(_fight_at_3_and_4)) as west:
        await asyncio.gather(east.wait_finished(timeout=60), west.wait_finished(timeout=60))

    def received() -> set[tuple[str, str]]:
        return {(e["after"]["camera"], e["type"]) for e in (json.loads(p) for p in sub.payloads("site/events"))}

    await sub.wait_for(lambda: len(received()) == 4, timeout=30, what="new and end of both cameras")
    assert received() == {("east", "new"), ("east", "end"), ("west", "new"), ("west", "end")}
    for camera in ("east", "west"):  # each monitor's outbox and store live in its own state directory
        assert (tmp_path / camera / "mqtt-outbox-site.sqlite3").is_file()
    assert not (tmp_path / "xdg").exists()


def _fight_every_10(clip: Any) -> str:
    return "Anomalous scenes.\nA fight." if clip.index % 10 in (3, 4) else "Normal scenes.\nA street."


async def _until(predicate: Any, what: str, timeout: float = 60.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


async def test_a_full_state_disk_is_reported_and_loses_no_alert(  # type: ignore[no-untyped-def]
        mosquitto, mqtt_collector, tmp_path: Path) -> None:
    import httpx

    from corevad_stream import MemorySink
    from corevad_stream.testing.fs_faults import fill, small_tmpfs

    sub = await mqtt_collector(mosquitto, topics=("d/events",))
    with small_tmpfs(tmp_path / "state", size_kb=2048) as state:
        cfg = stream_config([{"name": "cam", "url": "frameless://", "rate": "native"}],
                            mqtt={"host": mosquitto.host, "port": mosquitto.port, "prefix": "d"},
                            metrics={"enabled": True, "port": 0},
                            refinement={"smooth_length": 1}, alerts={"close_after_s": 0, "cooldown_s": 0},
                            runtime={"segment_seconds": 0.1, "state_dir": str(state)})
        produced = MemorySink()

        def events() -> int:
            return sum(m.kind == "events" for m in produced.messages)

        async with App(cfg, backend=ScriptedBackend(_fight_every_10), sinks=[produced]) as app:
            await produced.wait_for(lambda ms: sum(m.kind == "events" for m in ms) >= 2, 30)
            filler = fill(state)
            n = events()
            await produced.wait_for(lambda ms: sum(m.kind == "events" for m in ms) >= n + 4, 60)

            def failing() -> bool:
                s = app.stats()
                return s["store"]["state"] == "failing" and s["mqtt"]["outbox"]["state"] == "failing"

            await _until(failing, "the store and the outbox to say they fail")
            stats = app.stats()
            assert stats["mqtt"]["outbox"]["failures"] >= 1 and stats["mqtt"]["connected"]
            assert stats["store"]["failing_since"] and stats["store"]["last_error"]
            assert app.metrics_server is not None
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.metrics_server.port}", timeout=10) as c:
                metrics = (await c.get("/metrics")).text
                model = (await c.get("/api/model")).json()
            assert "corevad_store_up 0.0" in metrics and "corevad_mqtt_outbox_up 0.0" in metrics
            assert "corevad_store_pending_writes" in metrics and "corevad_mqtt_events_unsaved" in metrics
            assert model["store"]["state"] == "failing" and model["outbox"]["state"] == "failing"
            assert model["state"] in ("ok", "unknown", "degraded")  # the model's own state is still there
            filler.unlink()  # space is back
            n = events()
            await produced.wait_for(lambda ms: sum(m.kind == "events" for m in ms) >= n + 2, 60)
            await _until(lambda: app.stats()["store"]["state"] == "ok" and app.stats()["store"]["pending"] == 0,
                         "the store to recover")
        store_health = app.stats()["store"]
        want = [(m.payload["type"], m.payload["after"]["id"]) for m in produced.of("events")]  # type: ignore[index]

        def received() -> list[tuple[str, str]]:
            seen = [(e["type"], e["after"]["id"]) for e in (json.loads(p) for p in sub.payloads("d/events"))]
            return list(dict.fromkeys(seen))  # at-least-once: keep the first of a repeat

        await sub.wait_for(lambda: len(received()) >= len(want), timeout=60, what=f"{len(want)} events")
        assert received() == want  # every alert event reached the broker, in order, while the disk was full
        assert store_health["dropped"] == 0 and store_health["retried"] > 0
        store = SqliteStore(app.store_path)
        assert {a["id"] for a in store.alerts(limit=1000)} == {i for _, i in want}  # retried, not lost
        store.close()
