"""The one strict base of every config schema (the method's and the runtime's) and the one backoff shape.

Why here, in the method library: the model schema (corevad.models.config) needs the base too, and corevad
never imports the runtime, so the runtime's schema (corevad_stream.config) builds on this module instead.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .backoff import BackoffPolicy

__all__ = ["BackoffConfig", "StrictModel"]

_BACKOFF = BackoffPolicy()  # the backoff defaults live once, in the policy dataclass


class StrictModel(BaseModel):
    """Frozen, unknown keys refused (a typo is an error, not a silently ignored key), no inf/nan anywhere:
    `timeout_s: .inf` passes `gt=0` and then waits forever, `fps: .nan` passes every bound."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BackoffConfig(StrictModel):
    """Exponential backoff with jitter between retries (corevad.backoff.BackoffPolicy)."""

    initial_s: float = Field(_BACKOFF.initial_s, gt=0, le=3600, description="First retry delay.")
    max_s: float = Field(_BACKOFF.max_s, gt=0, le=3600, description="Retry delays grow up to this.")
    factor: float = Field(_BACKOFF.factor, ge=1, le=100, description="Growth factor per failed attempt.")
    jitter: float = Field(_BACKOFF.jitter, ge=0, le=1, description="Each delay is scaled by a random factor in "
                                                                   "[1 - jitter, 1] so clients do not retry in step.")

    def policy(self) -> BackoffPolicy:
        # A max below the first delay means "never wait longer than the first delay", not an error.
        return BackoffPolicy(initial_s=self.initial_s, max_s=max(self.max_s, self.initial_s), factor=self.factor,
                             jitter=self.jitter)
