"""Validated model settings (VLM backend and CLIP) that the offline commands and the runtime YAML share."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..defaults import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED, DEFAULT_VLM_MODEL
from ..schema import BackoffConfig, StrictModel

__all__ = ["DEFAULT_VLM_MODEL", "ClipConfig", "DType", "Device", "OpenAIOptions", "RetryBackoff", "VLMConfig"]

Device = str  # "auto", "cpu", "cuda", "cuda:1", ...
DType = Literal["auto", "float32", "bfloat16", "float16"]


class RetryBackoff(BackoffConfig):
    """The wait before a failed request is retried (`openai.retry`): initial_s, doubling up to max_s."""

    initial_s: float = Field(1.0, gt=0, le=3600, description="First retry delay (also: openai.backoff_s).")
    # 10 s: a live monitor must not sit out a long Retry-After while the server may be back already.
    max_s: float = Field(10.0, gt=0, le=3600, description="Longest wait between retries, a server's Retry-After "
                                                          "included (also: openai.max_backoff_s).")
    # One monitor's retries of one request need no spreading: the pool sends them to another replica first.
    jitter: float = Field(0.0, ge=0, le=1, description="Each delay is scaled by a random factor in [1 - jitter, 1].")


class OpenAIOptions(StrictModel):
    """How to reach an OpenAI-compatible chat-completions server (vLLM, LMDeploy, transformers serve...)."""

    @model_validator(mode="before")
    @classmethod
    def _first_spelling(cls, data: Any) -> Any:
        """backoff_s / max_backoff_s, the section's first spelling, still work: they fill `retry`."""
        if not isinstance(data, dict) or not ({"backoff_s", "max_backoff_s"} & data.keys()):
            return data
        data = dict(data)
        retry = data.get("retry") or {}
        retry = dict(retry.model_dump() if isinstance(retry, BackoffConfig) else retry)
        for old, new in (("backoff_s", "initial_s"), ("max_backoff_s", "max_s")):
            if old in data:
                retry.setdefault(new, data.pop(old))
        data["retry"] = retry
        return data

    base_url: str | list[str] = Field(
        default="http://127.0.0.1:8000/v1",
        description="Server root including /v1, or a list of replicas (one per GPU or machine): each segment goes "
                    "to the least loaded healthy one, a failed segment is retried on another.")
    model: str = Field(default="OpenGVLab/InternVL2-8B", description="Model name the server expects.")
    api_key_env: str | None = Field(
        default="OPENAI_API_KEY", description="Environment variable holding the API key (unset: no key sent)."
    )
    timeout_s: float = Field(default=120.0, gt=0, le=3600, description="Per-request timeout in seconds.")
    connect_timeout_s: float = Field(default=10.0, gt=0, le=600, description="TCP connect timeout in seconds.")
    max_retries: int = Field(default=3, ge=0, le=100,
                             description="Retries on timeouts, connection errors, 429 and 5xx.")
    retry: RetryBackoff = Field(default_factory=lambda: RetryBackoff(),
                                description="Waits before retrying a failed request (the one backoff shape; the "
                                            "first spelling backoff_s / max_backoff_s is still accepted).")
    concurrency: int = Field(default=4, ge=1, le=4096, description="Requests in flight at once (all replicas "
                                                                    "together).")
    eject_after: int = Field(default=3, ge=1, le=1000, description="A replica with this many failures in a "
                                                                    "row is taken out of the pool ...")
    probe_interval_s: float = Field(default=5.0, gt=0, le=3600, description="... and probed (GET /models) this "
                                                                           "often until it answers again.")
    logprobs: bool | Literal["auto"] = Field(
        default="auto", description="Ask for the first token's logprobs (the label's probability, p_anomalous). "
                                    "auto: stop asking a replica that rejects the field (transformers serve).")
    top_logprobs: int = Field(default=10, ge=1, le=20, description="Alternatives per token asked for.")
    jpeg_quality: int = Field(default=90, ge=1, le=100, description="JPEG quality of the frames sent.")
    max_side: int | None = Field(
        default=448, ge=16, description="Downscale frames so their longer side is at most this (None: send as is)."
    )
    square: bool = Field(
        default=True, description="Resize each frame to max_side x max_side (one InternVL tile per frame, as the "
                                  "live path and the paper); False keeps the aspect ratio (a server may tile it).")
    max_response_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, le=1024 ** 3,
        description="Largest response body read; a larger one fails its segment (kind too_large), unread.")
    describe_via: Literal["two_requests", "stop"] = Field(
        default="stop",
        description="describe on_demand over HTTP: stop (one request that stops at 'Normal scenes.'; the faster of "
                    "the two through vLLM-CPU, but describe_above cannot ask for more) or two_requests (a 4-token "
                    "verdict request with logprobs, then the full request where a description is needed).")
    temperature: float = Field(default=0.0, ge=0, description="0 = greedy, as in the paper.")
    extra_body: dict[str, object] = Field(
        default_factory=dict, description="Extra JSON fields merged into each request body."
    )

    @field_validator("base_url")
    @classmethod
    def _urls(cls, v: str | list[str]) -> str | list[str]:
        urls = [v] if isinstance(v, str) else v
        if not urls:
            raise ValueError("give at least one server URL")
        for u in urls:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"{u!r} is not an http(s) URL")
        if len(set(urls)) != len(urls):
            raise ValueError("a replica is listed twice")
        return v

    @property
    def urls(self) -> list[str]:
        """The replicas' roots, without a trailing slash."""
        return [u.rstrip("/") for u in ([self.base_url] if isinstance(self.base_url, str) else self.base_url)]


