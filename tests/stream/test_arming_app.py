"""Arming in the running monitor: a disarmed camera makes no model calls and says `disarmed`; disarming ends an
open alert ("disarmed") and re-arming scores again on a fresh scorer; the state survives a restart; commands
over real Mosquitto (plain topics and the Home Assistant switch it discovered), over HTTP behind auth and the
same-origin JSON rule; bad payloads refused with one log line and no change."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from stream_doubles import ANOMALOUS, NORMAL, ScriptedBackend, stream_config

from corevad_stream import App, MemorySink
from corevad_stream.arming_control import arming_state_path
from corevad_stream.sinks.ha_discovery import config_topic

# Five segments a second of a frame-less camera: commands show their effect within a second or two.
FAST = {"segment_seconds": 0.2}


def _gate(**arming: Any) -> dict[str, Any]:
    return {"name": "gate", "url": "frameless://", "rate": "native", **({"arming": arming} if arming else {})}


def _calls(backend: ScriptedBackend, camera: str = "gate") -> int:
    with backend.lock:
        return sum(1 for batch in backend.calls for source, _, _ in batch if source == camera)


def _states(sink: MemorySink, camera: str = "gate") -> list[str]:
    """The retained states published, repeats of the same value folded (a camera's start sends it twice)."""
    out: list[str] = []
    for m in sink.of("state", camera):
        if not out or out[-1] != m.payload:
            out.append(str(m.payload))
    return out


async def test_a_disarmed_camera_makes_no_model_calls_until_armed(tmp_path: Path) -> None:
    backend, sink = ScriptedBackend(lambda clip: NORMAL), MemorySink()
    cfg = stream_config([_gate(armed=False), {"name": "yard", "url": "frameless://", "rate": "native"}],
                        runtime=FAST)
    async with App(cfg, backend=backend, sinks=[sink]) as app:
        gate = app.cameras["gate"]
        # The other camera is scored meanwhile: the model runs, it is only the disarmed camera it never sees.
        await sink.wait_for(lambda _: gate.counters.disarmed_skipped >= 8 and _calls(backend, "yard") >= 3)
        assert _calls(backend) == 0 and gate.counters.scored == 0
        skipped = [line for line in app.metrics.render().decode().splitlines()
                   if line.startswith('corevad_camera_disarmed_skipped_total{camera="gate"}')]
        assert skipped and float(skipped[0].split()[-1]) >= 8  # Prometheus says why the camera costs nothing
        assert _states(sink) == ["disarmed"]  # never "normal", never "unknown" first
        arming = [m.payload for m in sink.of("arming", "gate")]
        assert arming == [{"armed": False, "state": "disarmed", "until": None, "source": "config"}]
        assert app.camera_overview()[0]["arming"] == arming[0] and app.camera_overview()[0]["state"] == "disarmed"
        statuses = [m.payload for m in sink.of("status", "gate")]
        assert statuses and statuses[-1]["arming"]["state"] == "disarmed"  # type: ignore[index]

        decision = await app.arming.set_armed("gate", True)
        assert decision.state == "armed" and decision.source == "manual"
        await sink.wait_for(lambda _: "normal" in _states(sink))
        assert _calls(backend) > 0
        assert _states(sink)[:2] == ["disarmed", "unknown"]  # armed again: unknown until the first new score
        assert sink.of("arming", "gate")[-1].payload["armed"] is True  # type: ignore[index]
        assert sink.of("status", "gate")[-1].payload["arming"]["state"] == "armed"  # type: ignore[index]


async def test_disarming_ends_the_open_alert_and_rearming_starts_a_fresh_scorer(tmp_path: Path) -> None:
    backend, sink = ScriptedBackend(lambda clip: ANOMALOUS), MemorySink()
    cfg = stream_config([_gate()], runtime=FAST, refinement={"smooth_length": 1},
                        alerts={"close_after_s": 0, "cooldown_s": 0})
    async with App(cfg, backend=backend, sinks=[sink]) as app:
        await sink.wait_for(lambda _: any(m.payload["type"] == "new" for m in sink.of("events")))  # type: ignore[index]
        old_scorer = app.cameras["gate"].scoring.scorer
        await app.arming.set_armed("gate", False)
        await sink.wait_for(lambda _: _states(sink)[-1] == "disarmed")  # the sinks hear it a moment later
        ends = [m.payload for m in sink.of("events") if m.payload["type"] == "end"]  # type: ignore[index]
        assert len(ends) == 1 and ends[0]["after"]["end_reason"] == "disarmed"  # type: ignore[index]
        assert app.cameras["gate"].scoring.tracker.active is None
        assert _states(sink)[-2:] == ["anomalous", "disarmed"]  # no passing "normal" in between
        calls = _calls(backend)
        scored = app.cameras["gate"].counters.scored
        skipped = app.cameras["gate"].counters.disarmed_skipped
        await sink.wait_for(lambda _: app.cameras["gate"].counters.disarmed_skipped >= skipped + 5)
        # At most the batch that was already in the model when the command came; nothing after it is scored.
        assert _calls(backend) <= calls + 2 and app.cameras["gate"].counters.scored == scored
        assert app.open_alerts.load() == {}  # the crash-safe record of open alerts agrees

        await app.arming.set_armed("gate", True)
        assert app.cameras["gate"].scoring.scorer is not old_scorer  # the history was reset
        await sink.wait_for(lambda _: sum(m.payload["type"] == "new" for m in sink.of("events")) == 2)  # type: ignore[index]
        assert _states(sink)[-1] == "anomalous"


async def test_the_arming_state_survives_a_restart(tmp_path: Path) -> None:
    cfg = stream_config([_gate()], runtime={**FAST, "state_dir": str(tmp_path / "state")})
    async with App(cfg, backend=ScriptedBackend(), sinks=[MemorySink()]) as app:
        await app.arming.set_armed("gate", False)
        await app.arming.snooze("gate", 30)
    saved = json.loads(arming_state_path(tmp_path / "state", "corevad").read_text())
    assert saved["gate"]["manual"] is False and saved["gate"]["snooze_until"] is not None

    backend, sink = ScriptedBackend(), MemorySink()
    async with App(cfg, backend=backend, sinks=[sink]) as app:
        gate = app.cameras["gate"]
        assert gate.arming.state == "snoozed" and gate.armed is False
        await sink.wait_for(lambda _: gate.counters.disarmed_skipped >= 5)
        assert _calls(backend) == 0 and _states(sink)[0] == "disarmed"
        cancelled = await app.arming.snooze("gate", 0)  # the manual disarm from before is still there
        assert cancelled.state == "disarmed" and cancelled.source == "manual"

    # A torn or foreign file is a warning and the config's arming, not a monitor that will not start.
    arming_state_path(tmp_path / "state", "corevad").write_text("{not json")
    async with App(cfg, backend=ScriptedBackend(), sinks=[MemorySink()]) as app:
        assert app.cameras["gate"].arming.state == "armed" and app.cameras["gate"].arming.source == "config"


async def test_mqtt_commands_and_the_home_assistant_switch_against_mosquitto(
        mosquitto, mqtt_collector, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    import aiomqtt

    backend = ScriptedBackend()
    sub = await mqtt_collector(mosquitto, topics=("m/#", "homeassistant/#"))
    cfg = stream_config([_gate()], runtime=FAST,
                        mqtt={"host": mosquitto.host, "port": mosquitto.port, "prefix": "m",
                              "home_assistant": {"discovery": True}})

    def arming() -> list[dict[str, Any]]:
        return [json.loads(p) for p in sub.payloads("m/gate/arming")]

    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as cmd:
        # A stale retained command: the broker hands it to the monitor's subscription (retain flag set) at
        # every (re)connect, where it would undo later commands. It is refused.
        await cmd.publish("m/gate/arming/set", b"OFF", qos=1, retain=True)
    with caplog.at_level(logging.WARNING, logger="corevad_stream.arming_control"):
        async with App(cfg, backend=backend) as app, aiomqtt.Client(mosquitto.host, mosquitto.port) as cmd:
            await _commands(app, cmd, sub, arming)
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as cmd:
        await cmd.publish("m/gate/arming/set", b"", qos=1, retain=True)  # the broker forgets it
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 4 and all("\n" not in line for line in lines), lines
    assert "retained" in lines[0] and "'maybe' is not ON or OFF" in lines[1] and "0..10080" in lines[2]
    assert "'nocam'" in lines[3]


async def _commands(app: App, cmd: Any, sub: Any, arming: Any) -> None:
    """The command paths of one running monitor (the test above checks the refusals' log lines)."""
    await sub.wait_for(lambda: app.arming.refused == 1 and sub.payloads("m/gate/state")[-1:] == [b"normal"],
                       timeout=30, what="the retained command refused, armed and scored")
    assert arming()[-1]["armed"] is True
    # The switch Home Assistant discovered: its command topic and OFF payload disarm the camera.
    switch = json.loads(sub.payloads(config_topic("homeassistant", "m", "gate", "arming"))[-1])
    assert switch["state_topic"] == "m/gate/arming" and switch["payload_off"] == "OFF"
    await cmd.publish(switch["command_topic"], switch["payload_off"], qos=1)
    await sub.wait_for(lambda: sub.payloads("m/gate/state")[-1:] == [b"disarmed"], timeout=20, what="disarmed")
    assert arming()[-1] == {"armed": False, "state": "disarmed", "until": None, "source": "manual"}
    assert json.loads(sub.payloads("m/gate/status")[-1])["arming"]["state"] == "disarmed"
    # Snooze from HA's number (its command topic), then cancel with 0: back to the manual disarm.
    number = json.loads(sub.payloads(config_topic("homeassistant", "m", "gate", "snooze"))[-1])
    await cmd.publish(number["command_topic"], b"15", qos=1)
    await sub.wait_for(lambda: arming()[-1]["state"] == "snoozed", timeout=20, what="snoozed")
    assert arming()[-1]["until"] > app.arming.clock() + 14 * 60
    # Bad payloads: one log line each (checked by the caller), nothing changes.
    before = len(sub.payloads("m/gate/arming"))
    await cmd.publish("m/gate/arming/set", b"MAYBE", qos=1)
    await cmd.publish("m/gate/snooze/set", b"-5", qos=1)
    await cmd.publish("m/nocam/arming/set", b"ON", qos=1)
    await sub.wait_for(lambda: app.arming.refused == 4, timeout=20, what="four refusals")
    assert len(sub.payloads("m/gate/arming")) == before and app.cameras["gate"].arming.state == "snoozed"
    await cmd.publish("m/gate/snooze/set", b"0", qos=1)
    await sub.wait_for(lambda: arming()[-1]["state"] == "disarmed", timeout=20, what="snooze cancelled")
    await cmd.publish("m/gate/arming/set", b"ON", qos=1)
    await sub.wait_for(lambda: sub.payloads("m/gate/state")[-1:] == [b"normal"], timeout=20, what="re-armed")


async def test_http_commands_need_auth_same_origin_json_and_a_good_body(tmp_path: Path) -> None:
    cfg = stream_config([_gate()], runtime=FAST,
                        metrics={"enabled": True, "port": 0, "host": "127.0.0.1", "username": "op",
                                 "password_env": "ARMING_TEST_PW"})
    import os

    os.environ["ARMING_TEST_PW"] = "s3cret"
    try:
        async with App(cfg, backend=ScriptedBackend(), sinks=[MemorySink()]) as app:
            assert app.metrics_server is not None
            base = f"http://127.0.0.1:{app.metrics_server.port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as anon, \
                    httpx.AsyncClient(base_url=base, timeout=10, auth=("op", "s3cret")) as op:
                url = "/api/cameras/gate/arming"
                assert (await anon.post(url, json={"armed": False})).status_code == 401
                foreign = await op.post(url, json={"armed": False}, headers={"Origin": "http://evil.example"})
                assert foreign.status_code == 403
                form = await op.post(url, content=b"armed=false",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
                assert form.status_code == 415
                assert app.cameras["gate"].arming.state == "armed"  # none of those changed anything
                for body, status, why in (({"armed": "no"}, 400, "true or false"), ({"on": 1}, 400, "armed"),
                                          ({"armed": False, "x": 1}, 400, "nothing else")):
                    r = await op.post(url, json=body)
                    assert r.status_code == status and why in r.json()["error"], r.text
                big = await op.post(url, content=b"{" + b" " * 5000 + b"}",
                                    headers={"Content-Type": "application/json"})
                assert big.status_code == 413
                assert (await op.post("/api/cameras/nocam/arming", json={"armed": False})).status_code == 404

                r = await op.post(url, json={"armed": False})
                assert r.status_code == 200 and r.json()["arming"]["state"] == "disarmed"
                listed = (await op.get("/api/cameras")).json()[0]
                assert listed["arming"] == {"armed": False, "state": "disarmed", "until": None, "source": "manual"}
                assert listed["state"] == "disarmed"
                r = await op.post("/api/cameras/gate/snooze", json={"minutes": 10})
                assert r.status_code == 200 and r.json()["arming"]["state"] == "snoozed"
                assert (await op.post("/api/cameras/gate/snooze", json={"minutes": "10"})).status_code == 400
                r = await op.post("/api/cameras/gate/snooze", json={"minutes": 0})
                assert r.json()["arming"]["state"] == "disarmed"
                r = await op.post(url, json={"armed": True})
                assert r.json()["arming"] == {"armed": True, "state": "armed", "until": None, "source": "manual"}
    finally:
        del os.environ["ARMING_TEST_PW"]


async def test_the_schedule_clock_disarms_and_rearms_at_its_edges(tmp_path: Path) -> None:
    """The clock task re-decides at each edge: a window 08:00-20:00 UTC, the wall clock moved across its end
    and its next start."""
    day = 1_780_012_800.0  # a midnight UTC in 2026
    now = [day + 20 * 3600 - 60]  # 19:59
    backend, sink = ScriptedBackend(), MemorySink()
    cfg = stream_config([_gate(timezone="UTC", schedule=[{"start": "08:00", "end": "20:00"}])], runtime=FAST)
    app = App(cfg, backend=backend, sinks=[sink])
    app.arming.clock = lambda: now[0]
    async with app:
        gate = app.cameras["gate"]
        assert (gate.arming.state, gate.arming.source, gate.arming.until) == ("armed", "schedule", day + 20 * 3600)
        await sink.wait_for(lambda _: "normal" in _states(sink))
        now[0] = day + 20 * 3600
        app.arming.recheck()
        await sink.wait_for(lambda _: _states(sink)[-1] == "disarmed")
        assert gate.arming.state == "off_schedule" and gate.arming.until == day + 86400 + 8 * 3600
        calls = _calls(backend)
        await sink.wait_for(lambda _: gate.counters.disarmed_skipped >= 5)
        assert _calls(backend) <= calls + 1  # at most a batch already in the model
        now[0] = day + 86400 + 8 * 3600
        app.arming.recheck()
        await sink.wait_for(lambda _: _states(sink)[-1] == "normal")
        assert gate.arming.state == "armed" and gate.arming.until == day + 86400 + 20 * 3600
        assert sink.of("arming", "gate")[-1].payload["source"] == "schedule"  # type: ignore[index]
