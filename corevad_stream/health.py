"""Model health as a state: ok / degraded / down, with the reason and since when.

Why a state and not a counter: a model that did not answer is not a model that said "Normal". The worker
reports every batch (and every segment) as answered or failed; this turns those outcomes into a state that
is published retained, so subscribers see an outage instead of a quiet scene. A model that answers
nothing at all (a hung server) produces no outcomes, so a watchdog marks it down once a batch has been in
flight for `down_after_s`.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .messages import ModelRecord


class ModelState(enum.StrEnum):
    OK = "ok"  # the last answer was valid
    DEGRADED = "degraded"  # recent answers failed, for less than down_after_s
    DOWN = "down"  # no valid answer for down_after_s (or a batch hung that long)
    UNKNOWN = "unknown"  # nothing answered yet


@dataclass(frozen=True, slots=True)
class HealthChange:
    state: ModelState
    reason: str
    since: float  # wall-clock seconds


class ModelHealth:
    """One scope's health (the whole model, or one camera's segments). Call from one thread (the loop)."""

    def __init__(self, *, down_after_s: float) -> None:
        if down_after_s < 0:
            raise ValueError(f"down_after_s must be >= 0, got {down_after_s}")
        self.down_after_s = down_after_s
        self.state = ModelState.UNKNOWN
        self.reason = ""
        self.since = time.time()
        self.errors: Counter[str] = Counter()
        self.last_success: float | None = None  # wall clock
        self._failing_since: float | None = None  # monotonic, first failure since the last success

    def success(self) -> HealthChange | None:
        self.last_success = time.time()
        self._failing_since = None
        return self._set(ModelState.OK, "")

    def failure(self, kind: str, reason: str, *, now: float | None = None) -> HealthChange | None:
        t = time.monotonic() if now is None else now
        self.errors[kind] += 1
        if self._failing_since is None:
            self._failing_since = t
        down = t - self._failing_since >= self.down_after_s or (self.last_success is None and self.errors.total() > 1)
        return self._set(ModelState.DOWN if down else ModelState.DEGRADED, f"{kind}: {reason}")

    def stalled(self, seconds: float) -> HealthChange | None:
        """The watchdog: a batch has been in flight this long without any outcome."""
        if seconds < self.down_after_s:
            return None
        return self._set(ModelState.DOWN, f"no answer for over {self.down_after_s:g} s (model busy or hung)")

    def _set(self, state: ModelState, reason: str) -> HealthChange | None:
        if state == self.state and (state is ModelState.OK or reason.split(":")[0] == self.reason.split(":")[0]):
            self.reason = reason
            return None
        if state != self.state:
            self.since = time.time()
        self.state, self.reason = state, reason
        return HealthChange(state, reason, self.since)

    def record(self) -> ModelRecord:
        """The state as published on <prefix>/model (and <prefix>/<camera>/model)."""
        return ModelRecord(state=self.state.value, reason=self.reason, since=self.since,
                           last_success=self.last_success, errors=dict(self.errors))

    def snapshot(self) -> dict[str, Any]:
        """The record's JSON form (the HTTP API's /api/model, the stats)."""
        return self.record().to_json()
