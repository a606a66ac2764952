"""One exponential backoff with jitter for every retry loop (camera reconnects, MQTT, model requests).

Why a class of its own: the delay must never overflow or exceed its cap, whatever the attempt count
(a camera that fails 1,024 times in a row computed 2.0**1024 and died), and an external hint such as
HTTP Retry-After is clamped to the same cap so one server reply cannot put a worker to sleep for an hour.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffPolicy:
    """initial_s * factor**attempt, capped at max_s, each delay scaled by a random factor in [1 - jitter, 1]."""

    initial_s: float = 1.0
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not (math.isfinite(self.initial_s) and self.initial_s >= 0):
            raise ValueError(f"backoff initial_s must be a finite number >= 0, got {self.initial_s!r}")
        if not (math.isfinite(self.max_s) and self.max_s >= self.initial_s):
            raise ValueError(f"backoff max_s must be finite and >= initial_s, got {self.max_s!r}")
        if not (math.isfinite(self.factor) and self.factor >= 1):
            raise ValueError(f"backoff factor must be a finite number >= 1, got {self.factor!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter must be in [0, 1], got {self.jitter!r}")

    def base(self, attempt: int) -> float:
        """The un-jittered delay before retry `attempt` (0-based); never overflows."""
        if self.factor == 1 or self.initial_s == 0:
            return min(self.max_s, self.initial_s)
        # Compare in log space: factor**attempt itself overflows a float long before attempts run out.
        if max(attempt, 0) * math.log(self.factor) >= math.log(self.max_s / self.initial_s):
            return self.max_s
        return min(self.max_s, self.initial_s * self.factor ** max(attempt, 0))


class Backoff:
    """The attempt counter over a BackoffPolicy: next_delay() after a failure, reset() after a success."""

    def __init__(self, policy: BackoffPolicy, *, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng or random.Random()
        self.attempt = 0

    def next_delay(self, *, at_least: float | None = None) -> float:
        """The delay before the next try, in [0, max_s]; `at_least` (a server's Retry-After) raises it,
        never past max_s."""
        p = self.policy
        delay = p.base(self.attempt) * (1.0 - p.jitter * self.rng.random())
        self.attempt += 1
        if at_least is not None and math.isfinite(at_least):
            delay = max(delay, at_least)
        return min(max(delay, 0.0), p.max_s)

    def reset(self) -> None:
        self.attempt = 0
