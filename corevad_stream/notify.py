"""What a phone notification needs from each alert event: a title, the explanation, a severity and two links.

Why here and not in the app that receives the event: every consumer (the Home Assistant blueprint in docs/,
an ntfy or Telegram bridge, a script) would otherwise rebuild the same title, guess a severity and need to
know the review page's address. Dispatch adds these fields (messages.Notice) to every `new`, `update` and
`end` event before it is published; the end events of alerts a previous run left open get them too.

Severity: one table, SEVERITY_BANDS, read top down. The evidence is the alert's peak score (the causal score
its hysteresis opened on) capped by the highest P(Anomalous) the model gave any of the alert's segments, where
the model gives one (logprobs): a high score the model itself was unsure about is not "high". Without
P(Anomalous) (a backend without logprobs, an alert left open by a previous run) the peak score alone decides.
With the default open threshold (0.999) every alert opens "high" unless the model's probability says less;
cameras with a lower open threshold get "medium" and "low" alerts too.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .config import StreamConfig
from .config.cameras import FRAMELESS_SCHEME, CameraConfig
from .messages import AlertEventRecord, Message, Notice

__all__ = ["SEVERITY_BANDS", "TITLE_SENTENCE_MAX", "CameraNotice", "Notifier", "first_sentence", "severity"]

# (severity, lowest evidence) from the top: the first band whose floor the evidence reaches.
SEVERITY_BANDS: tuple[tuple[str, float], ...] = (("high", 0.99), ("medium", 0.8), ("low", 0.0))
# A notification title is one line on a lock screen: the sentence is cut (with an ellipsis) past this.
TITLE_SENTENCE_MAX = 120
NO_EXPLANATION = "anomaly"  # the title's second half when the alert has no description (yet)

_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def severity(peak_score: float, p_anomalous: float | None = None) -> str:
    """The alert's severity (SEVERITY_BANDS) from its peak score, capped by P(Anomalous) where known."""
    evidence = peak_score if p_anomalous is None else min(peak_score, p_anomalous)
    for name, floor in SEVERITY_BANDS:
        if evidence >= floor:
            return name
    return SEVERITY_BANDS[-1][0]  # below every floor (or not a number): the lowest band


def first_sentence(text: str, limit: int = TITLE_SENTENCE_MAX) -> str:
    """The first sentence of text, whitespace collapsed, cut at a word boundary with '…' past limit."""
    flat = " ".join(text.split())
    m = _SENTENCE_END.search(flat)
    sentence = flat[: m.end()] if m else flat
    if len(sentence) <= limit:
        return sentence
    cut = sentence[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"


@dataclass(frozen=True, slots=True)
class CameraNotice:
    """What the notification fields need from a camera's config: its display name, whether it keeps
    snapshots: a source with frames, and alerts.snapshot both globally (the model worker keeps snapshot
    frames only then) and for the camera."""

    title_name: str
    snapshots: bool

    @classmethod
    def of(cls, cfg: StreamConfig, cam: CameraConfig) -> CameraNotice:
        keeps = (cfg.alerts.snapshot and cfg.camera_section(cam, "alerts").snapshot
                 and not cam.url.startswith(FRAMELESS_SCHEME))
        return cls(title_name=cam.title_name, snapshots=keeps)


class Notifier:
    """Adds the notification fields to alert events (complete); public_url: the review page's public address
    (metrics.public_url) or None, which leaves both links None."""

    def __init__(self, *, public_url: str | None, cameras: Mapping[str, CameraNotice] | None = None,
                 snapshots: bool = True) -> None:
        if public_url is not None and not public_url.startswith(("http://", "https://")):
            raise ValueError(f"public_url must be an http(s) URL, got {public_url[:80]!r}")
        self.public_url = None if public_url is None else public_url.rstrip("/")
        self.cameras = dict(cameras or {})
        self.snapshots = snapshots  # for a camera not in the config (added at run time): alerts.snapshot

    @classmethod
    def from_config(cls, cfg: StreamConfig) -> Notifier:
        return cls(public_url=cfg.metrics.public_url, snapshots=cfg.alerts.snapshot,
                   cameras={c.name: CameraNotice.of(cfg, c) for c in cfg.cameras})

    def camera(self, name: str) -> CameraNotice:
        return self.cameras.get(name) or CameraNotice(title_name=name, snapshots=self.snapshots)

    def notice(self, record: AlertEventRecord) -> Notice:
        after: dict[str, Any] = record.after_json()
        alert_id = str(after.get("id", ""))
        cam = self.camera(str(after.get("camera", "")))
        explanations = [e for e in after.get("explanation") or () if isinstance(e, str) and e.strip()]
        explanation = explanations[0].strip() if explanations else ""
        title = f"{cam.title_name}: {first_sentence(explanation) or NO_EXPLANATION}"
        peak = after.get("peak_score")
        level = severity(float(peak) if isinstance(peak, int | float) else 0.0, record.p_anomalous)
        event_url = snapshot_url = None
        if self.public_url is not None and alert_id:
            ref = quote(alert_id, safe="")
            event_url = f"{self.public_url}/#event={ref}"  # the review page's event view (corevad.js route)
            if cam.snapshots:
                snapshot_url = f"{self.public_url}/api/events/{ref}/snapshot"
        return Notice(title=title, explanation=explanation, severity=level, snapshot_url=snapshot_url,
                      event_url=event_url)

    def complete(self, message: Message) -> Message:
        """An alert event message with its notification fields; any other message as it is."""
        p = message.payload
        if not isinstance(p, AlertEventRecord):
            return message
        return dataclasses.replace(message, payload=dataclasses.replace(p, notice=self.notice(p)))
