"""MqttSink against a real Mosquitto: topic layout, retained values, last will, outages, restarts, credentials."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from corevad.backoff import Backoff
from corevad_stream.messages import Message
from corevad_stream.sinks.base import Sink
from corevad_stream.sinks.mqtt import MqttConfig, MqttReconnectConfig, MqttSink
from corevad_stream.testing import Mosquitto, MqttCollector

Collect = Callable[..., Awaitable[MqttCollector]]
PREFIX = "cv"
EVENTS = f"{PREFIX}/events"
AVAILABLE = f"{PREFIX}/available"


def config(broker: Mosquitto, tmp_path: Path, **overrides: Any) -> MqttConfig:
    """Fast retries and a private outbox for tests."""
    base: dict[str, Any] = {
        "host": broker.host, "port": broker.port, "prefix": PREFIX, "keepalive_s": 5,
        "reconnect": {"min_delay_s": 0.05, "max_delay_s": 0.5},
        "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
    }
    base.update(overrides)
    return MqttConfig.model_validate(base)


def event(seq: int, kind: str = "new") -> Message:
    after = {"id": f"cam1-{seq}", "camera": "cam1", "seq": seq, "peak": 0.9, "explanation": ["A fight."]}
    return Message("events", {"type": kind, "before": None if kind == "new" else after, "after": after})


def seqs(collector: MqttCollector) -> list[int]:
    return [m.json()["after"]["seq"] for m in collector.on(EVENTS)]


def dedupe_consecutive(values: list[int]) -> list[int]:
    """At-least-once: a message in flight when the link died may arrive twice, right after itself."""
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


async def test_topic_layout_payloads_and_retained(
    mosquitto: Mosquitto, tmp_path: Path, mqtt_collector: Collect
) -> None:
    live = await mqtt_collector(mosquitto, [f"{PREFIX}/#"])
    jpeg = b"\xff\xd8\xff\xe0fake-but-binary\x00\xff\xd9"
    async with MqttSink(config(mosquitto, tmp_path)) as sink:
        assert isinstance(sink, Sink)
        await sink.wait_connected(20)
        await sink.send(Message("status", "online", camera="cam1"))
        await sink.send(Message("score", {"index": 7, "score": 0.83, "label": "Anomalous scenes.",
                                          "description": "Two people fight."}, camera="cam1"))
        await sink.send(Message("state", "anomalous", camera="cam1"))
        await sink.send(Message("snapshot", jpeg, camera="cam1"))
        await sink.send(event(1, "new"))
        await sink.send(event(1, "update"))
        await sink.send(event(1, "end"))
        await sink.send(Message("stats", {"cameras": {"cam1": {"frames": 30}}}))
        await sink.flush(20)
        await live.wait_for(lambda: len(live.on(f"{PREFIX}/stats")) == 1, timeout=20, what="stats")
        stats = sink.stats()
    assert stats.events_published == 3 and stats.events_pending == 0 and stats.events_dropped == 0

    assert [m.json()["type"] for m in live.on(EVENTS)] == ["new", "update", "end"]
    assert [m.json()["before"] is None for m in live.on(EVENTS)] == [True, False, False]
    assert live.on(f"{PREFIX}/cam1/score")[0].json()["score"] == pytest.approx(0.83)
    assert live.payloads(f"{PREFIX}/cam1/state") == [b"anomalous"]
    assert live.payloads(f"{PREFIX}/cam1/status") == [b"online"]
    assert live.payloads(f"{PREFIX}/cam1/snapshot") == [jpeg]
    await live.wait_for(lambda: live.payloads(AVAILABLE)[-1:] == [b"offline"], timeout=20, what="offline")
    assert live.payloads(AVAILABLE) == [b"online", b"offline"]
    assert {m.qos for m in live.on(EVENTS)} == {1}

    # A late subscriber gets exactly the retained topics, with their latest values.
    late = await mqtt_collector(mosquitto, [f"{PREFIX}/#"], persistent=False)
    await late.wait_for(lambda: len(late.messages) >= 4, timeout=20, what="retained values")
    await asyncio.sleep(0.3)  # nothing else may follow
    retained = {m.topic: m.payload for m in late.messages}
    assert all(m.retain for m in late.messages)
    assert retained == {AVAILABLE: b"offline", f"{PREFIX}/cam1/state": b"anomalous",
                        f"{PREFIX}/cam1/status": b"online", f"{PREFIX}/cam1/snapshot": jpeg}


async def test_snapshots_can_be_switched_off(mosquitto: Mosquitto, tmp_path: Path, mqtt_collector: Collect) -> None:
    live = await mqtt_collector(mosquitto, [f"{PREFIX}/#"])
    async with MqttSink(config(mosquitto, tmp_path, snapshots=False)) as sink:
        await sink.wait_connected(20)
        await sink.send(Message("snapshot", b"\xff\xd8", camera="cam1"))
        await sink.send(Message("state", "normal", camera="cam1"))
        await sink.flush(20)
        assert sink.stats().filtered == 1
    await live.wait_for(lambda: live.payloads(f"{PREFIX}/cam1/state") == [b"normal"], timeout=20)
    assert live.on(f"{PREFIX}/cam1/snapshot") == []


SINK_PROCESS = """
import asyncio, sys
from corevad_stream.messages import Message
from corevad_stream.sinks.mqtt import MqttConfig, MqttSink

