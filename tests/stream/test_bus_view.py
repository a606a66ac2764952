"""BusView: the group's cameras from a real Mosquitto; bounds, bad payloads, stale cameras, the live feed."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiomqtt
import pytest

from corevad_stream.bus_view import BusView, GroupCameras, broker_address
from corevad_stream.config import MqttConfig
from corevad_stream.http import LiveFeed
from corevad_stream.messages import Message, StatusRecord

JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 64


def _status(monitor: str | None = "m1", state: str = "online") -> bytes:
    record = StatusRecord(online=state == "online", state=state, reason="", url="rtsp://***@cam/1", reconnects=0,
                          time=time.time(), monitor=monitor or "").to_json()
    if not monitor:  # a status from before the group's `monitor` field
        del record["monitor"]
    return json.dumps(record).encode()


async def _until(check: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


def _drain(q: asyncio.Queue[Message | None]) -> list[Message]:
    out = []
    while not q.empty():
        m = q.get_nowait()
        assert m is not None
        out.append(m)
    return out


async def test_the_view_follows_the_bus_and_feeds_the_page(mosquitto) -> None:  # type: ignore[no-untyped-def]
    cfg = MqttConfig(host=mosquitto.host, port=mosquitto.port, prefix="grp")
    feed = LiveFeed()
    q = feed.subscribe()
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as pub:
        # Retained before the view exists: it learns the camera at connect, but has not *heard* it live.
        await pub.publish("grp/gate/status", _status("m1"), qos=1, retain=True)
        async with BusView(mqtt=cfg, feed=feed, local=lambda: {"mine"}, stale_after_s=30.0) as view:
            await view.wait_connected(20)
            await _until(lambda: "gate" in view.cameras, "retained status")
            gate = view.cameras["gate"]
            assert gate.monitor == "m1" and gate.status == "online" and gate.heard_at is None
            await pub.publish("grp/gate/state", b"anomalous", qos=1)
            await pub.publish("grp/gate/score", json.dumps({"index": 3, "start": 1.0, "end": 2.0, "score": 0.91,
                                                            "available": True, "label": 1.0,
                                                            "description": "A man climbs the gate."}), qos=1)
            alert = {"id": "r1-gate-3", "camera": "gate", "active": True, "start_time": 1.0}
            await pub.publish("grp/events", json.dumps({"type": "new", "before": None, "after": alert}), qos=1)
            await pub.publish("grp/gate/snapshot", JPEG, qos=1)
            await pub.publish("grp/yard/status", _status("m2"), qos=1)
            await pub.publish("grp/mine/score", json.dumps({"index": 1, "score": 0.1}), qos=1)  # the local app's
            await pub.publish("grp/model", json.dumps({"state": "down", "reason": "HTTP 500", "since": 1.0}), qos=1)
            await pub.publish("grp/stats", json.dumps({"run_id": "x", "monitor": "m2", "cameras": {
                "yard": {"scored": 41, "drops": 2}}}), qos=1)
            await _until(lambda: view.cameras.get("yard") is not None and view.cameras["yard"].scored == 41, "stats")
            await _until(lambda: view.cameras["gate"].open_alert is not None and q.qsize() >= 5, "all messages")
            await asyncio.sleep(0)
            by_name = {c["name"]: c for c in view.camera_overview()}
            assert set(by_name) == {"gate", "yard"}  # the local camera is the app's to list
            assert by_name["gate"]["monitor"] == "m1" and by_name["yard"]["monitor"] == "m2"
            assert by_name["gate"]["state"] == "anomalous" and by_name["gate"]["last_score"] == 0.91
            assert by_name["gate"]["last_explanation"] == "A man climbs the gate." and by_name["gate"]["scored"] == 1
            assert by_name["yard"]["drops"] == 2 and by_name["yard"]["run_id"] == "x" and by_name["gate"]["url"] == "rtsp://***@cam/1"
            assert not by_name["gate"]["stale"] and by_name["gate"]["last_heard"] is not None
            fed = _drain(q)
            kinds = [(m.kind, m.camera) for m in fed]
            assert ("state", "gate") in kinds and ("score", "gate") in kinds and ("events", None) in kinds
            assert ("status", "yard") in kinds and ("status", "gate") in kinds
            assert not any(m.camera == "mine" for m in fed)  # not fed twice on a monitor's own page
            # Another monitor's model state is the web process's /api/model, never a monitor's own pill.
            assert view.model_overview()["state"] == "down" and ("model", None) not in kinds
            score = next(m for m in fed if m.kind == "score")
            assert score.payload == {"index": 3, "start": 1.0, "end": 2.0, "score": 0.91, "available": True,
                                     "label": 1.0}  # the page's fields only, like the local feed
            # The snapshot names no alert on the bus: it is the camera's open alert's, and the API can serve it.
            assert ("snapshot", "gate") in kinds and feed.snapshot("r1-gate-3") == JPEG
            merged = GroupCameras(lambda: [{"name": "mine"}, {"name": "gate", "monitor": "here"}], view)()
            assert [c["name"] for c in merged] == ["mine", "gate", "yard"] and merged[1]["monitor"] == "here"
            assert view.bad == {}


async def test_bad_payloads_are_counted_logged_once_and_never_stop_it(  # type: ignore[no-untyped-def]
        mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    cfg = MqttConfig(host=mosquitto.host, port=mosquitto.port, prefix="grp")
    caplog.set_level(logging.WARNING, logger="corevad_stream.bus_view")
    bad: list[tuple[str, bytes]] = [
        ("grp/a/score", b"{not json"), ("grp/a/score", b"NaN"), ("grp/a/score", b'{"index": 1, "score": NaN}'),
        ("grp/a/score", b'{"index": "x", "score": 0.5}'), ("grp/a/status", b"[1, 2]"), ("grp/a/state", b"on fire"),
        ("grp/a/state", b"\xff\xfe"), ("grp/a/snapshot", b"GIF89a"), ("grp/a/frobnicate", b"{}"),
        ("grp/a/b/score", b"{}"), ("grp/bad name!/score", b'{"index": 1}'), ("grp/events", b'{"type": "new"}'),
        ("grp/events", json.dumps({"type": "new", "after": {"camera": "../x", "id": "1"}}).encode()),
        ("grp/a/score", b"{" + b" " * 3000 + b"}"),
    ]
    async with BusView(mqtt=cfg, feed=LiveFeed(), max_cameras=2, max_payload_bytes=2000) as view:
        await view.wait_connected(20)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as pub:
            for topic, payload in bad:
                await pub.publish(topic, payload, qos=1)
            for name in ("c1", "c2", "c3", "c4"):  # two over the cap
                await pub.publish(f"grp/{name}/state", b"normal", qos=1)
            await pub.publish("grp/a/score", b"{again", qos=1)
            await pub.publish("grp/ok/state", b"normal", qos=1)  # and it still works
            await _until(lambda: view.messages >= len(bad) + 6, "every message")
    assert sum(view.bad.values()) == len(bad) + 1 + 3  # c3, c4 and "ok" were over the cap of 2
    assert view.bad["camera_cap"] == 3 and view.bad["too_large"] == 1 and view.bad["kind"] == 1
    assert view.bad["score"] == 5 and view.bad["camera"] == 2 and view.bad["topic"] == 1
    assert set(view.cameras) == {"c1", "c2"}  # no camera from a bad message
    warnings = [r.getMessage() for r in caplog.records]
    assert sum(": score: " in w for w in warnings) == 1 and len(warnings) == len(view.bad)  # once per reason
    metrics = view.render_metrics().decode()
    assert 'corevad_bus_bad_messages_total{reason="camera_cap"} 3.0' in metrics


async def test_a_camera_not_heard_goes_stale_on_the_page_and_comes_back(mosquitto) -> None:  # type: ignore[no-untyped-def]
    cfg = MqttConfig(host=mosquitto.host, port=mosquitto.port, prefix="grp")
    feed = LiveFeed()
    q = feed.subscribe()
    async with BusView(mqtt=cfg, feed=feed, stale_after_s=0.4) as view:
        await view.wait_connected(20)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as pub:
            await pub.publish("grp/gate/status", _status("m1"), qos=1)
            await _until(lambda: "gate" in view.cameras, "status")
            # The watcher checks every stale_after_s / 4: the card turns stale, with the owner's last word kept.
            await _until(lambda: view.cameras["gate"].stale, "stale")
            entry = view.camera_overview()[0]
            assert entry["status"] == "stale" and entry["last_status"] == "online" and entry["stale"]
            assert "nothing heard on the bus since" in entry["reason"] and "monitor m1" in entry["reason"]
            await _until(lambda: any(m is not None and m.kind == "status" and m.payload["state"] == "stale"
                                     for m in list(q._queue)), "stale status on the feed")  # type: ignore[attr-defined]
            await pub.publish("grp/gate/state", b"normal", qos=1)
            await _until(lambda: not view.cameras["gate"].stale, "heard again")
            assert view.camera_overview()[0]["status"] == "online"
            # ... and the page hears so: its last status message for the camera is the owner's again.
            def states() -> list[str]:
                return [m.payload["state"] for m in list(q._queue)  # type: ignore[attr-defined]
                        if m is not None and m.kind == "status"]

            await _until(lambda: "online" in states()[states().index("stale"):], "online again")


def test_broker_address_follows_the_connection_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUS_PW", "s3cret")
    a = broker_address(MqttConfig(host="broker.lan", port=8883, username="viewer", password_env="BUS_PW",
                                  tls={"verify_hostname": True}))
    assert (a.host, a.port, a.username, a.password) == ("broker.lan", 8883, "viewer", "s3cret")
    assert a.tls is not None and a.tls.check_hostname and "s3cret" not in repr(a)
    eb = broker_address(MqttConfig(embedded_broker={"enabled": True, "host": "0.0.0.0", "port": 0,
                                                    "username": "u", "password_env": "BUS_PW"}), embedded_port=4242)
    assert (eb.host, eb.port, eb.username, eb.tls) == ("127.0.0.1", 4242, "u", None)
    with pytest.raises(ValueError, match="embedded_broker.port is 0"):
        broker_address(MqttConfig(embedded_broker={"enabled": True, "port": 0}))


def test_bounds_are_validated() -> None:
    cfg: dict[str, Any] = {"mqtt": MqttConfig()}
    for bad in ({"max_cameras": 0}, {"max_payload_bytes": 0}, {"stale_after_s": 0.0}):
        with pytest.raises(ValueError, match="BusView"):
            BusView(**cfg, **bad)


async def test_a_monitor_with_group_view_lists_the_groups_cameras_beside_its_own(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """In-process App on its embedded broker (port 0: the view must use the port it really got)."""
    import httpx
    from stream_doubles import stream_config

    from corevad.models import ReplayBackend
    from corevad_stream import App

    cfg = stream_config([{"name": "mine", "url": "frameless://", "rate": "native"}],
                        model={"clip": None}, metrics={"enabled": True, "port": 0, "group_view": True},
                        mqtt={"prefix": "grp", "embedded_broker": {"enabled": True, "port": 0},
                              "outbox": {"path": str(tmp_path / "outbox.sqlite3")}},
                        runtime={"segment_seconds": 0.25, "state_dir": str(tmp_path / "state")})
    async with App(cfg, backend=ReplayBackend({"mine": ["Normal scenes.\nA hallway."] * 10_000})) as app:
        assert app.bus_view is not None and app.metrics_server is not None
        await app.bus_view.wait_connected(20)
        broker = app.sink_health.mqtt_sink.broker  # type: ignore[union-attr]
        assert broker is not None and app.bus_view.address.port == broker.port != 0
        async with aiomqtt.Client("127.0.0.1", broker.port) as pub:
            await pub.publish("grp/other/status", _status("m2"), qos=1)
            await pub.publish("grp/other/state", b"anomalous", qos=1)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.metrics_server.port}", timeout=10) as client:
            async def listed() -> list[dict[str, Any]]:
                return list((await client.get("/api/cameras")).json())

            async with asyncio.timeout(20):
                while True:
                    entries = await listed()
                    if any(c["name"] == "other" and c["state"] == "anomalous" for c in entries):
                        break
                    await asyncio.sleep(0.05)
        assert [c["name"] for c in entries] == ["mine", "other"]  # its own camera once, then the group's
        got = {c["name"]: c for c in entries}
        assert got["other"]["monitor"] == "m2" and got["other"]["source"] == "bus" and "source" not in got["mine"]
        assert "mine" not in {c["name"] for c in app.bus_view.camera_overview()}


async def test_the_view_reconnects_after_a_broker_restart(mosquitto) -> None:  # type: ignore[no-untyped-def]
    cfg = MqttConfig(host=mosquitto.host, port=mosquitto.port, prefix="grp",
                     reconnect={"initial_s": 0.1, "max_s": 0.5})
    async with BusView(mqtt=cfg) as view:
        await view.wait_connected(20)
        await asyncio.to_thread(mosquitto.restart)
        await _until(lambda: view.connects >= 2 and view.connected, "reconnected")
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as pub:
            await pub.publish("grp/late/state", b"normal", qos=1)
        await _until(lambda: "late" in view.cameras, "a message after the restart")
        assert view.last_error is not None  # it saw the link drop, and said so in its stats
        assert view.stats()["connects"] >= 2


async def test_the_view_connects_with_tls_and_a_login_as_configured(  # type: ignore[no-untyped-def]
        mosquitto_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = mosquitto_factory(tls=True, username="viewer", password="pw-1")
    monkeypatch.setenv("BUS_PW", "pw-1")
    good = MqttConfig(host=broker.host, port=broker.port, prefix="grp", username="viewer", password_env="BUS_PW",
                      tls={"ca_file": str(broker.ca_file)}, reconnect={"initial_s": 0.1, "max_s": 0.2})
    async with BusView(mqtt=good) as view:
        await view.wait_connected(20)
        async with aiomqtt.Client(broker.host, broker.port, username="viewer", password="pw-1",
                                  tls_context=good.tls.context()) as pub:  # type: ignore[union-attr]
            await pub.publish("grp/gate/state", b"normal", qos=1)
        await _until(lambda: "gate" in view.cameras, "a message over TLS")
    monkeypatch.setenv("BUS_PW", "wrong")
    async with BusView(mqtt=good) as view:  # a refused login: it keeps trying and says why, never connected
        await _until(lambda: view.last_error is not None, "the refusal")
        assert not view.connected and view.connects == 0


async def test_a_disarmed_camera_of_another_monitor_reads_disarmed_and_commands_are_not_bad_payloads(  # type: ignore[no-untyped-def]
    mosquitto,
) -> None:
    cfg = MqttConfig(host=mosquitto.host, port=mosquitto.port, prefix="arm")
    arming = {"armed": False, "state": "disarmed", "until": None, "source": "manual"}
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as pub, \
            BusView(mqtt=cfg, feed=LiveFeed(), local=set, stale_after_s=30.0) as view:
        await view.wait_connected(20)
        status = json.loads(_status("m2"))
        await pub.publish("arm/dock/status", json.dumps({**status, "arming": arming}), qos=1)
        await pub.publish("arm/dock/arming/set", b"ON", qos=1)  # a command to the owner, not a state
        await pub.publish("arm/dock/snooze/set", b"15", qos=1)
        await pub.publish("arm/dock/state", b"disarmed", qos=1)
        await _until(lambda: "dock" in view.cameras and view.cameras["dock"].state == "disarmed", "disarmed state")
        entry = next(c for c in view.camera_overview() if c["name"] == "dock")
        assert entry["state"] == "disarmed" and entry["arming"] == arming
        assert view.cameras["dock"].status_payload()["arming"] == arming
        assert view.bad == {}  # neither the commands nor the disarmed state count as bad payloads
