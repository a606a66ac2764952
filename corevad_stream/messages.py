"""What the runtime publishes: one Message type, routed to topics by kind (Frigate-style layout).

Score, alert, status and model payloads travel as typed records (frozen dataclasses) from the stage that
made them to the sinks; only a sink turns them into JSON (`json_payload`), so latency stays a float until
then and nothing downstream reads a payload back by key. What each kind does (retained on MQTT, kept in
the event store, shown on the live page, never dropped by a full sink queue) is one table, KIND_POLICY, and
every MQTT topic is built by `topic()`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast, get_args

from corevad.alerts import Alert, AlertEvent

Kind = Literal["available", "events", "score", "state", "status", "snapshot", "stats", "model", "alert", "arming",
               "group"]

# A camera's retained <prefix>/<camera>/state (scoring.CameraScoring publishes it; the group's bus view reads
# it): one list, so a reader cannot fall behind a new state again.
CameraState = Literal["normal", "anomalous", "unknown", "disarmed"]
CAMERA_STATES: tuple[str, ...] = get_args(CameraState)

# Kinds published once for the whole monitor (<prefix>/<kind>); "model" is both (<prefix>/model for the
# model as a whole, <prefix>/<camera>/model for one camera's segments); the rest are per camera.
GLOBAL_KINDS: frozenset[str] = frozenset({"available", "events", "stats", "group"})
EITHER_KINDS: frozenset[str] = frozenset({"model"})


@dataclass(frozen=True, slots=True)
class KindPolicy:
    """retain: MQTT keeps the last one; store: the event store writes it; feed: the live page shows it;
    keep: a full sink queue never drops it (lifecycle messages; droppable ones go first)."""

    retain: bool
    store: bool
    feed: bool
    keep: bool


KIND_POLICY: Mapping[str, KindPolicy] = {
    "available": KindPolicy(retain=True, store=False, feed=False, keep=True),
    "events": KindPolicy(retain=False, store=True, feed=True, keep=True),
    "score": KindPolicy(retain=False, store=True, feed=True, keep=False),
    "state": KindPolicy(retain=True, store=False, feed=True, keep=True),
    "status": KindPolicy(retain=True, store=True, feed=True, keep=True),
    "snapshot": KindPolicy(retain=True, store=True, feed=True, keep=False),
    "stats": KindPolicy(retain=False, store=False, feed=False, keep=False),
    "model": KindPolicy(retain=True, store=True, feed=True, keep=True),
    "alert": KindPolicy(retain=True, store=False, feed=False, keep=True),
    # A camera's arming decision (corevad_stream.arming): Home Assistant's switch reads it.
    "arming": KindPolicy(retain=True, store=False, feed=False, keep=True),
    # A group member's view of the group (database ok/down, its cameras): not retained, since every member
    # of a group publishes under the same prefix; the payload names the monitor.
    "group": KindPolicy(retain=False, store=False, feed=True, keep=True),
}


def kinds_where(flag: Literal["retain", "store", "feed", "keep"]) -> frozenset[str]:
    return frozenset(k for k, p in KIND_POLICY.items() if getattr(p, flag))


def topic(prefix: str, kind: str, camera: str | None = None) -> str:
    """The one place MQTT topics are built: <prefix>/<kind> or <prefix>/<camera>/<kind>."""
    return f"{prefix}/{kind}" if camera is None else f"{prefix}/{camera}/{kind}"


class Record(Protocol):
    """A typed payload; to_json() is its wire form (called by sinks only)."""

    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoreRecord:
    """One segment's final score (available) or the model's failure for it (available False)."""

    index: int
    start: float
    end: float
    latency_s: float  # unrounded: metrics observe it as is; the wire form rounds to 0.1 ms
    model_s: float
    available: bool = True
    score: float | None = None
    refined: float | None = None
    label: float | None = None
    raw_label: int | None = None
    parsed: bool | None = None
    description: str | None = None
    chosen: int | None = None
    p_anomalous: float | None = None
    error: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        if not self.available:
            return {"index": self.index, "start": self.start, "end": self.end, "score": None, "available": False,
                    "error": self.error, "reason": self.reason, "latency_s": round(self.latency_s, 4),
                    "model_s": round(self.model_s, 4)}
        return {"index": self.index, "start": self.start, "end": self.end, "score": self.score,
                "refined": self.refined, "label": self.label, "raw_label": self.raw_label, "parsed": self.parsed,
                "description": self.description, "chosen": self.chosen, "latency_s": round(self.latency_s, 4),
                "model_s": round(self.model_s, 4), "available": True,
                **({} if self.p_anomalous is None else {"p_anomalous": round(self.p_anomalous, 6)})}


def _alert_json(alert: Alert | Mapping[str, Any]) -> dict[str, Any]:
    return alert.to_dict() if isinstance(alert, Alert) else dict(alert)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventTiming:
    """When the segment that drove an alert event ended, how long the model took, when it was scored."""

    segment_end: float
    model_s: float
    scored_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """What a phone notification needs from an alert event (corevad_stream.notify builds it): a title (the
    camera's display name and the first sentence of the explanation), the explanation (the alert's leading
    description), a severity (notify.SEVERITY_BANDS), and links to the snapshot and to the event on the
    review page (None when metrics.public_url is unset, or the camera keeps no snapshots)."""

    title: str
    explanation: str
    severity: str
    snapshot_url: str | None
    event_url: str | None

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "explanation": self.explanation, "severity": self.severity,
                "snapshot_url": self.snapshot_url, "event_url": self.event_url}


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertEventRecord:
    """An alert lifecycle event (<prefix>/events). before/after are Alerts, or the plain record of an alert
    a previous run left open (read back from the open-alert record at start). p_anomalous: the highest
    P(Anomalous) the model gave the alert's segments so far (None: not known); notice: the notification
    fields, added by dispatch before the event is published (their keys join the payload's top level)."""

    type: str
    before: Alert | Mapping[str, Any] | None
    after: Alert | Mapping[str, Any]
    timing: EventTiming | None = None
    p_anomalous: float | None = None
    notice: Notice | None = None

    @classmethod
    def of(cls, event: AlertEvent, timing: EventTiming | None = None, *,
           p_anomalous: float | None = None) -> AlertEventRecord:
        return cls(type=event.type, before=event.before, after=event.after, timing=timing, p_anomalous=p_anomalous)

    @property
    def camera(self) -> str:
        a = self.after
        return a.camera if isinstance(a, Alert) else str(a.get("camera"))

    @property
    def active(self) -> bool:
        a = self.after
        return a.active if isinstance(a, Alert) else bool(a.get("active"))

    def after_json(self) -> dict[str, Any]:
        return _alert_json(self.after)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "before": None if self.before is None else _alert_json(self.before),
               "after": self.after_json()}
        if self.timing is not None:
            t = self.timing
            out["timing"] = {"segment_end": t.segment_end, "model_s": round(t.model_s, 6), "scored_at": t.scored_at}
        if self.p_anomalous is not None:
            out["p_anomalous"] = round(self.p_anomalous, 6)
        if self.notice is not None:
            out.update(self.notice.to_json())
        return out


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """A camera's latest alert (<prefix>/<camera>/alert, retained: Home Assistant's attributes)."""

    alert: Alert

    def to_json(self) -> dict[str, Any]:
        return self.alert.to_dict()


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusRecord:
    """A camera's connection state (<prefix>/<camera>/status); reason and url already redacted. monitor: the
    monitor that watches the camera (its group member id; a lone monitor names itself too)."""

    online: bool
    state: str
    reason: str
    url: str
    reconnects: int
    time: float
    monitor: str  # the monitor that owns the camera (group.monitor_id; a lone monitor names itself too)
    arming: Mapping[str, Any] | None = None  # corevad_stream.arming.Arming.to_json(): armed, state, until, source

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "online" if self.online else "offline", "state": self.state,
                               "reason": self.reason, "url": self.url, "reconnects": self.reconnects,
                               "time": self.time, "monitor": self.monitor}
        if self.arming is not None:
            out["arming"] = dict(self.arming)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRecord:
    """Model health (<prefix>/model, <prefix>/<camera>/model): state, reason, since when, error counts."""

    state: str
    reason: str
    since: float
    last_success: float | None
    errors: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "since": round(self.since, 3),
                "last_success": None if self.last_success is None else round(self.last_success, 3),
                "errors": dict(self.errors)}


