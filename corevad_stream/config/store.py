"""Sections `store` (the event store: alert history, status changes, scores) and `jsonl` (a JSON-lines copy)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from corevad.files import MIB
from corevad.schema import StrictModel

from ..store import Retention

__all__ = ["JsonlConfig", "StoreConfig"]

_RETENTION = Retention()  # the retention defaults live once, in the store's dataclass


class JsonlConfig(StrictModel):
    """Write every message as one JSON line (tests, replay, audits)."""

    path: Path = Field(..., description="Output file (appended).")
    kinds: list[str] | None = Field(None, description="Only these message kinds (default all).")


class StoreConfig(StrictModel):
    """The event store (sqlite, WAL): alert history, status changes, per-segment scores (corevad_stream/store.py)."""

    enabled: bool = Field(True, description="Keep the history in the event store.")
    path: Path | None = Field(None, description="sqlite file; default <state dir>/events-<prefix>.sqlite3.")
    url: str | None = Field(None, description="PostgreSQL instead of sqlite: postgresql://user@host:port/database "
                                              "(no password in it: password_env or password_file). Monitors "
                                              "of one group share it; another group needs its own database.")
    password_env: str | None = Field(None, min_length=1, description="Environment variable holding the "
                                                                     "PostgreSQL password.")
    password_file: Path | None = Field(None, description="File holding the PostgreSQL password (first line).")
    retention_days: float = Field(_RETENTION.days, gt=0, le=3650, description="Scores and status changes older "
                                                                              "than this are deleted (alerts are "
                                                                              "kept).")
    max_mb: float = Field(_RETENTION.max_bytes / MIB, gt=1, le=1_000_000,
                          description="Size cap of the file and its snapshots: the oldest scores and ended alerts' "
                                      "snapshots go first.")
    queue: int = Field(10_000, gt=0, le=1_000_000, description="Messages waiting for the disk; beyond this "
                                                               "they are dropped and counted.")

    def db_path(self, state: Path, prefix: str) -> Path:
        """The sqlite file; it also holds the open-alert record when the history is off."""
        return self.path or state / f"events-{prefix.replace('/', '-')}.sqlite3"
