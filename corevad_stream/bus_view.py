"""The group's cameras as the MQTT bus shows them: one subscriber to `<prefix>/#` keeps each camera's latest
status, state, model state and score, and feeds the review page's live channel (SSE) and /api/cameras.

Why the bus and not the store: every monitor of a group already publishes every score, alert event and
retained status there (messages.KIND_POLICY), so a page on any monitor, or a `corevad-stream web` process
with no cameras, sees the whole group live without polling a database; the history comes from the shared
store as on a lone monitor.

Bounds, because anything on the broker may publish under our prefix: at most `max_cameras` cameras (more are
refused, counted), payloads over `max_payload_bytes` are dropped before they are parsed, a payload that is not
what its kind says (bad JSON, NaN, wrong shape, a bad camera name) is counted by reason and logged once per
reason; nothing a publisher sends can end the subscriber. A camera nothing was heard from for `stale_after_s`
is shown as `stale` (its owner's last word kept beside it), never dropped silently. The client's incoming queue
is bounded too (aiomqtt discards, and logs, what does not fit).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import re
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiomqtt

from corevad.backoff import Backoff

from .broker import dial_host
from .config.cameras import NAME_PATTERN
from .config.mqtt import MqttConfig
from .messages import CAMERA_STATES, GLOBAL_KINDS, KIND_POLICY, Message

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_CAMERAS", "DEFAULT_MAX_PAYLOAD_BYTES", "BrokerAddress", "BusView", "GroupCameras",
           "broker_address", "stale_after"]

DEFAULT_MAX_CAMERAS = 1000
# A retained snapshot is the largest thing we publish (a JPEG of one frame: ~20-200 KB at the sizes we use).
DEFAULT_MAX_PAYLOAD_BYTES = 2 * 1024 * 1024
# Messages waiting in the client between the socket and our handler; beyond this aiomqtt discards (and logs).
INCOMING_QUEUE = 10_000
_CAMERA = re.compile(NAME_PATTERN)
_TEXT_CAP = 500  # reasons and explanations shown on a card


def stale_after(stats_interval_s: float) -> float:
    """When a camera with nothing heard counts as stale: three stats periods (every monitor lists its cameras in
    <prefix>/stats each period, offline ones included), at least 30 s."""
    return max(30.0, 3.0 * stats_interval_s)


class FeedSink(Protocol):
    """Where live messages go (http.LiveFeed): the page's SSE channel."""

    async def send(self, message: Message) -> None: ...


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where and as whom to connect: the project's MQTT connection settings, resolved."""

    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    tls: ssl.SSLContext | None


def broker_address(cfg: MqttConfig, *, embedded_port: int | None = None) -> BrokerAddress:
    """The broker the monitors publish to, as MqttSink connects: the embedded broker's address and credentials
    when it is enabled (`embedded_port`: the port it really listens on, for port 0), else host/port/user."""
    eb = cfg.embedded_broker
    if eb.enabled:
        host = dial_host(eb.host)
        pw = eb.password()
        port = embedded_port or eb.port
        if port == 0:
            raise ValueError("mqtt.embedded_broker.port is 0 (any free port): a viewer cannot know which; set a port")
        return BrokerAddress(host, port, eb.username, pw.get_secret_value() if pw else None,
                             cfg.tls.context() if cfg.tls else None)
    pw = cfg.password()
    return BrokerAddress(cfg.host, cfg.port, cfg.username, pw.get_secret_value() if pw else None,
                         cfg.tls.context() if cfg.tls else None)


