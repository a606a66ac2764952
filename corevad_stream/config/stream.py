"""StreamConfig: the whole `corevad-stream run` config, built from one section class per concern."""

from __future__ import annotations

from typing import Literal, overload

from pydantic import Field, ValidationError, field_validator, model_validator

from corevad.schema import StrictModel

from ._errors import validation_errors
from .cameras import CameraConfig
from .group import GroupConfig
from .model import ModelConfig
from .mqtt import MqttConfig
from .runtime import OverloadPolicy, RuntimeConfig
from .scoring import AlertsConfig, RefinementConfig
from .store import JsonlConfig, StoreConfig
from .web import MetricsConfig

__all__ = ["StreamConfig"]

Section = Literal["alerts", "refinement"]
_SECTIONS: tuple[Section, ...] = ("alerts", "refinement")


class StreamConfig(StrictModel):
    """The whole `corevad-stream run` config."""

    cameras: list[CameraConfig] = Field(..., min_length=1, description="The cameras to watch.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Models.")
    refinement: RefinementConfig = Field(default_factory=RefinementConfig, description="Causal scoring.")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Alert hysteresis.")
    mqtt: MqttConfig | None = Field(None, description="MQTT sink (host, port, prefix, credentials, TLS, QoS, "
                                                      "outbox, embedded_broker); null = no MQTT.")
    jsonl: JsonlConfig | None = Field(None, description="JSONL sink; null = none.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Event store (alert history).")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Prometheus endpoint.")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="Runtime behaviour.")
    group: GroupConfig = Field(default_factory=GroupConfig, description="Share the cameras with other monitors "
                                                                        "(leases in the PostgreSQL store).")

    @field_validator("cameras")
    @classmethod
    def _unique(cls, cams: list[CameraConfig]) -> list[CameraConfig]:
        seen: set[str] = set()
        for cam in cams:
            if cam.name in seen:
                raise ValueError(f"camera name {cam.name!r} is used twice")
            seen.add(cam.name)
        return cams

    @model_validator(mode="after")
    def _group_needs_postgres(self) -> StreamConfig:
        url = getattr(self.store, "url", None) or ""
        if self.group.enabled and not str(url).startswith(("postgresql://", "postgres://")):
            raise ValueError("group.enabled needs store.url: postgresql://... (the leases live in the shared store)")
        return self

    @model_validator(mode="after")
    def _overrides(self) -> StreamConfig:
        if self.metrics.enabled and self.metrics.group_view and self.mqtt is None:
            raise ValueError("metrics.group_view: the group's cameras come from the MQTT bus; set the mqtt section "
                             "or turn group_view off")
        for i, cam in enumerate(self.cameras):
            if self.policy_for(cam) is OverloadPolicy.BLOCK and not cam.is_file:
                # A blocked RTSP reader falls behind the live stream and the server drops the session.
                raise ValueError(f"cameras.{i} ({cam.name}): overload_policy 'block' is lossless replay for "
                                 "files and frameless:// sources only; live cameras need drop_oldest or stride")
            for section in _SECTIONS:
                try:
                    self.camera_section(cam, section)
                except ValidationError as exc:
                    raise ValueError(f"cameras.{i}.{section}: {validation_errors(exc)}") from None
        return self

    @overload
    def camera_section(self, cam: CameraConfig, section: Literal["alerts"]) -> AlertsConfig: ...

    @overload
    def camera_section(self, cam: CameraConfig, section: Literal["refinement"]) -> RefinementConfig: ...

    def camera_section(self, cam: CameraConfig, section: Section) -> AlertsConfig | RefinementConfig:
        """The global section with the camera's overrides applied (validated)."""
        base: AlertsConfig | RefinementConfig = getattr(self, section)
        over = getattr(cam, section)
        return type(base)(**{**base.model_dump(), **over}) if over else base

    def policy_for(self, cam: CameraConfig) -> OverloadPolicy:
        return cam.overload_policy or self.runtime.overload_policy

    def enabled_cameras(self) -> list[CameraConfig]:
        return [c for c in self.cameras if c.enabled]

    def uses_features(self) -> bool:
        """Whether any enabled camera may score with CLIP features (otherwise CLIP need not be loaded)."""
        modes = {self.camera_section(c, "refinement").use_features for c in self.enabled_cameras()
                 if not c.url.startswith("frameless://")}
        if True in modes:
            return True
        if "auto" in modes and self.model.clip is not None:
            from corevad.models._device import gpu_available

            return gpu_available()
        return False

    def uses_text_context(self) -> bool:
        """Whether any enabled camera scores with text-anchored context (the sentence encoder is needed)."""
        return any(self.camera_section(c, "refinement").text_context for c in self.enabled_cameras())
