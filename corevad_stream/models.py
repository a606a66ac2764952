"""Build the worker's models from the `model` config section (tiny random ones on request)."""

from __future__ import annotations

import logging

from corevad.models import ClipConfig, load_clip, load_vlm
from corevad.models.base import ImageTextEncoder, VLMBackend
from corevad.models.text import TextEncoder

from .config import ModelConfig

log = logging.getLogger(__name__)

TINY_NOTICE = ("TINY RANDOM MODEL: corevad is running with tiny randomly initialised models (--tiny-model). "
               "The pipeline runs end to end, but its scores, alerts and explanations are MEANINGLESS.")


def resolve_model_config(cfg: ModelConfig) -> ModelConfig:
    """Replace the VLM/CLIP settings by the tiny random models' when cfg.tiny (builds them if needed)."""
    if not cfg.tiny:
        return cfg
    from corevad.models.tiny import build_tiny_internvl, register_tiny_clip

    path = build_tiny_internvl()
    vlm = cfg.vlm.model_copy(update={"backend": "transformers", "model": str(path), "device": "cpu",
                                     "dtype": "float32", "max_new_tokens": min(cfg.vlm.max_new_tokens, 20)})
    clip = None
    if cfg.clip is not None:
        clip = ClipConfig(model=register_tiny_clip(), pretrained=None, device="cpu", dtype="float32")
    return cfg.model_copy(update={"vlm": vlm, "clip": clip})


def build_text_encoder(cfg: ModelConfig, *, clip: ImageTextEncoder | None = None) -> TextEncoder:
    """The cached sentence encoder for text-anchored context (blocking: call in a thread)."""
    from corevad.models.text import load_text_encoder

    encoder = load_text_encoder(cfg.text.model, device=cfg.text.device, clip=clip)
    _ = encoder.inner  # load now: a live monitor fails at start, not on its first batch
    return encoder


def build_clip(cfg: ModelConfig) -> ImageTextEncoder | None:
    """The CLIP encoder the config names (None when model.clip is null); blocking."""
    cfg = resolve_model_config(cfg)
    return load_clip(cfg.clip) if cfg.clip is not None else None


def build_models(cfg: ModelConfig, *, with_clip: bool = True) -> tuple[VLMBackend, ImageTextEncoder | None]:
    """Load the VLM backend and, when scoring uses features, the CLIP encoder (blocking: call in a thread)."""
    if cfg.tiny:
        log.warning(TINY_NOTICE)
    cfg = resolve_model_config(cfg)
    backend = load_vlm(cfg.vlm)
    encoder = load_clip(cfg.clip) if with_clip and cfg.clip is not None else None
    return backend, encoder