class VLMConfig(StrictModel):
    """Which VLM answers the segments, and how."""

    backend: Literal["transformers", "openai", "replay"] = Field(
        default="transformers", description="transformers: in-process; openai: HTTP server; replay: recorded answers."
    )
    model: str = Field(
        default=DEFAULT_VLM_MODEL, description="Hub id or local folder (transformers backend)."
    )
    device: Device = Field(default="auto", description="auto = cuda if available, else cpu.")
    dtype: DType = Field(default="auto", description="auto = bfloat16 on GPU, float32 on CPU.")
    max_new_tokens: int = Field(default=48, ge=1, le=4096,
                                description="Answer length cap (two short lines fit in 48 tokens).")
    batch_size: int = Field(default=8, ge=1, le=1024, description="Segments per generate call / per request burst.")
    n_frames: int = Field(default=8, ge=1, le=64, description="Frames sampled per segment.")
    prompt_path: Path | None = Field(
        default=None, description="Prompt template with $Data (default: the shipped corevad/data/prompt.txt)."
    )
    crop_to_patches: bool = Field(
        default=False,
        description="Tile each frame (InternVL dynamic tiling); the paper uses one 448 px tile per frame.",
    )
    static_cache: bool = Field(
        default=False,
        description="transformers backend: a static KV cache, with which transformers compiles the decoding step "
                    "on CUDA (each new batch shape compiles once; the runtime's warm-up compiles the full batch "
                    "before cameras go online; compiled code is kept under the corevad cache across restarts). "
                    "Off until measured on a GPU: tools/bench_gpu.py --static-cache.",
    )
    describe: Literal["all", "on_demand"] = Field(
        default="all",
        description="all: every segment's full two-line answer (the paper). on_demand: the verdict (first answer "
                    "token) and p_anomalous for every segment, the description only where the verdict is not "
                    "'Normal' or p_anomalous >= describe_above; a normal segment's answer is then 'Normal scenes.'.",
    )
    describe_above: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="describe on_demand: also describe a 'Normal' segment whose p_anomalous is at least this.",
    )
    describe_delivery: Literal["two_phase", "one_pass"] = Field(
        default="two_phase",
        description="describe on_demand in the runtime: two_phase publishes every score once the batch's verdicts "
                    "are known and each description after, as an alert update (transformers; openai with "
                    "describe_via two_requests); one_pass waits for the batch's descriptions and scores with "
                    "them (what refinement.text_context needs to keep its detections: see the README).",
    )
    max_answer_chars: int = Field(
        default=2000, ge=16, le=1_000_000,
        description="Longest answer kept (characters); a longer one is cut here and counted (answers_cut).",
    )
    openai: OpenAIOptions = Field(default_factory=OpenAIOptions, description="openai backend options.")
    responses: Path | None = Field(
        default=None, description="replay backend: recorded responses JSON (video -> list of answers)."
    )
    probabilities: Path | None = Field(
        default=None, description="replay backend: each recorded answer's P(Anomalous) (corevad generate's "
                                  "<stem>.p_anomalous.json), replayed as the label probability.",
    )

    @model_validator(mode="after")
    def _check_backend(self) -> VLMConfig:
        if self.backend == "replay" and self.responses is None:
            raise ValueError("backend 'replay' needs 'responses' (a responses JSON file)")
        if self.probabilities is not None and self.backend != "replay":
            raise ValueError("'probabilities' is a replay backend setting")
        return self


class ClipConfig(StrictModel):
    """The CLIP model used for vision-text alignment."""

    model: str = Field(default=DEFAULT_CLIP_MODEL, description="open_clip architecture name.")
    pretrained: str | None = Field(
        default=DEFAULT_CLIP_PRETRAINED,
        description="open_clip pretrained tag, a local checkpoint file, or None for random weights."
    )
    device: Device = Field(default="auto", description="auto = cuda if available, else cpu.")
    dtype: DType = Field(default="auto", description="auto = float16 on GPU, float32 on CPU.")
    batch_size: int = Field(default=64, ge=1, description="Frames per encode call.")
    preprocess: Literal["openclip", "paper"] = Field(
        default="openclip",
        description="openclip: the model's own resize+crop+CLIP normalisation; paper: the authors' "
        "square resize to 224 with ImageNet normalisation (matches their released feature files).",
    )
    segment_frames: Literal["all", "sampled"] = Field(
        default="all", description="Segment visual feature from all frames (paper) or only the sampled ones."
    )

    @field_validator("pretrained", mode="before")
    @classmethod
    def _none_means_random(cls, value: object) -> object:
        # YAML and CLI users write "none" for random weights.
        if isinstance(value, str) and value.strip().lower() in ("", "none", "random"):
            return None
        return value
