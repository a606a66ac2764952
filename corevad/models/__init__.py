"""Model adapters: CLIP (open_clip) and VLM backends (transformers, openai, replay) behind small protocols."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Clip, ImageTextEncoder, VLMBackend
from .config import DEFAULT_VLM_MODEL, ClipConfig, OpenAIOptions, VLMConfig
from .replay import ReplayBackend, load_responses_json

if TYPE_CHECKING:
    from .clip import OpenClipEncoder


def load_vlm(config: VLMConfig | None = None, **overrides: Any) -> VLMBackend:
    """Build the VLM backend a VLMConfig names (heavy libraries are imported only here)."""
    cfg = config or VLMConfig()
    if overrides:
        cfg = VLMConfig.model_validate({**cfg.model_dump(), **overrides})
    if cfg.backend == "replay":
        assert cfg.responses is not None  # checked by VLMConfig
        return ReplayBackend(cfg.responses)
    if cfg.backend == "openai":
        from .openai_backend import OpenAIBackend

        return OpenAIBackend(cfg)
    from .transformers_backend import TransformersBackend

    return TransformersBackend(cfg)


def load_clip(config: ClipConfig | None = None, **overrides: Any) -> OpenClipEncoder:
    """Build the open_clip encoder a ClipConfig names."""
    from .clip import load_clip as _load

    return _load(config, **overrides)


__all__ = [
    "DEFAULT_VLM_MODEL", "Clip", "ClipConfig", "ImageTextEncoder", "OpenAIOptions", "ReplayBackend",
    "VLMBackend", "VLMConfig", "load_clip", "load_responses_json", "load_vlm",
]
