"""The embedded amqtt broker: round trip through MqttSink, loopback by default, never anonymous elsewhere."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiomqtt
import pytest
from pydantic import ValidationError

from corevad_stream.broker import BrokerError, EmbeddedBroker, EmbeddedBrokerConfig, is_loopback
from corevad_stream.messages import Message
from corevad_stream.sinks.mqtt import MqttConfig, MqttSink
from corevad_stream.testing import MqttCollector, free_port


async def test_sink_with_embedded_broker_round_trip(tmp_path: Path) -> None:
    cfg = MqttConfig.model_validate({
        "prefix": "demo", "embedded_broker": {"enabled": True, "port": 0},
        "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
    })
    async with MqttSink(cfg) as sink:
        assert sink.broker is not None and sink.broker.host == "127.0.0.1"
        async with MqttCollector("127.0.0.1", sink.broker.port, ["demo/#"], persistent=False) as sub:
            await sink.wait_connected(20)
            await sink.send(Message("state", "anomalous", camera="door"))
            for seq in range(20):
                await sink.send(Message("events", {"type": "new", "before": None, "after": {"seq": seq}}))
            await sink.flush(20)
            await sub.wait_for(lambda: len(sub.on("demo/events")) == 20, timeout=20, what="20 events")
            assert [m.json()["after"]["seq"] for m in sub.on("demo/events")] == list(range(20))
            # (events overtake queued live messages, so the state may come after them)
            await sub.wait_for(lambda: sub.payloads("demo/door/state") == [b"anomalous"], timeout=20)
            assert b"online" in sub.payloads("demo/available")
    with pytest.raises(ConnectionRefusedError):  # the broker went away with the sink
        await asyncio.open_connection("127.0.0.1", sink.broker.port)


def test_non_loopback_without_credentials_is_refused_at_config_and_start() -> None:
    with pytest.raises(ValidationError, match=r"embedded_broker.host '0.0.0.0' is not loopback"):
        MqttConfig.model_validate({"embedded_broker": {"enabled": True, "host": "0.0.0.0"}})
    with pytest.raises(ValidationError, match="go together"):
        EmbeddedBrokerConfig(enabled=True, host="0.0.0.0", username="u")
    with pytest.raises(BrokerError, match="refusing to bind '192.168.1.10' without credentials"):
        EmbeddedBroker(host="192.168.1.10")
    assert EmbeddedBrokerConfig(enabled=True, host="localhost").host == "localhost"
    assert is_loopback("127.0.0.2") and is_loopback("::1") and not is_loopback("0.0.0.0")
    assert not is_loopback("camera-host.lan")


@pytest.mark.slow
async def test_exposed_broker_refuses_anonymous_and_wrong_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("COREVAD_TEST_BROKER_PW", "b-r-o-k-e-r")
    port = free_port()
    cfg = MqttConfig.model_validate({
        "prefix": "exp", "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
        "embedded_broker": {"enabled": True, "host": "0.0.0.0", "port": port, "username": "mon",
                            "password_env": "COREVAD_TEST_BROKER_PW"},
    })
    async with MqttSink(cfg) as sink:
        await sink.wait_connected(30)  # the sink itself uses the configured credentials
        for user, password in ((None, None), ("mon", "nope"), ("other", "x")):
            with pytest.raises(aiomqtt.MqttError, match="(?i)not authori"):
                async with aiomqtt.Client("127.0.0.1", port, timeout=10, username=user, password=password):
                    pass
        async with MqttCollector("127.0.0.1", port, ["exp/#"], persistent=False, username="mon",
                                 password="b-r-o-k-e-r") as sub:
            await sink.send(Message("events", {"type": "new", "before": None, "after": {"seq": 1}}))
            await sub.wait_for(lambda: len(sub.on("exp/events")) == 1, timeout=20)
    assert "b-r-o-k-e-r" not in caplog.text and "nope" not in caplog.text


async def test_the_embedded_broker_is_a_fallback_not_a_collision(mosquitto, mqtt_collector, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import socket

    from corevad_stream.broker import mqtt_broker_answers
    from corevad_stream.messages import Message
    from corevad_stream.sinks.mqtt import MqttConfig, MqttSink

    assert mqtt_broker_answers(mosquitto.host, mosquitto.port)
    with socket.socket() as plain:  # something listening that is not a broker
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        assert not mqtt_broker_answers("127.0.0.1", plain.getsockname()[1], timeout=0.5)
    sub = await mqtt_collector(mosquitto, topics=("fb/#",))
    cfg = MqttConfig(prefix="fb", outbox={"path": tmp_path / "o.sqlite"},  # type: ignore[arg-type]
                     embedded_broker={"enabled": True, "port": mosquitto.port})  # type: ignore[arg-type]
    async with MqttSink(cfg) as sink:
        assert sink.broker is None  # Mosquitto already answers there: no embedded broker was started
        await sink.send(Message("state", "normal", camera="cam"))
        await sub.wait_for(lambda: sub.payloads("fb/cam/state") == [b"normal"], timeout=20, what="state")