@dataclass(slots=True)
class BusCamera:
    """One camera as heard on the bus."""

    name: str
    heard: float  # monotonic time of the last live (not retained) message about it, or of the connection
    heard_at: float | None = None  # wall time of the last live message (None: only retained values so far)
    monitor: str | None = None  # the owning monitor's id (status `monitor`, or the owner's stats)
    run_id: str | None = None  # the run of the monitor whose stats list it (an owner id where no `monitor` is sent)
    status: str | None = None
    reason: str = ""
    url: str | None = None
    state: str | None = None
    model_state: str | None = None
    last_score: float | None = None
    last_explanation: str | None = None
    scored: int = 0
    drops: int | None = None
    open_alert: str | None = None  # the id of its open alert (a snapshot on the bus names no alert)
    arming: dict[str, Any] | None = None  # the owner's arming decision (status `arming`, or <camera>/arming)
    stale: bool = False

    def overview(self) -> dict[str, Any]:
        """The /api/cameras entry: the keys a local camera has, plus monitor, stale and last_heard."""
        status = "stale" if self.stale else self.status
        return {"name": self.name, "url": self.url, "status": status, "reason": self.stale_reason() or self.reason,
                "model_state": self.model_state, "state": self.state, "last_score": self.last_score,
                "last_explanation": self.last_explanation, "scored": self.scored, "drops": self.drops,
                "open_threshold": None, "close_threshold": None, "monitor": self.monitor, "run_id": self.run_id,
                "source": "bus", "arming": self.arming,
                "stale": self.stale, "last_status": self.status, "last_heard": self.heard_at}

    def status_payload(self) -> dict[str, Any]:
        """A status message for the live page: stale, or the owner's last status."""
        return {"status": "stale" if self.stale else self.status, "state": "stale" if self.stale else self.status,
                "reason": self.stale_reason() or self.reason, "url": self.url, "monitor": self.monitor,
                "arming": self.arming, "last_status": self.status, "time": time.time()}

    def stale_reason(self) -> str:
        if not self.stale:
            return ""
        since = "since this page connected" if self.heard_at is None else \
            f"since {time.strftime('%H:%M:%S', time.localtime(self.heard_at))}"
        return f"nothing heard on the bus {since}" + (f" (monitor {self.monitor})" if self.monitor else "")