async def main():
    async with MqttSink(MqttConfig.model_validate_json(sys.argv[1])) as sink:
        if sys.argv[2] == "connected":
            await sink.wait_connected(60)
        for seq in range(int(sys.argv[3])):
            await sink.send(Message("events", {"type": "new", "before": None, "after": {"seq": seq}}))
        print("SENT", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


def start_sink_process(cfg: MqttConfig, mode: str, n_events: int) -> subprocess.Popen[str]:
    """The sink in its own process (so it can die for real); returns once it sent its events."""
    proc = subprocess.Popen([sys.executable, "-c", SINK_PROCESS, cfg.model_dump_json(), mode, str(n_events)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until SENT (or the process died: then "")
    if line.strip() != "SENT":
        proc.kill()
        raise AssertionError(f"sink process did not start (exit {proc.wait()})")
    return proc


@pytest.mark.slow
async def test_last_will_marks_monitor_offline_when_the_process_dies(
    mosquitto: Mosquitto, tmp_path: Path, mqtt_collector: Collect
) -> None:
    live = await mqtt_collector(mosquitto, [AVAILABLE])
    proc = await asyncio.to_thread(start_sink_process, config(mosquitto, tmp_path), "connected", 0)
    try:
        await live.wait_for(lambda: live.payloads(AVAILABLE) == [b"online"], timeout=30, what="online")
        os.killpg(proc.pid, signal.SIGKILL)  # no goodbye: only the broker's last will can say offline
        await asyncio.to_thread(proc.wait, 30)
        await live.wait_for(lambda: live.payloads(AVAILABLE) == [b"online", b"offline"], timeout=30,
                            what="the will")
    finally:
        proc.kill()
    late = await mqtt_collector(mosquitto, [AVAILABLE], persistent=False)
    await late.wait_for(lambda: late.payloads(AVAILABLE) == [b"offline"], timeout=20, what="retained will")
    assert late.on(AVAILABLE)[0].retain


@pytest.mark.slow
async def test_broker_restart_mid_stream_loses_no_event_and_keeps_order(
    mosquitto: Mosquitto, tmp_path: Path, mqtt_collector: Collect
) -> None:
    live = await mqtt_collector(mosquitto, [f"{PREFIX}/#"])
    n_before, n_during, n_after = 40, 25, 20
    # Scores at QoS 1 here so that the collector's persistent session queues them across the restart.
    async with MqttSink(config(mosquitto, tmp_path, qos={"score": 1})) as sink:
        await sink.wait_connected(20)
        await sink.send(Message("state", "normal", camera="cam1"))
        seq = 0
        for _ in range(n_before):
            await sink.send(event(seq))
            seq += 1
            await asyncio.sleep(0.002)  # a stream, not one burst: the stop lands mid-flight
        await asyncio.to_thread(mosquitto.stop)
        await asyncio.wait_for(_until(lambda: not sink.connected), 20)
        for _ in range(n_during):
            await sink.send(event(seq))
            await sink.send(Message("score", {"score": seq / 100}, camera="cam1"))
            seq += 1
            await asyncio.sleep(0.01)  # let the sink try (and fail) to reconnect meanwhile
        await sink.send(Message("state", "anomalous", camera="cam1"))
        assert sink.stats().events_pending >= n_during
        await asyncio.to_thread(mosquitto.start)
        for _ in range(n_after):
            await sink.send(event(seq))
            seq += 1
        await sink.flush(60)
        stats = sink.stats()
    total = n_before + n_during + n_after
    await live.wait_for(lambda: seqs(live)[-1:] == [total - 1], timeout=60, what="all events")
    assert dedupe_consecutive(seqs(live)) == list(range(total))
    assert stats.connects == 2 and stats.connect_failures >= 1 and stats.events_dropped == 0
    # While down, scores coalesce to the latest per topic; the retained state ends at its latest value.
    last_score = (n_before + n_during - 1) / 100
    await live.wait_for(lambda: [m.json()["score"] for m in live.on(f"{PREFIX}/cam1/score")] == [last_score],
                        timeout=20, what="the one coalesced score")
    assert stats.coalesced == n_during - 1
    await live.wait_for(lambda: live.payloads(f"{PREFIX}/cam1/state")[-1:] == [b"anomalous"], timeout=20)
    # (the collector re-subscribes after the restart, so retained copies come again: skip those)
    assert [m.payload for m in live.on(AVAILABLE) if not m.retain].count(b"online") == 2


@pytest.mark.slow
async def test_undelivered_events_survive_a_killed_process(
    mosquitto: Mosquitto, tmp_path: Path, mqtt_collector: Collect
) -> None:
    live = await mqtt_collector(mosquitto, [EVENTS])
    cfg = config(mosquitto, tmp_path)
    await asyncio.to_thread(mosquitto.stop)
    proc = await asyncio.to_thread(start_sink_process, cfg, "no-wait", 12)  # broker down: all go to disk
    os.killpg(proc.pid, signal.SIGKILL)
    await asyncio.to_thread(proc.wait, 30)
    await asyncio.to_thread(mosquitto.start)
    async with MqttSink(cfg) as sink:
        assert sink.stats().events_pending == 12
        await sink.wait_connected(20)
        await sink.send(Message("events", {"type": "new", "before": None, "after": {"seq": 12}}))
        await sink.flush(30)
    await live.wait_for(lambda: seqs(live)[-1:] == [12], timeout=30, what="replayed events")
    assert seqs(live) == list(range(13))


async def test_graceful_exit_while_broker_down_keeps_events_for_next_start(
    mosquitto: Mosquitto, tmp_path: Path, mqtt_collector: Collect, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(mosquitto, tmp_path, drain_timeout_s=0.2)
    mosquitto.stop()
    async with MqttSink(cfg) as sink:
        for seq in range(3):
            await sink.send(event(seq))
    assert "3 event(s) not delivered yet" in caplog.text
    mosquitto.start()
    live = await mqtt_collector(mosquitto, [EVENTS])
    async with MqttSink(cfg) as sink:
        await sink.flush(30)
    await live.wait_for(lambda: len(seqs(live)) == 3, timeout=30)
    assert seqs(live) == [0, 1, 2]


@pytest.mark.parametrize("how", ["env", "file"])
async def test_credentials_from_env_or_file_never_logged(
    how: str, mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path, mqtt_collector: Collect,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Zq9-very-secret-pw"
    broker = mosquitto_factory(username="corevad", password=secret)
    live = await mqtt_collector(broker, [EVENTS], username="corevad", password=secret)
    if how == "env":
        monkeypatch.setenv("COREVAD_TEST_MQTT_PW", secret)
        auth: dict[str, Any] = {"username": "corevad", "password_env": "COREVAD_TEST_MQTT_PW"}
    else:
        (tmp_path / "pw").write_text(secret + "\n")
        auth = {"username": "corevad", "password_file": str(tmp_path / "pw")}
    cfg = config(broker, tmp_path, **auth)
    assert secret not in repr(cfg) and secret not in cfg.model_dump_json()
    async with MqttSink(cfg) as sink:
        await sink.send(event(0))
        await sink.flush(20)
    await live.wait_for(lambda: seqs(live) == [0], timeout=20)

    # Wrong password: the sink keeps the event, reports why, and never shows the password.
    wrong = "Wr0ng-but-still-secret"
    monkeypatch.setenv("COREVAD_TEST_MQTT_PW", wrong)
    cfg = config(broker, tmp_path, username="corevad", password_env="COREVAD_TEST_MQTT_PW", drain_timeout_s=0)
    async with MqttSink(cfg) as sink:
        await sink.send(event(1))
        await asyncio.wait_for(_until(lambda: sink.stats().connect_failures >= 2), 20)
        assert not sink.connected and sink.stats().events_pending == 1
        assert "authori" in (sink.stats().last_error or "").lower()
    assert secret not in caplog.text and wrong not in caplog.text


async def test_missing_secret_is_a_clear_error(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = config(mosquitto, tmp_path, username="u", password_env="COREVAD_TEST_UNSET_VAR")
    os.environ.pop("COREVAD_TEST_UNSET_VAR", None)
    with pytest.raises(Exception, match="COREVAD_TEST_UNSET_VAR is not set"):
        async with MqttSink(cfg):
            pass


def test_config_is_strict_and_documented() -> None:
    with pytest.raises(ValidationError, match="hostname"):
        MqttConfig.model_validate({"hostname": "x"})
    with pytest.raises(ValidationError, match="qos"):
        MqttConfig.model_validate({"qos": {"events": 3}})
    with pytest.raises(ValidationError, match="prefix"):
        MqttConfig(prefix="a/#")
    with pytest.raises(ValidationError, match="need a username"):
        MqttConfig(password_env="X")

    def undocumented(model: type[BaseModel], path: str) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{path}{name}")
            ann = field.annotation
            for sub in (ann, *getattr(ann, "__args__", ())):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    missing += undocumented(sub, f"{path}{name}.")
        return missing

    assert undocumented(MqttConfig, "") == []
    assert MqttConfig().qos.events == 1


def test_reconnect_backoff_grows_with_jitter_and_is_capped() -> None:
    rc = MqttReconnectConfig(min_delay_s=0.5, max_delay_s=8, factor=2, jitter=0.25)
    delays = [[_nth_delay(rc, a) for _ in range(200)] for a in range(8)]
    for attempt, ds in enumerate(delays):
        base = min(8.0, 0.5 * 2**attempt)
        assert all(0.75 * base <= d <= base for d in ds)
        assert len({round(d, 6) for d in ds}) > 100  # really jittered
    assert max(delays[-1]) <= 8.0


def _nth_delay(rc: MqttReconnectConfig, attempt: int) -> float:
    b = Backoff(rc.policy())
    b.attempt = attempt
    return b.next_delay()


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


def test_payload_encoding_handles_numpy_and_rejects_junk() -> None:
    import numpy as np

    from corevad_stream.sinks.mqtt import encode_payload

    raw = encode_payload(Message("score", {"score": np.float32(0.5), "v": np.arange(2)}, camera="c"))
    assert json.loads(raw) == {"score": 0.5, "v": [0, 1]}
    assert encode_payload(Message("state", "normal", camera="c")) == b"normal"
    with pytest.raises(ValueError, match="score message payload"):
        encode_payload(Message("score", {"x": object()}, camera="c"))


async def test_tls_to_broker_with_private_ca(
    mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make test certificates (apt-get install openssl)")
    broker = mosquitto_factory(tls=True)
    assert broker.ca_file is not None
    # Without our CA the certificate is rejected, and the event waits in the outbox.
    cfg = config(broker, tmp_path, tls={}, drain_timeout_s=0)
    async with MqttSink(cfg) as sink:
        await sink.send(event(0))
        await asyncio.wait_for(_until(lambda: sink.stats().connect_failures >= 1), 20)
        assert not sink.connected and "certificate verify failed" in (sink.stats().last_error or "")
    async with MqttSink(config(broker, tmp_path, tls={"ca_file": str(broker.ca_file)})) as sink:
        await sink.wait_connected(20)
        await sink.flush(20)
        assert sink.stats().events_published == 1
    with pytest.raises(Exception, match="mqtt.tls: cannot load certificates"):
        async with MqttSink(config(broker, tmp_path, tls={"ca_file": str(tmp_path / "missing.pem")})):
            pass


async def test_full_outbox_drops_oldest_events_loudly(
    mosquitto: Mosquitto, tmp_path: Path, mqtt_collector: Collect, caplog: pytest.LogCaptureFixture
) -> None:
    live = await mqtt_collector(mosquitto, [EVENTS])
    mosquitto.stop()
    async with MqttSink(config(mosquitto, tmp_path, outbox={"path": str(tmp_path / "o.sqlite3"),
                                                            "max_messages": 5})) as sink:
        for seq in range(8):
            await sink.send(event(seq))
        assert sink.stats().events_dropped == 3 and sink.stats().events_pending == 5
        await asyncio.to_thread(mosquitto.start)
        await sink.flush(30)
    await live.wait_for(lambda: len(seqs(live)) >= 5, timeout=30)
    assert seqs(live) == [3, 4, 5, 6, 7]
    assert sum("OUTBOX FULL" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records) == 3


async def test_live_queue_is_bounded_and_drops_oldest(
    mosquitto: Mosquitto, tmp_path: Path, mqtt_collector: Collect
) -> None:
    live = await mqtt_collector(mosquitto, [f"{PREFIX}/cam1/score"])
    async with MqttSink(config(mosquitto, tmp_path, live_queue=10, qos={"score": 1})) as sink:
        await sink.wait_connected(20)
        await sink.flush(20)
        for i in range(50):  # send() never yields, so the pump cannot drain in between
            await sink.send(Message("score", {"index": i}, camera="cam1"))
        assert sink.stats().live_dropped == 40
        await sink.flush(20)
    await live.wait_for(lambda: len(live.messages) >= 10, timeout=20)
    assert [m.json()["index"] for m in live.messages] == list(range(40, 50))


async def _send_events_on_a_failing_disk(sink: MqttSink, fail: Callable[[], None], n: int) -> None:
    """Half the events before the disk fails, half after, the broker healthy throughout."""
    for seq in range(n):
        if seq == n // 2:
            fail()
        await sink.send(event(seq))
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("disk", ["full", "dead"])
async def test_events_are_delivered_when_the_outbox_disk_fails(
    mosquitto: Mosquitto, tmp_path: Path, mqtt_collector: Collect, disk: str, caplog: pytest.LogCaptureFixture
) -> None:
    from corevad_stream.testing.fs_faults import ext4_image, fill, shut_down, small_tmpfs

    live = await mqtt_collector(mosquitto, [EVENTS])
    n = 24
    mount = small_tmpfs(tmp_path / "state", size_kb=256) if disk == "full" else ext4_image(tmp_path / "state")
    with mount as state:
        cfg = config(mosquitto, tmp_path, outbox={"path": str(state / "outbox.sqlite3")})
        async with MqttSink(cfg) as sink:
            await sink.wait_connected(20)
            fail = (lambda: fill(state)) if disk == "full" else (lambda: shut_down(state))
            await _send_events_on_a_failing_disk(sink, fail, n)
            await sink.flush(30)
            stats = sink.stats()
            assert stats.connected and stats.connect_failures == 0  # a failing disk is not a broker outage
    await live.wait_for(lambda: len(set(seqs(live))) == n, timeout=30, what="every event")
    assert dedupe_consecutive(seqs(live)) == list(range(n))
    assert stats.events_published == n and stats.events_pending == 0 and stats.events_dropped == 0
    assert stats.outbox is not None and stats.outbox["state"] == "failing" and stats.outbox["failures"] >= 1
    assert any("OUTBOX" in r.getMessage() and "FAILS" in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records)
    # Shutdown says only what is true: nothing was left behind as "kept in the outbox".
    assert not any("not delivered yet; kept in" in r.getMessage() for r in caplog.records)


async def test_events_held_in_memory_are_reported_while_the_broker_is_down(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from corevad_stream.testing.fs_faults import fill, small_tmpfs

    with small_tmpfs(tmp_path / "state", size_kb=256) as state:
        cfg = config(mosquitto, tmp_path, outbox={"path": str(state / "outbox.sqlite3")}, drain_timeout_s=0)
        async with MqttSink(cfg) as sink:
            await sink.wait_connected(20)
            await asyncio.to_thread(mosquitto.stop)
            await asyncio.wait_for(_until(lambda: not sink.connected), 20)
            await sink.send(event(0))  # on disk
            fill(state)
            for seq in range(1, 6):
                await sink.send(event(seq, kind="update") if seq > 1 else event(seq))
            stats = sink.stats()
            assert stats.events_pending == 6 and stats.events_unsaved >= 1
            assert stats.outbox is not None and stats.outbox["unsaved"] == stats.events_unsaved
    messages = [r.getMessage() for r in caplog.records]
    assert any("held in memory only" in m and "LOST at exit" in m for m in messages)
    kept = [m for m in messages if "not delivered yet; kept in" in m]
    assert kept and kept[0].startswith(f"MQTT: {6 - stats.events_unsaved} event(s)")  # the disk's share only
