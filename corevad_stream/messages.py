"""What the runtime publishes: one Message type, routed to topics by kind (Frigate-style layout)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["available", "events", "score", "state", "status", "snapshot", "stats", "model", "alert"]

# Kinds published once for the whole monitor (<prefix>/<kind>); "model" is both (<prefix>/model for the
# model as a whole, <prefix>/<camera>/model for one camera's segments); the rest are per camera.
GLOBAL_KINDS: frozenset[str] = frozenset({"available", "events", "stats"})
EITHER_KINDS: frozenset[str] = frozenset({"model"})


@dataclass(frozen=True, slots=True)
class Message:
    """One outbound message. payload: a JSON-able dict, a plain string, or raw bytes (JPEG snapshot)."""

    kind: Kind
    payload: dict[str, Any] | str | bytes
    camera: str | None = None
    retain: bool = False
    alert_id: str | None = None  # a snapshot: the alert it shows (its payload is only the JPEG)

    def __post_init__(self) -> None:
        if self.kind not in EITHER_KINDS and (self.kind in GLOBAL_KINDS) != (self.camera is None):
            raise ValueError(f"message kind {self.kind!r} {'takes no' if self.camera else 'needs a'} camera")

    def topic(self, prefix: str) -> str:
        return f"{prefix}/{self.kind}" if self.camera is None else f"{prefix}/{self.camera}/{self.kind}"
