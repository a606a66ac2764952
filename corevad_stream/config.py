"""The runtime config: one validated YAML schema (pydantic, extra fields forbidden); it is the one home of defaults."""

from __future__ import annotations

import enum
import re
from dataclasses import fields as dc_fields
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from corevad.alerts import AlertParams
from corevad.backoff import BackoffPolicy
from corevad.files import MIB, InputFileError, read_text_checked
from corevad.models.config import ClipConfig, VLMConfig
from corevad.models.text import DEFAULT_TEXT_MODEL
from corevad.params import CausalParams
from corevad.paths import state_dir

from .errors import ConfigError
from .redact import redact
from .security import SecretError, is_loopback, read_secret

# Method defaults live once, in corevad's dataclasses; the schema reads them from there.
_CAUSAL = CausalParams()
_ALERTS = AlertParams()

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$"


class _Strict(BaseModel):
    # No inf/nan: `fps: .inf` or `shutdown_timeout_s: 1e308`-style values must fail here, not crash later.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class OverloadPolicy(enum.StrEnum):
    """What the batcher does when segments arrive faster than the model answers."""

    DROP_OLDEST = "drop_oldest"  # live: keep the freshest segments, drop the oldest waiting ones
    STRIDE = "stride"  # live: keep every k-th segment of a backlogged camera (k doubles while behind)
    BLOCK = "block"  # replay: lossless, the source waits for room (never for live cameras)


class RefinementConfig(_Strict):
    """CausalParams fields (see corevad.params.CausalParams); position weighting never applies live."""

    tau: float = Field(_CAUSAL.tau, gt=0, description="Softmax temperature of the refinement.")
    lrc_lookback: int = Field(_CAUSAL.lrc_lookback, ge=0, le=1000,
                              description="LRC candidates reach this many segments back.")
    lrc_lookahead: int = Field(_CAUSAL.lrc_lookahead,
                               ge=0, le=1, description="LRC lookahead: 0 or 1 segment (adds delay).")
    refine_window: int = Field(_CAUSAL.refine_window,
                               gt=0, le=10_000, description="Softmax refinement over the last N cleaned responses.")
    smooth_length: int = Field(_CAUSAL.smooth_length,
                               gt=0, le=10_000, description="Causal Gaussian over the past N refined scores.")
    smooth_sigma: float = Field(_CAUSAL.smooth_sigma, gt=0, description="Sigma of the causal Gaussian (segments).")
    smooth_lookahead: int = Field(_CAUSAL.smooth_lookahead,
                                  ge=0, le=100, description="Future taps of the Gaussian (adds delay).")
    renormalise_visual: bool = Field(_CAUSAL.renormalise_visual, description="Re-normalise the mean frame embedding.")
    use_features: bool | Literal["auto"] = Field(
        "auto", description="CLIP features (the paper's causal LRC + softmax refinement) for cameras with frames: "
                            "true, false, or auto (the default: on where a CUDA GPU is present and model.clip "
                            "loads, the deployment the paper's design assumes; off on CPU machines, where "
                            "segments are scored from labels or with text_context). Thresholds were tuned "
                            "text-only: re-tune them for CLIP scores.")
    lrc: bool = Field(True, description="Local response cleaning (needs use_features).")
    text_context: bool = Field(False, description="Text-anchored context refinement (no CLIP): weigh the "
                                                  "labels of recent answers by the similarity of this answer to "
                                                  "their descriptions (model.text encodes them).")
    text_window: int = Field(_CAUSAL.text_window, gt=0, le=10_000, description="Answers the context looks back on.")
    text_tau: float = Field(_CAUSAL.text_tau, gt=0, le=10, description="Softmax temperature of the context.")
    text_mix: float = Field(_CAUSAL.text_mix, ge=0, le=1, description="Weight of the context against the "
                                                                      "segment's own label.")
    segment_score: Literal["label", "p_anomalous"] = Field(
        "label", description="What each answer contributes: its binary label (the paper), or the backend's "
                             "P(Anomalous) where it gives one (transformers; servers with logprobs), the label "
                             "elsewhere. The thresholds were tuned on labels: p_anomalous is not measured "
                             "with real weights yet.")
    start_prior: bool = Field(_CAUSAL.start_prior, description="At a stream's start, count the missing "
                                                               "smoothing history as normal (no alert on "
                                                               "one anomalous first answer).")

    @model_validator(mode="after")
    def _one_refinement(self) -> RefinementConfig:
        if self.use_features is True and self.text_context:
            raise ValueError("use_features: true (CLIP) and text_context are exclusive: choose one, or "
                             "use_features: auto (CLIP where frames and a GPU exist, the text context elsewhere)")
        return self

    def params(self) -> CausalParams:
        known = {f.name for f in dc_fields(CausalParams)}
        return CausalParams(**{k: v for k, v in self.model_dump().items() if k in known})