class BadPayload(ValueError):
    """A bus message that is not what its topic says; `reason` is the counter it goes to."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class BusView:
    """`async with BusView(mqtt=cfg, feed=live_feed) as view:` subscribes until the block ends.

    feed: the page's live channel (None: only /api/cameras). local: the cameras this process runs itself;
    their messages are not fed again (the local app feeds them) and they are left out of camera_overview().
    """

    def __init__(self, *, mqtt: MqttConfig, feed: FeedSink | None = None,
                 local: Callable[[], Collection[str]] = frozenset, max_cameras: int = DEFAULT_MAX_CAMERAS,
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, stale_after_s: float = 30.0,
                 embedded_port: int | None = None) -> None:
        if max_cameras < 1 or max_payload_bytes < 1 or not stale_after_s > 0:
            raise ValueError(f"BusView: max_cameras >= 1, max_payload_bytes >= 1, stale_after_s > 0 (got "
                             f"{max_cameras}, {max_payload_bytes}, {stale_after_s})")
        self.config = mqtt
        self.prefix = mqtt.prefix
        self.address = broker_address(mqtt, embedded_port=embedded_port)
        self.feed = feed
        self.local = local
        self.max_cameras = max_cameras
        self.max_payload_bytes = max_payload_bytes
        self.stale_after_s = stale_after_s
        self.cameras: dict[str, BusCamera] = {}
        self.model: dict[str, Any] | None = None  # the latest <prefix>/model
        self.bad = collections.Counter[str]()  # bad payloads by reason
        self.messages = 0
        self.connects = 0
        self.last_error: str | None = None
        self._connected = asyncio.Event()
        self._connected_at = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self._revived: list[BusCamera] = []  # cameras the message being handled brought back from stale
        self._identifier = (f"corevad-view-{self.prefix.replace('/', '-')}-{socket.gethostname()}"[:48]
                            + f"-{os.getpid()}-{secrets.token_hex(3)}")

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def __aenter__(self) -> BusView:
        self._tasks = [asyncio.create_task(self._run(), name="corevad[bus].view"),
                       asyncio.create_task(self._watch_stale(), name="corevad[bus].stale")]
        a = self.address
        log.info("group view: subscribed to %s:%d %s/#%s%s", a.host, a.port, self.prefix,
                 f" as {a.username!r}" if a.username else "", " with TLS" if a.tls else "")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> None:
        """Wait until subscribed (raises TimeoutError)."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def _run(self) -> None:
        cfg, a = self.config, self.address
        backoff = Backoff(cfg.reconnect.policy())
        while True:
            try:
                async with aiomqtt.Client(a.host, a.port, username=a.username, password=a.password,
                                          identifier=self._identifier, clean_session=True,
                                          keepalive=cfg.keepalive_s, timeout=cfg.connect_timeout_s,
                                          tls_context=a.tls, max_queued_incoming_messages=INCOMING_QUEUE) as client:
                    await client.subscribe(f"{self.prefix}/#", qos=1)
                    self.connects += 1
                    self._connected_at = time.monotonic()
                    self._connected.set()
                    backoff.reset()
                    async for m in client.messages:
                        payload = m.payload if isinstance(m.payload, bytes) else str(m.payload or "").encode()
                        await self.handle(str(m.topic), payload, retained=bool(m.retain))
            except aiomqtt.MqttError as exc:
                self.last_error = str(exc)
            except Exception as exc:  # noqa: BLE001 - the subscriber survives anything and reconnects
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("group view: subscriber error")
            if self._connected.is_set():
                log.warning("group view: lost the broker %s:%d (%s); reconnecting", a.host, a.port, self.last_error)
            self._connected.clear()
            await asyncio.sleep(backoff.next_delay())

    # -- one message -------------------------------------------------------------------------------------
    async def handle(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        """Take one bus message into the view and the feed; a bad one is counted and logged (once per reason)."""
        self.messages += 1
        try:
            message = self._parse(topic, payload)
            if message is None:
                return
            self._revived = []
            forward = self._take(message, retained=retained)
        except BadPayload as exc:
            self._count_bad(exc.reason, f"{topic[:200]}: {exc}")
            return
        if self.feed is None:
            return
        for cam in self._revived:  # the card said stale: it gets its owner's last status back
            await self.feed.send(Message("status", cam.status_payload(), camera=cam.name))
        if forward is not None:
            await self.feed.send(forward)

    def _count_bad(self, reason: str, detail: str) -> None:
        self.bad[reason] += 1
        if self.bad[reason] == 1:
            log.warning("group view: ignored a bad bus message (%s); later ones of this kind are only counted "
                        "(corevad_bus_bad_messages_total)", detail[:300])

    def _parse(self, topic: str, payload: bytes) -> Message | None:
        if not topic.startswith(self.prefix + "/"):
            return None
        if len(payload) > self.max_payload_bytes:
            raise BadPayload("too_large", f"{len(payload)} bytes > {self.max_payload_bytes}")
        parts = topic[len(self.prefix) + 1:].split("/")
        if len(parts) == 3 and parts[2] == "set":  # a command to a monitor (arming/set, snooze/set): not state
            return None
        if len(parts) == 1:
            camera, kind = None, parts[0]
        elif len(parts) == 2:
            camera, kind = parts
        else:
            raise BadPayload("topic", "not <prefix>/<kind> or <prefix>/<camera>/<kind>")
        if kind not in KIND_POLICY:
            raise BadPayload("kind", f"unknown kind {kind[:40]!r}")
        if camera is not None and not _CAMERA.fullmatch(camera):
            raise BadPayload("camera", f"not a camera name: {camera[:70]!r}")
        if (camera is None) != (kind in GLOBAL_KINDS) and kind != "model":
            raise BadPayload("topic", f"kind {kind!r} {'needs a' if camera is None else 'takes no'} camera")
        body: Any
        if kind == "snapshot":
            if not payload.startswith(b"\xff\xd8"):
                raise BadPayload("snapshot", "not a JPEG")
            body = payload
        elif kind in ("state", "available"):
            body = _text(payload, kind)
            if kind == "state" and body not in CAMERA_STATES:
                raise BadPayload("state", f"not one of {', '.join(CAMERA_STATES)}: {body[:40]!r}")
        else:
            body = _json_object(payload, kind)
            _check_shape(kind, body)
        return Message(kind, body, camera=camera)  # type: ignore[arg-type]

    def _camera(self, name: str) -> BusCamera:
        cam = self.cameras.get(name)
        if cam is None:
            if len(self.cameras) >= self.max_cameras:
                raise BadPayload("camera_cap", f"more than {self.max_cameras} cameras; {name!r} not shown")
            cam = self.cameras[name] = BusCamera(name=name, heard=self._connected_at)
        return cam

    def _take(self, m: Message, *, retained: bool) -> Message | None:
        """Update the view; return what the live channel gets (None: nothing, or a local camera's)."""
        p: Any = m.payload
        local = self.local()
        now = time.monotonic()
        if m.kind == "stats":
            for name, counters in (p.get("cameras") or {}).items():
                if isinstance(name, str) and _CAMERA.fullmatch(name) and name not in local \
                        and isinstance(counters, dict):
                    cam = self._camera(name)
                    self._heard(cam, now, retained)
                    if p.get("monitor") is not None:
                        cam.monitor = str(p["monitor"])
                    if isinstance(p.get("run_id"), str):
                        cam.run_id = p["run_id"][:64]
                    cam.scored = _int(counters.get("scored"), cam.scored)
                    cam.drops = _int(counters.get("drops"), cam.drops or 0)
            return None
        if m.kind == "available":
            return None
        if m.kind == "events":
            name = p["after"]["camera"]
            if not _CAMERA.fullmatch(name):
                raise BadPayload("camera", f"after.camera is not a camera name: {name[:70]!r}")
            if name in local:
                return None
            cam = self._camera(name)
            self._heard(cam, now, retained)
            cam.open_alert = p["after"]["id"] if p["after"].get("active") else None
            return m
        if m.camera is None:  # monitor-wide: the model as a whole (and any other such kind a monitor publishes)
            if m.kind == "model":
                self.model = p
            # A monitor's page shows its own model state, not the last one another monitor published.
            return m if not local and m.policy.feed else None
        if m.camera in local:
            return None
        cam = self._camera(m.camera)
        self._heard(cam, now, retained)
        if m.kind == "status":
            cam.status, cam.reason = str(p.get("state") or p.get("status")), _cap(p.get("reason"))
            cam.url = _cap(p.get("url")) or cam.url
            if p.get("monitor") is not None:
                cam.monitor = str(p["monitor"])
            if isinstance(p.get("arming"), dict):
                cam.arming = dict(p["arming"])
        elif m.kind == "state":
            cam.state = p
        elif m.kind == "arming":
            cam.arming = dict(p) if isinstance(p, dict) else None
        elif m.kind == "model":
            cam.model_state = str(p["state"])
        elif m.kind == "score":
            if p.get("available", True) is not False:
                cam.last_score = p.get("score")
                cam.last_explanation = _cap(p.get("description")) or cam.last_explanation
                if not retained:
                    cam.scored += 1
        elif m.kind == "alert":
            if p.get("active"):
                cam.open_alert = p["id"]
            elif cam.open_alert == p["id"]:
                cam.open_alert = None
        elif m.kind == "snapshot":
            if cam.open_alert is None:
                return None  # the page shows an alert's picture; this one names none we know
            return Message("snapshot", p, camera=m.camera, alert_id=cam.open_alert)
        return m

    def _heard(self, cam: BusCamera, now: float, retained: bool) -> None:
        if retained:
            return  # a retained value may be from a monitor long gone: it says nothing about now
        cam.heard, cam.heard_at = now, time.time()
        if cam.stale:
            cam.stale = False
            self._revived.append(cam)
            log.info("group view: camera %s heard again", cam.name)

    # -- staleness ---------------------------------------------------------------------------------------
    def mark_stale(self, now: float | None = None) -> list[BusCamera]:
        """Mark the cameras nothing was heard from for stale_after_s; return those that just went stale."""
        now = time.monotonic() if now is None else now
        local = self.local()
        went = []
        for cam in self.cameras.values():
            if not cam.stale and cam.name not in local and now - cam.heard > self.stale_after_s:
                cam.stale = True
                went.append(cam)
        return went

    async def _watch_stale(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, self.stale_after_s / 4))
            if not self.connected:
                continue  # our own link is down: that says nothing about the cameras
            for cam in self.mark_stale():
                log.warning("group view: camera %s is stale: %s", cam.name, cam.stale_reason())
                if self.feed is not None:
                    await self.feed.send(Message("status", cam.status_payload(), camera=cam.name))

    # -- what the page reads -----------------------------------------------------------------------------
    def camera_overview(self) -> list[dict[str, Any]]:
        """/api/cameras entries of the cameras heard on the bus (not the local ones), by name."""
        local = self.local()
        return [cam.overview() for name, cam in sorted(self.cameras.items()) if name not in local]

    def model_overview(self) -> dict[str, Any]:
        """/api/model of a web-only process: the latest model state on the bus, and the view's health."""
        base = dict(self.model) if self.model is not None else {
            "state": "unknown", "reason": "no model state heard on the bus yet", "since": None}
        return {**base, "bus": self.stats()}

    def stats(self) -> dict[str, Any]:
        return {"connected": self.connected, "connects": self.connects, "messages": self.messages,
                "cameras": len(self.cameras), "stale": sum(c.stale for c in self.cameras.values()),
                "bad": dict(self.bad), "last_error": self.last_error}

    def render_metrics(self) -> bytes:
        """Prometheus text of the view (a web-only process's /metrics)."""
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        view = self

        class _Collector:
            def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
                yield GaugeMetricFamily("corevad_bus_connected", "1 while subscribed to the bus.",
                                        value=float(view.connected))
                yield CounterMetricFamily("corevad_bus_messages", "Bus messages received.", value=view.messages)
                bad = CounterMetricFamily("corevad_bus_bad_messages", "Bus messages ignored, by reason.",
                                          labels=["reason"])
                for reason, n in sorted(view.bad.items()):
                    bad.add_metric([reason], n)
                yield bad
                yield GaugeMetricFamily("corevad_bus_cameras", "Cameras known from the bus.",
                                        value=len(view.cameras))
                yield GaugeMetricFamily("corevad_bus_stale_cameras", "Cameras with nothing heard for a while.",
                                        value=sum(c.stale for c in view.cameras.values()))

        registry = CollectorRegistry(auto_describe=True)
        registry.register(_Collector())
        return generate_latest(registry)


