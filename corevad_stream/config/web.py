"""Section `metrics`: the HTTP server of /metrics, the review API and the page."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from ..security import is_loopback
from .credentials import SecretRef

__all__ = ["MetricsConfig"]


class MetricsConfig(SecretRef):
    """Prometheus endpoint (and the review API); loopback by default, any other address needs credentials."""

    secret_field: ClassVar[str] = "metrics.password"

    enabled: bool = Field(True, description="Serve /metrics.")
    host: str = Field("127.0.0.1", description="Bind address.")
    port: int = Field(9108, ge=0, le=65535, description="Port (0 = pick a free one).")

    @model_validator(mode="after")
    def _exposure(self) -> MetricsConfig:
        if self.enabled and not is_loopback(self.host) and not (self.username and self.has_password):
            raise ValueError(f"metrics.host {self.host!r} is not loopback: set metrics.username and "
                             "metrics.password_env or metrics.password_file")
        return self