class AlertsConfig(_Strict):
    """Alert hysteresis on the refined score (corevad.alerts.AlertParams)."""

    open_threshold: float = Field(_ALERTS.open_threshold,
                                  ge=0, le=1, description="An alert opens when the score reaches this.")
    close_threshold: float = Field(_ALERTS.close_threshold,
                                   ge=0, le=1, description="The score must stay below this ...")
    close_after_s: float = Field(_ALERTS.close_after_s,
                                 ge=0, le=86400, description="... for this many seconds for the alert to end.")
    cooldown_s: float = Field(_ALERTS.cooldown_s, ge=0, le=86400,
                              description="No new alert on the camera this long after one ends.")
    explanation_top_k: int = Field(_ALERTS.top_k, gt=0, le=100,
                                   description="Descriptions kept in an alert's explanation.")
    update_min_delta: float = Field(_ALERTS.update_min_delta,
                                    ge=0, description="An update is sent when the peak grows this much.")
    rank_explanations: bool = Field(True, description="Rank an alert's descriptions by how much they read like "
                                                      "an anomaly (needs the text encoder: "
                                                      "refinement.text_context).")
    max_unscored_s: float = Field(_ALERTS.max_unscored_s, ge=0, le=86400,
                                  description="An open alert whose camera gets no valid model answer waits "
                                              "this long, then ends with reason 'model unavailable'.")
    snapshot: bool = Field(True, description="Attach a JPEG of the peak segment's middle frame.")
    snapshot_quality: int = Field(80, ge=10, le=100, description="JPEG quality of snapshots.")

    @model_validator(mode="after")
    def _order(self) -> AlertsConfig:
        if self.close_threshold > self.open_threshold:
            raise ValueError(f"close_threshold ({self.close_threshold}) must be <= open_threshold "
                             f"({self.open_threshold})")
        return self

    def params(self) -> AlertParams:
        return AlertParams(open_threshold=self.open_threshold, close_threshold=self.close_threshold,
                           close_after_s=self.close_after_s, cooldown_s=self.cooldown_s,
                           top_k=self.explanation_top_k, update_min_delta=self.update_min_delta,
                           max_unscored_s=self.max_unscored_s)


class ReconnectConfig(_Strict):
    """Exponential backoff with jitter for cameras that fail, stall or end unexpectedly."""

    initial_s: float = Field(1.0, gt=0, le=3600, description="First retry delay.")
    max_s: float = Field(30.0, gt=0, le=3600, description="Retry delays grow up to this.")
    factor: float = Field(2.0, ge=1, le=100, description="Growth factor per failed attempt.")
    jitter: float = Field(0.2, ge=0, le=1, description="Each delay is scaled by a random factor in "
                                                       "[1 - jitter, 1] so cameras do not retry in step.")
    open_timeout_s: float = Field(10.0, gt=0, le=600, description="Give up opening a stream after this.")
    stall_timeout_s: float = Field(10.0, gt=0, le=600, description="No complete segment for this long = "
                                                                   "stalled; reconnect.")

    def policy(self) -> BackoffPolicy:
        return BackoffPolicy(initial_s=self.initial_s, max_s=max(self.max_s, self.initial_s), factor=self.factor,
                             jitter=self.jitter)


class CameraConfig(_Strict):
    """One camera (RTSP or any URL FFmpeg opens) or video file."""

    name: str = Field(..., pattern=_NAME_PATTERN, description="Topic-safe name: letters, digits, _ and -.")
    url: str = Field(..., min_length=1, max_length=4096,
                     description="rtsp://..., http(s)://..., a file path, or sample://demo "
                                                    "(a clip generated on first use).")
    enabled: bool = Field(True, description="False skips the camera.")
    fps: float | None = Field(None, gt=0, le=240, description="Override the stream's reported frame rate.")
    rate: Literal["native", "fast"] = Field("native", description="Files: play at the native frame rate "
                                                                  "(live simulation) or as fast as possible.")
    loop: bool = Field(False, description="Files: start again at the end (demo cameras).")
    overload_policy: OverloadPolicy | None = Field(None, description="Override runtime.overload_policy.")
    alerts: dict[str, Any] = Field(default_factory=dict, description="Per-camera overrides of `alerts`.")
    refinement: dict[str, Any] = Field(default_factory=dict, description="Per-camera overrides of "
                                                                         "`refinement`.")

    @property
    def is_file(self) -> bool:
        """Files, generated samples and frame-less replay: finite sources read at their own pace."""
        return "://" not in self.url or self.url.startswith(("file://", "sample://", "frameless://"))

    @property
    def safe_url(self) -> str:
        return redact(self.url)

    def __repr_args__(self) -> Any:  # never show credentials, in repr, str or tracebacks
        for key, value in super().__repr_args__():
            yield key, (self.safe_url if key == "url" else value)


