"""Sections `store` (the event store: alert history, status changes, scores) and `jsonl` (a JSON-lines copy)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from corevad.files import MIB
from corevad.schema import StrictModel

from ..security import read_secret
from ..store import Retention, StoreLocation, check_postgres_url
from .credentials import one_secret_source

__all__ = ["JsonlConfig", "StoreConfig"]

_RETENTION = Retention()  # the retention defaults live once, in the store's dataclass


class JsonlConfig(StrictModel):
    """Write every message as one JSON line (tests, replay, audits)."""

    path: Path = Field(..., description="Output file (appended).")
    kinds: list[str] | None = Field(None, description="Only these message kinds (default all).")


class StoreConfig(StrictModel):
    """The event store: alert history, status changes, per-segment scores, snapshots and the open-alert record
    (corevad_stream/store/): a sqlite file (WAL; the default) or a PostgreSQL database (`url`)."""

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

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, url: str | None) -> str | None:
        if url is not None:
            check_postgres_url(url, field="store.url")
        return url

    @model_validator(mode="after")
    def _one_backend(self) -> StoreConfig:
        one_secret_source(self.password_env, self.password_file, field="store.password")
        if self.url is not None and self.path is not None:
            raise ValueError("store: give path (sqlite) or url (PostgreSQL), not both")
        if self.url is None and (self.password_env or self.password_file):
            raise ValueError("store.password_env/password_file: only with store.url (sqlite has no password)")
        return self

    def db_path(self, state: Path, prefix: str) -> Path:
        """The sqlite file; it also holds the open-alert record when the history is off."""
        return self.path or state / f"events-{prefix.replace('/', '-')}.sqlite3"

    def retention(self) -> Retention:
        return Retention(days=self.retention_days, max_bytes=int(self.max_mb * MIB))

    def location(self, state: Path, prefix: str) -> StoreLocation:
        """Where the history and the open-alert record live; reads the PostgreSQL password now (SecretError
        naming store.password_env / store.password_file when it is missing)."""
        if self.url is None:
            return StoreLocation(path=self.db_path(state, prefix))
        secret = read_secret(env=self.password_env, file=self.password_file, field="store.password")
        return StoreLocation(url=self.url, password=None if secret is None else secret.get_secret_value())
