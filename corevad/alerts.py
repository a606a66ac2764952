"""Alert hysteresis on per-segment scores: open above one threshold, close below another, cooldown.

Pure and synchronous: the runtime feeds one final score per segment and publishes the events returned.
Durations are measured on a caller-supplied clock (seconds of stream by default = segment end times),
so replayed video (faster than real time) behaves like live video.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

EventType = Literal["new", "update", "end"]

# Why an alert ended (the `end_reason` of its end event).
END_SCORE = "score below close threshold"
END_STREAM = "end of stream"
END_UNSCORED = "model unavailable"


@dataclass(frozen=True, slots=True)
class AlertParams:
    """Hysteresis thresholds and timings."""

    # Chosen by the tuning protocol (tools/tune_causal.py) on the tune half of UCF-Crime, text-only scores.
    open_threshold: float = 0.999
    close_threshold: float = 0.699
    close_after_s: float = 30.0
    cooldown_s: float = 120.0
    top_k: int = 3
    # An update is emitted when the peak grows by at least this much (or the explanation changes).
    update_min_delta: float = 0.05
    # An open alert whose camera gets no valid model answer waits (neither updated nor ended by the gap)
    # for this long on the alert clock, then ends with reason "model unavailable".
    max_unscored_s: float = 120.0

    def __post_init__(self) -> None:
        if not 0 <= self.close_threshold <= self.open_threshold <= 1:
            raise ValueError(f"need 0 <= close_threshold ({self.close_threshold}) <= open_threshold "
                             f"({self.open_threshold}) <= 1")
        if self.close_after_s < 0 or self.cooldown_s < 0 or self.max_unscored_s < 0:
            raise ValueError("close_after_s, cooldown_s and max_unscored_s must be >= 0")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert's state; `before`/`after` of an event are two of these."""

    id: str
    camera: str
    start_index: int
    start_time: float
    peak_index: int
    peak_score: float
    score: float
    last_index: int
    explanation: tuple[str, ...]
    end_index: int | None = None
    end_time: float | None = None
    end_reason: str | None = None
    # Two-phase delivery (describe on_demand): segments that drove this alert whose descriptions are still to
    # come, and those whose description pass failed (their verdicts stand; the explanation lacks them).
    descriptions_pending: int = 0
    descriptions_missing: int = 0

    @property
    def active(self) -> bool:
        return self.end_time is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "camera": self.camera, "active": self.active,
            "start_time": self.start_time, "end_time": self.end_time,
            "start_segment": self.start_index, "end_segment": self.end_index,
            "last_segment": self.last_index, "peak_segment": self.peak_index,
            "peak_score": self.peak_score, "score": self.score,
            "explanation": list(self.explanation), "end_reason": self.end_reason,
            # Only where descriptions come after verdicts, so describe: all alerts read exactly as before.
            **({"descriptions_pending": self.descriptions_pending} if self.descriptions_pending else {}),
            **({"descriptions_missing": self.descriptions_missing} if self.descriptions_missing else {}),
        }


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A lifecycle event: new (before is None), update, or end."""

    type: EventType
    before: Alert | None
    after: Alert

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "before": self.before.to_dict() if self.before else None,
                "after": self.after.to_dict()}


@dataclass(slots=True)
class _Open:
    alert: Alert
    relevance: dict[str, float] = field(default_factory=dict)
    order: dict[str, int] = field(default_factory=dict)
    last_above_clock: float = 0.0
    last_scored_clock: float = 0.0
    unscored_until: float | None = None  # clock of the last unanswered segment since the last scored one
    announced_peak: float = 0.0
    last_end: float = 0.0
    waiting: dict[int, float] = field(default_factory=dict)  # segment -> driver weight, description to come
    missing: set[int] = field(default_factory=set)  # segments whose description was lost


class AlertTracker:
    """Per-camera hysteresis state machine.

    run_id: goes into alert ids (<camera>-<run_id>-<start segment>) so ids of two runs of a live monitor
    never collide; without it ids are <camera>-<start segment> (deterministic, for offline replays).
    """

    def __init__(self, camera: str, params: AlertParams = AlertParams(), *, run_id: str | None = None) -> None:
        self.camera = camera
        self.params = params
        self.run_id = run_id
        self._open: _Open | None = None
        self._cooldown_until = float("-inf")

    @property
    def active(self) -> Alert | None:
        return self._open.alert if self._open else None

    @property
    def state(self) -> Literal["normal", "anomalous"]:
        return "anomalous" if self._open else "normal"

    def update(self, *, index: int, start: float, end: float, score: float,
               drivers: Sequence[tuple[str, float]] = (), clock: float | None = None,
               waiting: Sequence[tuple[int, float]] = (), missing: Sequence[int] = ()) -> list[AlertEvent]:
        """Feed segment `index` ([start, end) wall-clock) with its final score.

        drivers: (description, weight) pairs explaining this score (the segments whose answers drove
        it); weights add up over the alert and the heaviest descriptions form the explanation.
        clock: the time hysteresis durations are measured on (defaults to `end`).
        waiting: (segment, weight) drivers whose description is still to come (describe() adds it);
        missing: driving segments whose description was lost (counted in the alert).
        """
        now = end if clock is None else clock
        p = self.params
        if self._open is None:
            if score < p.open_threshold or now < self._cooldown_until:
                return []
            alert_id = f"{self.camera}-{self.run_id}-{index}" if self.run_id else f"{self.camera}-{index}"
            alert = Alert(id=alert_id, camera=self.camera, start_index=index, start_time=start,
                          peak_index=index, peak_score=score, score=score, last_index=index, explanation=())
            self._open = _Open(alert, last_above_clock=now, last_scored_clock=now, announced_peak=score,
                               last_end=end)
            self._add_drivers(drivers, waiting, missing)
            self._open.alert = self._counted(replace(self._open.alert, explanation=self._explanation()))
            return [AlertEvent("new", None, self._open.alert)]
        op = self._open
        before = op.alert
        op.last_end = end
        if op.unscored_until is not None:
            # The close countdown pauses while answers were missing: that stretch was not "below".
            op.last_above_clock += max(0.0, op.unscored_until - op.last_scored_clock)
            op.unscored_until = None
        op.last_scored_clock = now
        self._add_drivers(drivers, waiting, missing)
        peak = score > before.peak_score
        after = self._counted(replace(before, score=score, last_index=index, explanation=self._explanation(),
                                      peak_index=index if peak else before.peak_index,
                                      peak_score=score if peak else before.peak_score))
        op.alert = after
        if score >= p.close_threshold:
            op.last_above_clock = now
        elif now - op.last_above_clock >= p.close_after_s:
            return [self._end(before, index, end, now, END_SCORE)]
        grew = after.peak_score >= op.announced_peak + p.update_min_delta
        if grew or after.explanation[:1] != before.explanation[:1]:
            op.announced_peak = after.peak_score if grew else op.announced_peak
            return [AlertEvent("update", before, after)]
        return []

    def describe(self, index: int, text: str | None, *, weight: float = 1.0) -> list[AlertEvent]:
        """Segment `index`'s description has come (two-phase delivery): where it drove the open alert, it joins
        the explanation with its drivers' weight x `weight` (None: it was lost, and the alert counts it).
        An update goes out when the explanation or the missing count changed, or the last awaited description
        came; the scores are not touched."""
        op = self._open
        if op is None or index not in op.waiting:
            return []
        w = op.waiting.pop(index)
        before = op.alert
        if text is None:
            op.missing.add(index)
        else:
            self._add_drivers([(text, w * weight)])
        after = self._counted(replace(before, explanation=self._explanation()))
        op.alert = after
        if (after.explanation != before.explanation or after.descriptions_missing != before.descriptions_missing
                or after.descriptions_pending == 0):
            return [AlertEvent("update", before, after)]
        return []

    def unscored(self, *, clock: float, segment: bool = True) -> list[AlertEvent]:
        """No valid model answer up to `clock` (same clock as update()): an open alert waits, neither updated
        nor ended by the gap (its close countdown pauses), until max_unscored_s have passed since its last
        scored segment; then it ends. segment=False: a timer check only, no unanswered segment to record."""
        op = self._open
        if op is None:
            return []
        if segment:
            op.unscored_until = max(op.unscored_until or clock, clock)
        if clock - op.last_scored_clock < self.params.max_unscored_s:
            return []
        return [self._end(op.alert, op.alert.last_index, op.last_end, clock, END_UNSCORED)]

    def close(self, *, index: int | None = None, end: float | None = None, reason: str = END_STREAM
              ) -> list[AlertEvent]:
        """End of stream or shutdown: end an open alert now (at `end`, default its last segment)."""
        if self._open is None:
            return []
        before = self._open.alert
        last = before.last_index if index is None else index
        return [self._end(before, last, end if end is not None else self._open.last_end, None, reason)]

    def _end(self, before: Alert, index: int, end: float, now: float | None, reason: str) -> AlertEvent:
        assert self._open is not None
        after = replace(self._open.alert, end_index=index, end_time=end, end_reason=reason)
        self._open = None
        if now is not None:
            self._cooldown_until = now + self.params.cooldown_s
        return AlertEvent("end", before, after)

    def _add_drivers(self, drivers: Sequence[tuple[str, float]], waiting: Sequence[tuple[int, float]] = (),
                     missing: Sequence[int] = ()) -> None:
        assert self._open is not None
        op = self._open
        for seg, weight in waiting:
            if weight > 0:
                op.waiting[seg] = op.waiting.get(seg, 0.0) + float(weight)
        op.missing.update(missing)
        for text, weight in drivers:
            text = text.strip()
            if not text or weight <= 0:
                continue
            op.relevance[text] = op.relevance.get(text, 0.0) + float(weight)
            op.order.setdefault(text, len(op.order))

    def _counted(self, alert: Alert) -> Alert:
        assert self._open is not None
        return replace(alert, descriptions_pending=len(self._open.waiting),
                       descriptions_missing=len(self._open.missing))

    def _explanation(self) -> tuple[str, ...]:
        assert self._open is not None
        rel, order = self._open.relevance, self._open.order
        ranked = sorted(rel, key=lambda t: (-rel[t], order[t]))
        return tuple(ranked[: self.params.top_k])
