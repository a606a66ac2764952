"""Section `mqtt`: broker, topics, credentials, TLS, QoS, outbox, Home Assistant discovery, embedded broker.

The sink (corevad_stream.sinks.mqtt) and the embedded broker (corevad_stream.broker) import these classes;
the schema imports neither, so it sits below every stage.
"""

from __future__ import annotations

import enum
import hashlib
import socket
import ssl
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from corevad.paths import state_dir
from corevad.schema import BackoffConfig, StrictModel

from ..errors import ConfigError
from ..security import is_loopback, read_secret
from .credentials import SecretRef, one_secret_source

__all__ = ["EmbeddedBrokerConfig", "HomeAssistantConfig", "MqttConfig", "MqttOutboxConfig", "MqttQosConfig",
           "MqttReconnectConfig", "MqttTlsConfig", "OutboxFullPolicy", "QoS", "check_topic_prefix"]

QoS = Literal[0, 1, 2]


class OutboxFullPolicy(enum.StrEnum):
    """Which message goes when the outbox is full (both are counted and logged as errors)."""

    DROP_OLDEST = "drop_oldest"  # keep the newest alerts: what an operator acts on now
    DROP_NEWEST = "drop_newest"  # keep history intact, refuse new entries


def check_topic_prefix(value: str, *, field: str) -> str:
    """A topic prefix we publish under: ValueError naming `field` for one a broker would refuse or hide.

    Why each rule: '+' and '#' are subscription wildcards, and a PUBLISH to a topic holding one is a protocol
    error that closes the connection (every publish failed and read as "broker unreachable"); topics starting
    with '$' are the broker's own ($SYS/...), which it drops silently; NUL is not allowed in a topic; an empty
    level at either end makes topics that subscribers to <prefix>/# do not expect.
    """
    if not value or value.startswith("/") or value.endswith("/"):
        raise ValueError(f"{field} {value!r} must be non-empty, without a leading or trailing '/'")
    bad = sorted({c for c in value if c in "+#\0"})
    if bad:
        raise ValueError(f"{field} {value!r} must not hold the MQTT wildcard(s) {' '.join(map(repr, bad))} "
                         "(a topic with one cannot be published to)")
    if value.startswith("$"):
        raise ValueError(f"{field} {value!r} must not start with '$' (topics like $SYS/... are the broker's own; "
                         "it drops what clients publish there)")
    return value


class MqttTlsConfig(StrictModel):
    """TLS to the broker (present = enabled)."""

    ca_file: Path | None = Field(None, description="CA bundle (PEM) that signed the broker's certificate; "
                                                   "default: the system trust store.")
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: Path | None = Field(None, description="Private key (PEM) of the client certificate.")
    key_password_env: str | None = Field(None, description="Environment variable with the key's passphrase.")
    key_password_file: Path | None = Field(None, description="File with the key's passphrase.")
    verify_hostname: bool = Field(True, description="Check the broker certificate's name against `host` "
                                                    "(turn off only for self-signed test setups).")

    @model_validator(mode="after")
    def _pairs(self) -> MqttTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls: cert_file and key_file go together")
        one_secret_source(self.key_password_env, self.key_password_file, field="tls.key_password")
        return self

    def context(self) -> ssl.SSLContext:
        """The client's SSL context (ConfigError naming mqtt.tls when a file cannot be loaded)."""
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            if self.cert_file is not None:
                password = read_secret(env=self.key_password_env, file=self.key_password_file,
                                       field="mqtt.tls.key_password")
                ctx.load_cert_chain(str(self.cert_file), str(self.key_file),
                                    password=password.get_secret_value() if password else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"mqtt.tls: cannot load certificates: {exc}") from None
        ctx.check_hostname = self.verify_hostname
        return ctx


class MqttQosConfig(StrictModel):
    """QoS per message kind."""

    events: QoS = Field(1, description="Alert lifecycle messages (>= 1 for the outbox to know they arrived).")
    score: QoS = Field(0, description="Per-segment scores.")
    state: QoS = Field(1, description="Retained per-camera normal/anomalous state.")
    status: QoS = Field(1, description="Retained per-camera online/offline status.")
    available: QoS = Field(1, description="Retained monitor availability (and its last will).")
    snapshot: QoS = Field(0, description="Retained per-camera JPEG snapshot.")
    stats: QoS = Field(0, description="Periodic counters on <prefix>/stats.")
    model: QoS = Field(1, description="Retained model health (ok/degraded/down) on <prefix>/model and "
                                      "<prefix>/<camera>/model.")
    alert: QoS = Field(1, description="Retained latest alert of a camera on <prefix>/<camera>/alert.")
    arming: QoS = Field(1, description="Retained arming state of a camera on <prefix>/<camera>/arming.")
    group: QoS = Field(1, description="A group member's view of the group on <prefix>/group (database ok/down, "
                                      "its cameras).")


class MqttReconnectConfig(BackoffConfig):
    """Backoff between connection attempts: the one backoff shape (initial_s, max_s, factor, jitter); the
    section's first spelling, min_delay_s / max_delay_s, is still accepted."""

    initial_s: float = Field(0.5, gt=0, le=3600, validation_alias=AliasChoices("initial_s", "min_delay_s"),
                             description="First retry delay (also: min_delay_s).")
    max_s: float = Field(30.0, gt=0, le=3600, validation_alias=AliasChoices("max_s", "max_delay_s"),
                         description="Longest retry delay (also: max_delay_s).")
    # Many monitors behind one broker: spread their retries wider than cameras' (0.2).
    jitter: float = Field(0.3, ge=0, le=1, description="Each delay is scaled by a random factor in "
                                                       "[1 - jitter, 1] so many monitors do not retry in step.")