Payload = ScoreRecord | AlertEventRecord | AlertRecord | StatusRecord | ModelRecord | dict[str, Any] | str | bytes


@dataclass(frozen=True, slots=True)
class Message:
    """One outbound message. payload: a typed record, a JSON-able dict (stats), a string, or raw bytes (JPEG).

    retain: None takes the kind's policy (KIND_POLICY).
    """

    kind: Kind
    payload: Payload
    camera: str | None = None
    retain: bool | None = None
    alert_id: str | None = None  # a snapshot: the alert it shows (its payload is only the JPEG)

    def __post_init__(self) -> None:
        if self.kind not in KIND_POLICY:
            raise ValueError(f"unknown message kind {self.kind!r}")
        if self.kind not in EITHER_KINDS and (self.kind in GLOBAL_KINDS) != (self.camera is None):
            raise ValueError(f"message kind {self.kind!r} {'takes no' if self.camera else 'needs a'} camera")
        if self.retain is None:
            object.__setattr__(self, "retain", KIND_POLICY[self.kind].retain)

    def topic(self, prefix: str) -> str:
        return topic(prefix, self.kind, self.camera)

    @property
    def policy(self) -> KindPolicy:
        return KIND_POLICY[self.kind]

    def json_payload(self) -> dict[str, Any] | str | bytes:
        """The payload's wire form (a record serialised; anything else as it is). For sinks."""
        p = self.payload
        if isinstance(p, dict | str | bytes):
            return p
        return cast(Record, p).to_json()

    def serialised(self) -> Message:
        """This message with its wire-form payload (what sinks that keep messages, like MemorySink, hold)."""
        p = self.payload
        return self if isinstance(p, dict | str | bytes) else dataclasses.replace(self, payload=self.json_payload())

    @property
    def owner(self) -> str | None:
        """The camera the message is about: its camera, or an alert event's camera."""
        if self.camera is None and isinstance(self.payload, AlertEventRecord):
            return self.payload.camera
        return self.camera