class TextModelConfig(_Strict):
    """The sentence encoder of text-anchored context refinement (corevad.models.text)."""

    model: str = Field(DEFAULT_TEXT_MODEL, min_length=1, description="sentence-transformers hub id or local "
                                                                     "folder, or 'clip' for CLIP's text tower.")
    device: str = Field("cpu", description="Device of the encoder (a small model: cpu is fine).")


class ModelConfig(_Strict):
    """Which VLM backend and CLIP encoder run in the worker (corevad.models configs)."""

    tiny: bool = Field(False, description="Use tiny RANDOM models (tests, demo without weights): the whole "
                                          "path runs, but scores and explanations are meaningless.")
    vlm: VLMConfig = Field(default_factory=VLMConfig, description="VLM backend (corevad.models.VLMConfig).")
    clip: ClipConfig | None = Field(default_factory=ClipConfig, description="CLIP encoder "
                                    "(corevad.models.ClipConfig); null disables CLIP features.")
    text: TextModelConfig = Field(default_factory=lambda: TextModelConfig(), description="Sentence encoder "
                                  "for refinement.text_context (loaded only when a camera uses it).")


class MetricsConfig(_Strict):
    """Prometheus endpoint, review page and API; loopback by default, any other address needs credentials."""

    enabled: bool = Field(True, description="Serve /metrics.")
    host: str = Field("127.0.0.1", description="Bind address.")
    port: int = Field(9108, ge=0, le=65535, description="Port (0 = pick a free one).")
    username: str | None = Field(None, min_length=1, description="Basic-auth user (required off loopback).")
    password_env: str | None = Field(None, description="Env var with the basic-auth password.")
    password_file: Path | None = Field(None, description="File with the basic-auth password.")
    allowed_hosts: list[str] = Field(default_factory=list, max_length=100, description=(
        "More names the server answers in the Host header (besides the bind address, and the localhost names "
        "on a loopback bind): the name users type, e.g. monitor.lan; '*' = any (behind a proxy that checks "
        "it). Other names get 421, so a DNS-rebinding page cannot read the API."))

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
        has_password = bool(self.password_env or self.password_file)
        if self.username and not has_password:
            raise ValueError("metrics.username is set without a password: set metrics.password_env or "
                             "metrics.password_file (a user without a password is not 'no auth')")
        if has_password and not self.username:
            raise ValueError("metrics.password_env/password_file is set without metrics.username")
        if self.enabled and not is_loopback(self.host) and not self.username:
            raise ValueError(f"metrics.host {self.host!r} is not loopback: set metrics.username and "
                             "metrics.password_env or metrics.password_file")
        return self

    def password(self) -> SecretStr | None:
        secret = read_secret(env=self.password_env, file=self.password_file, field="metrics.password")
        if secret is not None and not secret.get_secret_value().strip():
            where = (f"metrics.password_file: {self.password_file}" if self.password_file is not None
                     else f"metrics.password_env: environment variable {self.password_env}")
            raise SecretError(f"{where} is empty (an empty password lets anyone in)")
        return secret


class JsonlConfig(_Strict):
    """Write every message as one JSON line (tests, replay, audits)."""

    path: Path = Field(..., description="Output file (appended).")
    kinds: list[str] | None = Field(None, description="Only these message kinds (default all).")


class StoreConfig(_Strict):
    """The event store (sqlite, WAL): alert history, status changes, per-segment scores (corevad_stream/store.py)."""

    enabled: bool = Field(True, description="Keep the history in the event store.")
    path: Path | None = Field(None, description="sqlite file; default <state dir>/events-<prefix>.sqlite3.")
    retention_days: float = Field(30.0, gt=0, le=3650, description="Scores and status changes older than "
                                                                   "this are deleted (alerts are kept).")
    max_mb: float = Field(512.0, gt=1, le=1_000_000,
                          description="Size cap of the file and its snapshots: the oldest scores and ended alerts' "
                                      "snapshots go first.")
    queue: int = Field(10_000, gt=0, le=1_000_000, description="Messages waiting for the disk; beyond this "
                                                               "they are dropped and counted.")

    def db_path(self, state: Path, prefix: str) -> Path:
        """The sqlite file; it also holds the open-alert record when the history is off."""
        return self.path or state / f"events-{prefix.replace('/', '-')}.sqlite3"