class MqttOutboxConfig(StrictModel):
    """The on-disk queue of undelivered events."""

    path: Path | None = Field(None, description="sqlite file; default <runtime.state_dir>/mqtt-outbox-"
                                                "<prefix>.sqlite3 (state_dir: $XDG_STATE_HOME/corevad, else "
                                                "~/.local/state/corevad). One monitor per file.")
    max_messages: int = Field(10_000, gt=0, description="Most undelivered events kept (about a day of "
                                                        "alerts from 100 cameras).")
    when_full: OutboxFullPolicy = Field(OutboxFullPolicy.DROP_OLDEST, description="drop_oldest or "
                                        "drop_newest; every drop is counted and logged as an error.")


class HomeAssistantConfig(StrictModel):
    """Home Assistant MQTT discovery (section `mqtt.home_assistant`)."""

    discovery: bool = Field(False, description="Announce every camera to Home Assistant (anomaly binary sensor "
                                               "with the explanation, score, status, model state, snapshot).")
    discovery_prefix: str = Field("homeassistant", min_length=1, max_length=128,
                                  description="Home Assistant's discovery prefix (no wildcards, no leading $).")

    @field_validator("discovery_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return check_topic_prefix(value, field="discovery_prefix")


class EmbeddedBrokerConfig(SecretRef):
    """The in-process amqtt broker (section `mqtt.embedded_broker`); the sink then connects to it."""

    secret_field: ClassVar[str] = "embedded_broker.password"

    enabled: bool = Field(False, description="Start an amqtt broker inside the monitor and publish to it.")
    host: str = Field("127.0.0.1", description="Bind address. Anything but loopback requires username and "
                                               "a password (anonymous clients are then refused).")
    port: int = Field(1883, ge=0, le=65535, description="TCP port (0 = pick a free one).")

    @model_validator(mode="after")
    def _exposure(self) -> EmbeddedBrokerConfig:
        if self.username and not self.has_password:
            raise ValueError("embedded_broker: username and a password (password_env or password_file) go "
                             "together")
        if self.enabled and not is_loopback(self.host) and not self.username:
            raise ValueError(f"embedded_broker.host {self.host!r} is not loopback: refusing an anonymous "
                             "broker on the network; set embedded_broker.username and password_env or "
                             "password_file")
        return self


class MqttConfig(SecretRef):
    """MQTT output (section `mqtt`). Secrets only by reference: environment variables or files."""

    secret_field: ClassVar[str] = "mqtt.password"

    host: str = Field("127.0.0.1", description="Broker host (ignored when embedded_broker.enabled).")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (ignored when embedded_broker.enabled).")
    prefix: str = Field("corevad", max_length=128,
                        description="Topic prefix: <prefix>/events, <prefix>/<camera>/score, ... (no wildcards, "
                                    "no leading $).")
    client_id: str | None = Field(None, description="MQTT client id; default corevad-<prefix>-<hostname>-<6 "
                                                    "hex naming the outbox file>, unique per monitor.")
    keepalive_s: int = Field(30, ge=5, le=65535, description="MQTT keepalive; the broker publishes the "
                                                            "offline will about 1.5x this after a silent death.")
    connect_timeout_s: float = Field(10.0, gt=0, description="Give up one connection attempt after this.")
    publish_timeout_s: float = Field(10.0, gt=0, description="Treat the link as dead when an acknowledged "
                                                             "publish takes longer than this.")
    tls: MqttTlsConfig | None = Field(None, description="TLS settings; null = plain TCP.")
    qos: MqttQosConfig = Field(default_factory=MqttQosConfig, description="QoS per message kind.")
    reconnect: MqttReconnectConfig = Field(default_factory=MqttReconnectConfig, description="Retry backoff.")
    outbox: MqttOutboxConfig = Field(default_factory=MqttOutboxConfig, description="Durable event queue.")
    snapshots: bool = Field(True, description="Publish retained <prefix>/<camera>/snapshot JPEGs.")
    live_queue: int = Field(1000, gt=0, description="Non-event messages waiting while connected; beyond "
                                                    "this the oldest are dropped (counted).")
    drain_timeout_s: float = Field(5.0, ge=0, description="At shutdown, time allowed to deliver pending "
                                                          "events; the rest stay in the outbox.")
    home_assistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig,
                                                description="Home Assistant MQTT discovery.")
    embedded_broker: EmbeddedBrokerConfig = Field(default_factory=EmbeddedBrokerConfig,
                                                  description="Run an amqtt broker in-process and use it.")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return check_topic_prefix(value, field="prefix")

    def default_client_id(self, outbox: Path | None = None) -> str:
        """client_id, else corevad-<prefix>-<hostname>-<6 hex of the outbox path>: two monitors on one host
        with one prefix (each with its own state_dir, so its own outbox) must not take over each other's
        session, and a restarted monitor keeps its id."""
        if self.client_id:
            return self.client_id
        path = str((outbox or self.outbox_path()).resolve())
        tag = hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()[:6]  # a name tag, not a secret
        return f"corevad-{self.prefix.replace('/', '-')}-{socket.gethostname()}"[:56] + f"-{tag}"

    def outbox_path(self, state: Path | None = None) -> Path:
        """outbox.path, else mqtt-outbox-<prefix>.sqlite3 in `state` (the monitor's runtime.state_dir)."""
        if self.outbox.path is not None:
            return self.outbox.path
        return (state or state_dir()) / f"mqtt-outbox-{self.prefix.replace('/', '-')}.sqlite3"
