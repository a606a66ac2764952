"""Section `metrics`: the HTTP server of /metrics, the review API and the page."""

from __future__ import annotations

import re
from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from ..security import SecretError, is_loopback
from .credentials import SecretRef

__all__ = ["MetricsConfig"]


class MetricsConfig(SecretRef):
    """Prometheus endpoint, review page and API; loopback by default, any other address needs credentials."""

    secret_field: ClassVar[str] = "metrics.password"

    enabled: bool = Field(True, description="Serve /metrics.")
    host: str = Field("127.0.0.1", description="Bind address.")
    port: int = Field(9108, ge=0, le=65535, description="Port (0 = pick a free one).")
    group_view: bool = Field(False, description=(
        "Also show the cameras of the other monitors publishing under the same mqtt.prefix (live from the bus; "
        "the alert history is the store's): one page for a group. Needs the mqtt section."))
    allowed_hosts: list[str] = Field(default_factory=list, max_length=100, description=(
        "More names the server answers in the Host header (besides the bind address, and the localhost names "
        "on a loopback bind): the name users type, e.g. monitor.lan; '*' = any (behind a proxy that checks "
        "it). Other names get 421, so a DNS-rebinding page cannot read the API."))

    public_url: str | None = Field(None, max_length=2048, description=(
        "The review page's address as people's phones and Home Assistant reach it (http(s)://host[:port][/path], "
        "e.g. https://monitor.example.net or http://192.168.1.20:9108): alert events then carry absolute "
        "snapshot_url and event_url links. None: those links are null (the monitor cannot know its own public "
        "address)."))

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, url: str | None) -> str | None:
        if url is None or not url.strip():
            return None
        url = url.strip()
        try:
            parts = urlsplit(url)
            port_ok = parts.port is None or parts.port > 0
        except ValueError as exc:
            raise ValueError(f"{url[:80]!r} is not a URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            raise ValueError(f"{url[:80]!r}: expected http(s)://host[:port][/path]")
        if parts.username is not None or parts.password is not None:
            # The links go out in every alert event (MQTT, the store, phones): never a password in them.
            raise ValueError("holds credentials (user:password@): links in alert events must not carry them")
        if parts.query or parts.fragment or any(c.isspace() or not c.isprintable() for c in url):
            raise ValueError(f"{url[:80]!r}: no query, fragment, spaces or control characters")
        return url.rstrip("/")

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, hosts: list[str]) -> list[str]:
        for i, h in enumerate(hosts):
            if h != "*" and not re.fullmatch(r"[A-Za-z0-9_.\-]{1,253}|\[?[0-9A-Fa-f:.]{2,45}\]?", h):
                raise ValueError(f"allowed_hosts.{i}: {h[:80]!r} is not a host name or address (no port, no "
                                 "scheme; '*' = any)")
        return hosts

    @model_validator(mode="after")
    def _exposure(self) -> MetricsConfig:
        # Basic auth with a user and no password would be "no auth" in disguise.
        if self.username and not self.has_password:
            raise ValueError("metrics.username is set without a password: set metrics.password_env or "
                             "metrics.password_file (a user without a password is not 'no auth')")
        if self.enabled and not is_loopback(self.host) and not self.username:
            raise ValueError(f"metrics.host {self.host!r} is not loopback: set metrics.username and "
                             "metrics.password_env or metrics.password_file")
        return self

    def password(self) -> SecretStr | None:
        secret = super().password()
        if secret is not None and not secret.get_secret_value().strip():
            where = (f"metrics.password_file: {self.password_file}" if self.password_file is not None
                     else f"metrics.password_env: environment variable {self.password_env}")
            raise SecretError(f"{where} is empty (an empty password lets anyone in)")
        return secret
