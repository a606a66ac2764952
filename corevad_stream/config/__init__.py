"""The runtime config: one validated YAML schema (pydantic), one section module per concern; the one home of
the runtime's defaults (the method's live in corevad.params and corevad.alerts, the model names in
corevad.defaults).

Every section builds on corevad.schema.StrictModel (unknown keys refused, frozen, no inf/nan); credentials on
SecretRef (user + password_env | password_file); backoff settings on corevad.schema.BackoffConfig. The schema
imports no stage and no sink: they import it.
"""

from __future__ import annotations

from corevad.schema import BackoffConfig, StrictModel

from ..errors import ConfigError
from .cameras import DEFAULT_FPS, NAME_PATTERN, CameraConfig, frameless_spec
from .credentials import SecretRef
from .group import GroupConfig
from .loading import CONFIGS_PACKAGE, config_from_dict, load_config, merge_mappings, read_config_file, shipped_config
from .model import ModelConfig, TextModelConfig
from .mqtt import (
    EmbeddedBrokerConfig,
    HomeAssistantConfig,
    MqttConfig,
    MqttOutboxConfig,
    MqttQosConfig,
    MqttReconnectConfig,
    MqttTlsConfig,
    OutboxFullPolicy,
    QoS,
    check_topic_prefix,
)
from .runtime import OverloadPolicy, ReconnectConfig, RuntimeConfig
from .scoring import AlertsConfig, RefinementConfig
from .store import JsonlConfig, StoreConfig
from .stream import StreamConfig
from .web import MetricsConfig

__all__ = [
    "CONFIGS_PACKAGE", "DEFAULT_FPS", "NAME_PATTERN", "AlertsConfig", "BackoffConfig", "CameraConfig",
    "ConfigError", "EmbeddedBrokerConfig", "GroupConfig", "HomeAssistantConfig", "JsonlConfig", "MetricsConfig",
    "ModelConfig",
    "MqttConfig", "MqttOutboxConfig", "MqttQosConfig", "MqttReconnectConfig", "MqttTlsConfig", "OutboxFullPolicy",
    "OverloadPolicy", "QoS", "ReconnectConfig", "RefinementConfig", "RuntimeConfig", "SecretRef", "StoreConfig",
    "StreamConfig", "StrictModel", "TextModelConfig", "check_topic_prefix", "config_from_dict", "frameless_spec",
    "load_config", "merge_mappings", "read_config_file", "shipped_config",
]