class RuntimeConfig(_Strict):
    """Segmenting, batching and overload behaviour."""

    frames_per_segment: int = Field(8, gt=0, le=64, description="Frames sampled per 1-second segment for the VLM.")
    frame_size: int = Field(448, ge=16, le=2048, description="Sampled frames are resized once at ingest to this "
                                                             "square size (RGB).")
    segment_seconds: float = Field(1.0, gt=0, le=60, description="Segment length in seconds of stream.")
    max_batch: int = Field(8, gt=0, le=1024, description="Most segments per model call.")
    # 0 by default: while the model is busy, segments queue up and form batches anyway; waiting when it is
    # idle only adds latency (alert latency is a target, see tools/bench_stream.py).
    max_wait_s: float = Field(0.0, ge=0, le=60, description="Longest wait for a batch to fill once one segment is in.")
    overlap_preprocessing: bool = Field(True, description="Preprocess the next batch (CPU) while the model runs "
                                                          "this one (backends with a prepare step: transformers).")
    overload_policy: OverloadPolicy = Field(OverloadPolicy.DROP_OLDEST, description="drop_oldest, stride "
                                                                                    "or block (lossless).")
    max_pending_per_camera: int = Field(3, gt=0, le=1000, description="Segments a camera may have waiting.")
    max_pending_total: int = Field(64, gt=0, le=100_000, description="Segments waiting over all cameras.")
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig, description="Camera retries.")
    stats_interval_s: float = Field(10.0, gt=0, le=3600, description="Period of <prefix>/stats messages "
                                                                     "and of the plain stats log line.")
    sink_queue: int = Field(1000, gt=0, le=100_000_000, description="Messages buffered per sink (oldest "
                                                                  "non-event dropped).")
    shutdown_timeout_s: float = Field(10.0, gt=0, le=600, description="Time to flush in-flight work on shutdown "
                                                                      "(one deadline for sources, model, scoring).")
    model_down_after_s: float = Field(15.0, gt=0, le=3600, description="The model state goes `down` when no "
                                      "valid answer came for this long (failures, or a batch in flight).")
    state_dir: Path | None = Field(None, description="Where the event store (with the record of open alerts "
                                                     "kept across restarts) and the MQTT outbox live (default "
                                                     "$XDG_STATE_HOME/corevad or ~/.local/state/corevad).")

    def state_path(self) -> Path:
        return self.state_dir or state_dir()


class StreamConfig(_Strict):
    """The whole `corevad-stream run` config."""

    cameras: list[CameraConfig] = Field(..., min_length=1, description="The cameras to watch.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Models.")
    refinement: RefinementConfig = Field(default_factory=RefinementConfig, description="Causal scoring.")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Alert hysteresis.")
    mqtt: Any = Field(None, description="MQTT sink (corevad_stream.sinks.mqtt.MqttConfig: host, port, prefix, "
                                        "credentials, TLS, QoS, outbox, embedded_broker); null = no MQTT.")
    jsonl: JsonlConfig | None = Field(None, description="JSONL sink; null = none.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Event store (alert history).")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Prometheus endpoint.")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="Runtime behaviour.")

    @field_validator("mqtt", mode="before")
    @classmethod
    def _mqtt(cls, value: Any) -> Any:
        if value is None:
            return None
        from .sinks.mqtt import MqttConfig  # imported here: the config module stays light

        return value if isinstance(value, MqttConfig) else MqttConfig.model_validate(value)

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
    def _overrides(self) -> StreamConfig:
        for i, cam in enumerate(self.cameras):
            if self.policy_for(cam) is OverloadPolicy.BLOCK and not cam.is_file:
                # A blocked RTSP reader falls behind the live stream and the server drops the session.
                raise ValueError(f"cameras.{i} ({cam.name}): overload_policy 'block' is lossless replay for "
                                 "files and frameless:// sources only; live cameras need drop_oldest or stride")
            for section in ("alerts", "refinement"):
                try:
                    self.camera_section(cam, section)
                except ValidationError as exc:
                    raise ValueError(f"cameras.{i}.{section}: {_errors(exc)}") from None
        return self

    def camera_section(self, cam: CameraConfig, section: Literal["alerts", "refinement"]) -> Any:
        """The global section with the camera's overrides applied (validated)."""
        base = getattr(self, section)
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


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = redact(str(err["msg"])).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def merge_mappings(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into `base`, nested mappings key by key (config overrides)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_mappings(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(read_text_checked(path, limit=MIB, what="config file", allow_empty=True))
    except InputFileError as exc:
        raise ConfigError(str(exc)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {redact(str(exc))}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def config_from_dict(data: dict[str, Any], *, source: str = "<config>") -> StreamConfig:
    """Validate a config mapping; every default lives in the schema (method defaults in corevad.params)."""
    try:
        return StreamConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid config: {_errors(exc)}") from None


def load_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> StreamConfig:
    """Read and validate a YAML config; errors name the file and the field (URLs redacted)."""
    p = Path(path)
    data = _read_yaml(p)
    if overrides:
        data = merge_mappings(data, overrides)
    return config_from_dict(data, source=str(p))
