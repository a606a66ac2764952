"""Home Assistant MQTT discovery against a real Mosquitto: payload shape, availability, removal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stream_doubles import ANOMALOUS, ScriptedBackend, stream_config

from corevad_stream import App

pytestmark = pytest.mark.slow


def _config(mosquitto, tmp_path: Path, cameras: list[str]):  # type: ignore[no-untyped-def]
    return stream_config([{"name": c, "url": "frameless://300", "rate": "fast", "overload_policy": "block"}
                          for c in cameras],
                         mqtt={"host": mosquitto.host, "port": mosquitto.port, "prefix": "ha",
                               "outbox": {"path": str(tmp_path / "outbox.sqlite")},
                               "home_assistant": {"discovery": True}},
                         refinement={"smooth_length": 1})


async def test_discovery_announces_each_camera_and_removes_dropped_ones(mosquitto, mqtt_collector,  # type: ignore[no-untyped-def]
                                                                        tmp_path: Path) -> None:
    sub = await mqtt_collector(mosquitto, topics=("homeassistant/#", "ha/#"))
    async with App(_config(mosquitto, tmp_path, ["gate", "yard"]), backend=ScriptedBackend(lambda c: ANOMALOUS)) as app:
        await app.wait_finished(timeout=60)
    await sub.wait_for(lambda: len([t for t in sub.seen_topics() if t.startswith("homeassistant/")]) >= 14, timeout=30,
                       what="14 discovery configs")
    configs = {t: json.loads(sub.payloads(t)[-1]) for t in sub.seen_topics() if t.startswith("homeassistant/")}
    late = await mqtt_collector(mosquitto, topics=("homeassistant/#",))  # subscribes after the run
    await late.wait_for(lambda: len(late.seen_topics()) >= 14, timeout=30, what="retained configs")
    assert all(m.retain for t in late.seen_topics() for m in late.on(t))  # kept by the broker for HA restarts
    assert len({c["unique_id"] for c in configs.values()}) == 14  # 7 entities per camera
    gate = {t.split("/")[1]: c for t, c in configs.items() if "_gate_" in t}
    assert set(gate) == {"binary_sensor", "sensor", "image", "switch", "number"}
    # The arming switch and the snooze number command the monitor and read its retained arming state.
    assert gate["switch"]["command_topic"] == "ha/gate/arming/set" and gate["switch"]["state_topic"] == "ha/gate/arming"
    assert gate["number"]["command_topic"] == "ha/gate/snooze/set" and gate["number"]["min"] == 0
    assert json.loads(sub.payloads("ha/gate/arming")[-1])["armed"] is True
    anomaly = gate["binary_sensor"]
    assert anomaly["state_topic"] == "ha/gate/state" and anomaly["payload_on"] == "anomalous"
    assert anomaly["availability_topic"] == "ha/available" and anomaly["json_attributes_topic"] == "ha/gate/alert"
    assert anomaly["device"]["identifiers"] == ["corevad_ha_gate"]
    assert gate["image"]["image_topic"] == "ha/gate/snapshot"
    # The attributes the binary sensor shows: the camera's latest alert, with the model's explanation.
    alert = json.loads(sub.payloads("ha/gate/alert")[-1])
    assert alert["camera"] == "gate" and alert["explanation"] == ["A man smashes the shop window."]

    sub2 = await mqtt_collector(mosquitto, topics=("homeassistant/#",))
    async with App(_config(mosquitto, tmp_path, ["gate"]), backend=ScriptedBackend()) as app:
        await app.wait_finished(timeout=60)
    yard_topics = [t for t in configs if "_yard_" in t]
    await sub2.wait_for(lambda: all(sub2.payloads(t)[-1:] == [b""] for t in yard_topics), timeout=30,
                        what="yard's configs removed")
