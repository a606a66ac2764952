"""Section `group`: monitors that share one camera list through leases in the shared PostgreSQL store
(corevad_stream/group.py). Its defaults live here, once."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

from pydantic import Field, model_validator

from corevad.schema import StrictModel

__all__ = ["GroupConfig", "default_monitor_id"]

MONITOR_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def default_monitor_id(state_dir: Path) -> str:
    """<hostname>-<6 hex of the state folder>: stable across restarts, distinct for the monitors of one host
    (the systemd template gives each instance its own state folder)."""
    host = socket.gethostname().split(".")[0] or "monitor"
    digest = hashlib.blake2b(str(state_dir.resolve()).encode(), digest_size=3).hexdigest()
    return f"{host}-{digest}"


class GroupConfig(StrictModel):
    """Share the cameras with other monitors that have the same camera list and the same store.url."""

    enabled: bool = Field(False, description="Run only the cameras this monitor holds a lease on.")
    monitor_id: str | None = Field(None, pattern=MONITOR_PATTERN,
                                   description="This monitor's name in the group (status messages, /api/cameras); "
                                               "default <hostname>-<hash of the state folder>.")
    lease_s: float = Field(10.0, ge=2, le=600, description="A lease not renewed for this long (database clock) "
                                                          "may be taken over by another monitor.")
    renew_s: float = Field(2.0, gt=0, le=120, description="Heartbeat, renew and rebalance period.")
    max_cameras: int | None = Field(None, ge=1, le=10_000, description="At most this many cameras on this "
                                                                       "monitor (default: no cap).")

    @model_validator(mode="after")
    def _periods(self) -> GroupConfig:
        if self.renew_s * 3 > self.lease_s:
            raise ValueError(f"group.renew_s ({self.renew_s:g}) must be at most a third of group.lease_s "
                             f"({self.lease_s:g}): a lease must survive two missed renewals")
        return self

    @property
    def margin_s(self) -> float:
        """How much sooner than the database the monitor itself stops trusting a lease (one renew period)."""
        return self.renew_s

    def monitor(self, state_dir: Path) -> str:
        return self.monitor_id or default_monitor_id(state_dir)
