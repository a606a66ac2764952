"""The config of `corevad-stream web`: the group's page with no cameras and no model.

It reads the sections a page needs (mqtt, store, metrics, runtime) with the monitor's own section classes, so
every default stays where it is. A monitor's whole config file is accepted as it is (validated whole, then
only those sections are used), so one file can serve a monitor and the page beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from corevad.schema import StrictModel

from ..errors import ConfigError
from ._errors import validation_errors
from .loading import merge_mappings, read_config_file
from .mqtt import MqttConfig
from .runtime import RuntimeConfig
from .store import StoreConfig
from .stream import StreamConfig
from .web import MetricsConfig

__all__ = ["WEB_SECTIONS", "WebConfig", "load_web_config", "web_config_from_dict"]

WEB_SECTIONS = ("mqtt", "store", "metrics", "runtime")


class WebConfig(StrictModel):
    """`corevad-stream web`: the bus to listen to, the store to read, the page's server."""

    mqtt: MqttConfig = Field(..., description="The broker and prefix the group's monitors publish to.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="The group's event store (history).")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="The page's HTTP server and its "
                                                                              "auth, as on a monitor.")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="state_dir (where the default "
                                                                              "store file is) and "
                                                                              "stats_interval_s (when a "
                                                                              "camera counts as stale).")


def web_config_from_dict(data: dict[str, Any], *, source: str = "<config>") -> WebConfig:
    """A web-only mapping (mqtt/store/metrics/runtime), or a monitor's whole config; one ConfigError line else."""
    try:
        if set(data) - set(WEB_SECTIONS):  # a monitor's file: everything in it must still be right
            monitor = StreamConfig.model_validate(data)
            data = {k: getattr(monitor, k) for k in WEB_SECTIONS if getattr(monitor, k) is not None}
            if "mqtt" not in data:
                raise ConfigError(f"{source}: mqtt: the group page reads the cameras' live state from the MQTT "
                                  "bus; this config has no mqtt section")
            return WebConfig(**data)
        if "mqtt" not in data or data["mqtt"] is None:
            raise ConfigError(f"{source}: mqtt: the group page reads the cameras' live state from the MQTT bus; "
                              "set mqtt (host, port, prefix of the monitors)")
        return WebConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid config: {validation_errors(exc)}") from None


def load_web_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> WebConfig:
    """Read and validate the web process's YAML config (errors name the file and the field)."""
    data = read_config_file(path)
    return web_config_from_dict(merge_mappings(data, overrides) if overrides else data, source=str(path))
