"""Model adapters: CLIP (open_clip) and VLM backends (transformers, openai, replay) behind small protocols."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Clip, ImageTextEncoder, VLMBackend
from .config import DEFAULT_VLM_MODEL, ClipConfig, OpenAIOptions, VLMConfig
from .replay import ReplayBackend

if TYPE_CHECKING:
    from .clip import OpenClipEncoder

# Model name that selects the tiny random models (built and cached on first use): demos and tests.
TINY = "tiny"


def load_vlm(config: VLMConfig | None = None, **overrides: Any) -> VLMBackend:
    """Build the VLM backend a VLMConfig names (heavy libraries are imported only here)."""
    cfg = config or VLMConfig()
    if overrides:
        cfg = VLMConfig.model_validate({**cfg.model_dump(), **overrides})
    if cfg.backend == "replay":
        assert cfg.responses is not None  # checked by VLMConfig
        return ReplayBackend(cfg.responses, probabilities=cfg.probabilities)
    if cfg.backend == "openai":
        from .openai_backend import OpenAIBackend

        return OpenAIBackend(cfg)
    if cfg.model == TINY:
        from .tiny import build_tiny_internvl

        cfg = cfg.model_copy(update={"model": str(build_tiny_internvl())})
    from .transformers_backend import TransformersBackend

    return TransformersBackend(cfg)


def load_clip(config: ClipConfig | None = None, **overrides: Any) -> OpenClipEncoder:
    """Build the open_clip encoder a ClipConfig names (model "tiny": the tiny random CLIP)."""
    from .clip import load_clip as _load

    cfg = config or ClipConfig()
    if overrides:
        cfg = ClipConfig.model_validate({**cfg.model_dump(), **overrides})
    if cfg.model == TINY:
        from .tiny import register_tiny_clip

        cfg = cfg.model_copy(update={"model": register_tiny_clip(), "pretrained": None})
    return _load(cfg)


__all__ = [
    "DEFAULT_VLM_MODEL", "TINY", "Clip", "ClipConfig", "ImageTextEncoder", "OpenAIOptions", "ReplayBackend",
    "VLMBackend", "VLMConfig", "load_clip", "load_vlm",
]
