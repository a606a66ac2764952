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
