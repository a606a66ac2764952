"""MQTT sink (aiomqtt 2.x): Frigate-style topics, retained availability with a last will, durable events.

Delivery rules, in order of importance:
- Events (`<prefix>/events`) are written to an on-disk outbox (sinks/outbox.py) before anything else and
  removed only after the broker acknowledged them (QoS >= 1), so a broker outage or a process restart
  delays them but never loses or reorders them (at-least-once: a message in flight when the link dies is
  sent again). Only a full outbox drops events, which is counted and logged as an error. When the disk
  refuses the outbox (full, failing), events wait in memory and are still delivered: never dropped, but
  counted (`events_unsaved`, `outbox`) and logged, since they would not survive a restart.
- Retained topics (`available`, per-camera `state`, `status`, `snapshot`) are re-published on every
  (re)connect with their latest value, so a broker restarted without persistence is repaired at once.
- Scores and stats are live data: while the broker is down only the latest per topic is kept.
- One task owns the connection; send() never waits for the network, and never raises because the
  broker is down. Reconnects back off exponentially with jitter.
- Commands in: with an `on_command` handler (the app's arming control) the sink subscribes to the command
  topics (`<prefix>/+/arming/set`, `<prefix>/+/snooze/set`) on every (re)connect and hands each message to
  it; a failing handler is logged and never drops the connection.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from corevad.backoff import Backoff

from ..arming_control import command_topics
from ..broker import EmbeddedBroker, dial_host, mqtt_broker_answers
from ..config.mqtt import MqttConfig as MqttConfig  # the schema's; imported from here by older code
from ..config.mqtt import MqttReconnectConfig as MqttReconnectConfig
from ..errors import StreamError
from ..messages import Message, kinds_where
from ..messages import topic as build_topic
from .ha_discovery import camera_configs, removed_camera_topics
from .outbox import EventQueue, Outbox

log = logging.getLogger(__name__)

RETAINED_KINDS = kinds_where("retain")
# (topic, payload, retained) -> applied or refused by the handler (ArmingControl.mqtt_command)
CommandHandler = Callable[..., Awaitable[None]]


class MqttSinkError(StreamError):
    """The MQTT sink cannot start as configured (unreadable secret or TLS file, unusable outbox)."""


@dataclass(frozen=True, slots=True)
class MqttSinkStats:
    """Counters of one sink (for <prefix>/stats and Prometheus)."""

    connected: bool
    connects: int  # successful connections, the first included
    connect_failures: int
    published: int  # every acknowledged/sent publish, republished retained values included
    events_published: int
    events_pending: int  # not delivered yet (in the outbox, or in memory while its disk fails)
    events_dropped: int  # outbox overflow: the only way an event is lost
    live_dropped: int  # scores/stats dropped because the live queue was full
    coalesced: int  # non-event messages superseded by a newer one on the same topic while disconnected
    filtered: int  # snapshots skipped because snapshots are off
    last_error: str | None
    events_unsaved: int = 0  # of events_pending, held in memory only: the outbox's disk refused them
    outbox: dict[str, object] | None = None  # OutboxHealth.snapshot(): state ok/failing, since, last error


@dataclass(slots=True)
class _Pub:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    camera: str | None = None  # the camera it is about (a group member replays only its own cameras')


def encode_payload(message: Message) -> bytes:
    """dict -> compact UTF-8 JSON, str -> UTF-8, bytes as they are."""
    payload = message.json_payload()
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    try:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{message.kind} message payload is not JSON-serialisable: {exc}") from exc


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy scalars and small arrays
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


class MqttSink:
    """The MQTT Sink. `async with MqttSink(config) as sink: await sink.send(message)`.

    Entering opens the outbox, starts the embedded broker when configured and starts the connection task
    (it does not wait for the broker: use wait_connected() where that matters). Leaving delivers what it
    can within drain_timeout_s, publishes `offline`, and keeps undelivered events on disk.
    """

    name = "mqtt"

    def __init__(self, config: MqttConfig, *, outbox_path: Path | None = None, cameras: Sequence[str] = (),
                 on_command: CommandHandler | None = None) -> None:
        self.config = config
        self.on_command = on_command  # set before entering: the first session subscribes if it is there
        self.cameras = list(cameras)
        self.prefix = config.prefix
        self.available_topic = build_topic(config.prefix, "available")
        self._outbox_path = outbox_path or config.outbox_path()
        self._outbox: EventQueue | None = None
        self._broker: EmbeddedBroker | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._connected = asyncio.Event()
        self._live: collections.deque[_Pub] = collections.deque()
        self._retained: dict[str, _Pub] = {}  # latest value of every retained topic
        self._down: dict[str, _Pub] = {}  # latest non-retained, non-event message per topic while down
        # A group member's lease check (set by the app): after a reconnect, retained values and what was kept
        # while down are replayed only for cameras still this member's, so a member that was frozen, or that
        # handed a camera over, never puts its old status back over the new owner's.
        self.still_ours: Callable[[str], bool] | None = None
        self._busy = False
        self._counts = collections.Counter[str]()
        self._last_error: str | None = None
        self._client_kwargs: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> MqttSink:
        cfg = self.config
        try:
            self._outbox = EventQueue(Outbox(self._outbox_path, max_messages=cfg.outbox.max_messages,
                                             policy=cfg.outbox.when_full))
        except Exception as exc:
            raise MqttSinkError(f"mqtt.outbox: {exc}") from exc
        if cfg.home_assistant.discovery:
            self._announce()
        try:
            host, port, username, password = cfg.host, cfg.port, cfg.username, cfg.password()
            eb = cfg.embedded_broker
            if eb.enabled and eb.port and mqtt_broker_answers(eb.host, eb.port):
                # The embedded broker is a fallback, not a collision (e.g. Debian's Mosquitto on 1883).
                log.info("an MQTT broker already answers on %s:%d: publishing to it, not starting the embedded "
                         "one", eb.host, eb.port)
                host = dial_host(eb.host)
                port, username, password = eb.port, eb.username, eb.password()
            elif eb.enabled:
                self._broker = EmbeddedBroker.from_config(cfg.embedded_broker)
                await self._broker.start()
                host = dial_host(self._broker.host)
                port, username = self._broker.port, cfg.embedded_broker.username
                password = cfg.embedded_broker.password()
            self._client_kwargs = dict(
                hostname=host, port=port, identifier=cfg.default_client_id(self._outbox_path), clean_session=True,
                keepalive=cfg.keepalive_s, timeout=cfg.connect_timeout_s,
                username=username, password=password.get_secret_value() if password else None,
                tls_context=cfg.tls.context() if cfg.tls else None,
                will=aiomqtt.Will(self.available_topic, b"offline", qos=cfg.qos.available, retain=True),
                # Without TCP_NODELAY an event written right after a QoS-0 score waits for the broker's
                # delayed ACK (Nagle): measured +10..40 ms per alert on loopback.
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            )
        except BaseException:
            await self._teardown()
            raise
        self._task = asyncio.create_task(self._run(), name="corevad.mqtt.connection")
        log.info("MQTT sink -> %s:%d prefix %r%s%s; %d undelivered event(s) in %s", host, port, self.prefix,
                 f" as {username!r}" if username else "", " with TLS" if cfg.tls else "",
                 len(self._outbox), self._outbox_path)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.config.drain_timeout_s + 5)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            except Exception:  # noqa: BLE001, S110 - already logged by the task; shutdown goes on
                pass
        if self._outbox is not None and (on_disk := len(self._outbox) - self._outbox.health().unsaved):
            log.warning("MQTT: %d event(s) not delivered yet; kept in %s for the next start", on_disk,
                        self._outbox_path)  # those held in memory only are reported by the queue's close
        await self._teardown()

    async def _teardown(self) -> None:
        if self._outbox is not None:
            self._outbox.close()
        if self._broker is not None:
            await self._broker.stop()

    def _announce(self) -> None:
        """Retained discovery configs for every camera (republished on each connect like all retained
        values); empty retained payloads remove the configs of cameras no longer configured."""
        ha = self.config.home_assistant
        record = self._outbox_path.with_name(f"ha-discovery-{self.prefix.replace('/', '-')}.json")
        for topic in removed_camera_topics(record, ha.discovery_prefix, self.prefix, self.cameras):
            self._retained[topic] = _Pub(topic, b"", 1, True)
        for camera in self.cameras:
            for topic, payload in camera_configs(ha.discovery_prefix, self.prefix, camera).items():
                self._retained[topic] = _Pub(topic, json.dumps(payload).encode(), 1, True)

    # ------------------------------------------------------------------ public API
    async def send(self, message: Message) -> None:
        """Queue one message; returns at once (events are on disk when it returns, or held in memory and
        reported when the disk refuses them)."""
        if self._outbox is None or self._closing.is_set():
            raise RuntimeError("MqttSink.send() outside its `async with` block")
        if message.kind == "snapshot" and not self.config.snapshots:
            self._counts["filtered"] += 1
            return
        if message.kind == "available" and message.camera is None:
            # This sink owns <prefix>/available: online on every connect, offline at close, the will
            # otherwise. The app's copy would only publish it twice.
            return
        pub = _Pub(message.topic(self.prefix), encode_payload(message), getattr(self.config.qos, message.kind),
                   message.retain or message.kind in RETAINED_KINDS, message.owner)
        if message.kind == "events":  # on disk, or in memory when the disk refuses it: never raises
            self._outbox.append(pub.topic, pub.payload, qos=pub.qos, retain=pub.retain)
        elif pub.retain:
            self._retained[pub.topic] = pub
            if self._connected.is_set():
                self._enqueue_live(pub)
        elif self._connected.is_set():
            self._enqueue_live(pub)
        else:
            if pub.topic in self._down:
                self._counts["coalesced"] += 1
            self._down[pub.topic] = pub
        self._wake.set()

    @property
    def broker(self) -> EmbeddedBroker | None:
        """The embedded broker this sink started (None when publishing to an external one)."""
        return self._broker

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> None:
        """Wait until the sink is connected (raises TimeoutError)."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def flush(self, timeout: float) -> None:
        """Wait until every queued message, events included, has been published (raises TimeoutError)."""
        async with asyncio.timeout(timeout):
            while self._busy or self._live or self._down or (self._outbox is not None and len(self._outbox)) \
                    or not self._connected.is_set():
                await asyncio.sleep(0.005)

    def stats(self) -> MqttSinkStats:
        c = self._counts
        health = self._outbox.health() if self._outbox is not None else None
        return MqttSinkStats(
            connected=self._connected.is_set(), connects=c["connects"], connect_failures=c["connect_failures"],
            published=c["published"], events_published=c["events_published"],
            events_pending=len(self._outbox) if self._outbox is not None else 0,
            events_dropped=self._outbox.outbox.dropped if self._outbox is not None else 0,
            live_dropped=c["live_dropped"], coalesced=c["coalesced"], filtered=c["filtered"],
            last_error=self._last_error,
            events_unsaved=health.unsaved if health is not None else 0,
            outbox=health.snapshot() if health is not None else None,
        )

    # ------------------------------------------------------------------ internals
    def _enqueue_live(self, pub: _Pub) -> None:
        if len(self._live) >= self.config.live_queue:
            self._live.popleft()
            self._counts["live_dropped"] += 1
            if self._counts["live_dropped"] in (1, 10, 100) or self._counts["live_dropped"] % 1000 == 0:
                log.warning("MQTT live queue full (%d): dropped the oldest score/stats message (%d so far)",
                            self.config.live_queue, self._counts["live_dropped"])
        self._live.append(pub)

    async def _run(self) -> None:
        backoff = Backoff(self.config.reconnect.policy())
        down_since: float | None = None
        while not self._closing.is_set():
            try:
                async with aiomqtt.Client(**self._client_kwargs) as client:
                    self._counts["connects"] += 1
                    if down_since is not None:
                        log.warning("MQTT reconnected after %.1f s; delivering %d pending event(s)",
                                    time.monotonic() - down_since, len(self._outbox or ()))
                    down_since = None
                    backoff.reset()
                    self._connected.set()
                    await self._session(client)
                    return  # graceful close: offline published, DISCONNECT sent by the context exit
            except aiomqtt.MqttError as exc:
                self._last_error = str(exc)
            except Exception as exc:  # noqa: BLE001 - the connection task must survive anything and retry
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.exception("MQTT connection task error")
            self._on_down()
            if self._closing.is_set():
                return
            delay = backoff.next_delay()
            if down_since is None:
                down_since = time.monotonic()
                self._counts["connect_failures"] += 1
                log.warning("MQTT broker %s:%s unreachable (%s); retrying with backoff, events kept in the "
                            "outbox", self._client_kwargs["hostname"], self._client_kwargs["port"],
                            self._last_error)
            else:
                self._counts["connect_failures"] += 1
                log.info("MQTT still unreachable (%s); next attempt in %.1f s", self._last_error, delay)
            try:
                await asyncio.wait_for(self._closing.wait(), delay)
            except TimeoutError:
                pass

    def _ours(self, pub: _Pub) -> bool:
        return pub.camera is None or self.still_ours is None or self.still_ours(pub.camera)

    def _on_down(self) -> None:
        if not self._connected.is_set():
            return
        self._connected.clear()
        # Retained values are republished from self._retained on reconnect; keep only the latest of the rest.
        for pub in self._live:
            if not pub.retain:
                self._down[pub.topic] = pub
        self._live.clear()

    async def _publish(self, client: aiomqtt.Client, pub: _Pub) -> None:
        await client.publish(pub.topic, pub.payload, qos=pub.qos, retain=pub.retain,
                             timeout=self.config.publish_timeout_s)
        self._counts["published"] += 1

    async def _session(self, client: aiomqtt.Client) -> None:
        qos = self.config.qos.available
        await self._publish(client, _Pub(self.available_topic, b"online", qos, True))
        # Replay the latest retained values; retained messages queued meanwhile are older or equal to
        # these (no await between the filter and the snapshot), so drop them to avoid sending twice.
        self._live = collections.deque(p for p in self._live if not p.retain and self._ours(p))
        self._down = {t: p for t, p in self._down.items() if self._ours(p)}
        for pub in list(self._retained.values()):
            if self._ours(pub):
                await self._publish(client, pub)
        if self.on_command is not None:
            for command in command_topics(self.prefix):
                await client.subscribe(command, qos=1, timeout=self.config.publish_timeout_s)
        watcher = asyncio.create_task(self._watch(client), name="corevad.mqtt.watch")
        pump = asyncio.create_task(self._pump(client), name="corevad.mqtt.pump")
        try:
            done, _ = await asyncio.wait({watcher, pump}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watcher, pump):
                task.cancel()
            await asyncio.gather(watcher, pump, return_exceptions=True)
            self._busy = False
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        # The pump returned: closing, everything delivered. Say goodbye before the clean DISCONNECT
        # (the broker only sends the will on an unclean one).
        await self._publish(client, _Pub(self.available_topic, b"offline", qos, True))
        self._connected.clear()

    async def _watch(self, client: aiomqtt.Client) -> None:
        # The message iterator ends by raising MqttError when the connection drops: the one public aiomqtt
        # signal for "disconnected" while idle. Only command topics are subscribed.
        async for msg in client.messages:
            if self.on_command is None:
                continue
            payload = msg.payload if isinstance(msg.payload, bytes | bytearray) else str(msg.payload or "").encode()
            try:
                await self.on_command(msg.topic.value, bytes(payload), retained=bool(msg.retain))
            except Exception:  # noqa: BLE001 - a handler bug must not drop the connection
                log.exception("MQTT command on %s failed", msg.topic.value)
        raise aiomqtt.MqttError("message iterator ended")

    async def _pump(self, client: aiomqtt.Client) -> None:
        outbox = self._outbox
        assert outbox is not None
        deadline: float | None = None
        while True:
            self._wake.clear()
            if self._closing.is_set() and deadline is None:
                deadline = time.monotonic() + self.config.drain_timeout_s
            if deadline is not None and time.monotonic() > deadline:
                return
            self._busy = True
            # Events first, oldest first: they are the product, and the outbox keeps their order.
            batch = outbox.peek(64)
            if batch:
                for entry in batch:
                    await self._publish(client, _Pub(entry.topic, entry.payload, entry.qos, entry.retain))
                    outbox.ack(entry)
                    self._counts["events_published"] += 1
                continue
            if self._down:
                topic = next(iter(self._down))
                await self._publish(client, self._down[topic])
                # A newer value may have replaced it meanwhile (only when down, so not here); pop ours.
                self._down.pop(topic, None)
                continue
            if self._live:
                pub = self._live.popleft()
                try:
                    await self._publish(client, pub)
                except BaseException:
                    self._live.appendleft(pub)
                    raise
                continue
            self._busy = False
            if self._closing.is_set():
                return
            await self._wake.wait()