class GroupCameras:
    """/api/cameras of a monitor in a group: its own cameras first, then the group's others from the bus."""

    def __init__(self, local: Callable[[], list[dict[str, Any]]], bus: BusView) -> None:
        self.local, self.bus = local, bus

    def __call__(self) -> list[dict[str, Any]]:
        own = self.local()
        names = {c["name"] for c in own}
        return own + [c for c in self.bus.camera_overview() if c["name"] not in names]


# -- payload checks ----------------------------------------------------------------------------------------
def _text(payload: bytes, kind: str) -> str:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPayload(kind, "not UTF-8") from None
    if len(text) > 64:
        raise BadPayload(kind, f"{len(text)} characters; a {kind} is a short word")
    return text


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json_object(payload: bytes, kind: str) -> dict[str, Any]:
    try:
        body = json.loads(payload, parse_constant=_no_constant)  # NaN/Infinity: the page's JSON could not read it
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadPayload(kind, f"not JSON ({str(exc)[:80]})") from None
    if not isinstance(body, dict):
        raise BadPayload(kind, f"not a JSON object but {type(body).__name__}")
    return body


def _check_shape(kind: str, p: dict[str, Any]) -> None:
    """The fields the view and the page read, with their types; other fields pass through untouched."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise BadPayload(kind, what)

    if kind == "score":
        score = p.get("score")
        need(isinstance(p.get("index"), int), "no integer index")
        need(score is None or (isinstance(score, int | float) and not isinstance(score, bool)), "score not a number")
    elif kind == "status":
        need(isinstance(p.get("state") or p.get("status"), str), "no state")
    elif kind == "model":
        need(isinstance(p.get("state"), str), "no state")
    elif kind == "events":
        after = p.get("after")
        if not (isinstance(p.get("type"), str) and isinstance(after, dict)):
            raise BadPayload(kind, "no type or after")
        need(isinstance(after.get("camera"), str) and isinstance(after.get("id"), str), "after: no camera or id")
    elif kind == "alert":
        need(isinstance(p.get("id"), str), "no id")
    elif kind == "stats":
        need(isinstance(p.get("cameras", {}), dict), "cameras not an object")


def _cap(value: Any) -> str:
    return "" if value is None else str(value)[:_TEXT_CAP]


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
