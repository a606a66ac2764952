"""Load the models the config asks for (VLM backend, CLIP, sentence encoder), off the event loop.

Models given by the caller (replay, tests) are used as they are and stay the caller's to close; models
built here are closed by the app's exit stack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack

import numpy as np

from corevad.models.base import ImageTextEncoder, VLMBackend
from corevad.models.text import TextEncoder

from .config import StreamConfig

log = logging.getLogger(__name__)


async def load_models(cfg: StreamConfig, stack: AsyncExitStack, *, backend: VLMBackend | None,
                      encoder: ImageTextEncoder | None, text_encoder: TextEncoder | None
                      ) -> tuple[VLMBackend, ImageTextEncoder | None, TextEncoder | None]:
    """(backend, CLIP encoder, text encoder): the given ones, else built from cfg.model as needed."""
    if backend is None:
        from .models import build_models

        built, encoder = await asyncio.to_thread(build_models, cfg.model, with_clip=False)
        stack.callback(built.close)
        backend = built
        if cfg.uses_features():
            encoder = await load_clip(cfg)
    if text_encoder is None and cfg.uses_text_context():
        from .models import build_text_encoder

        text_encoder = await asyncio.to_thread(build_text_encoder, cfg.model, clip=encoder)
    return backend, encoder, text_encoder


async def load_clip(cfg: StreamConfig) -> ImageTextEncoder | None:
    """CLIP for feature scoring. With use_features: auto a CLIP that does not load is a warning (scoring
    falls back to labels or the text context); with true it is an error."""
    from corevad.errors import CorevadError

    from .models import build_clip

    try:
        return await asyncio.to_thread(build_clip, cfg.model)
    except CorevadError as exc:
        if any(cfg.camera_section(c, "refinement").use_features is True for c in cfg.enabled_cameras()):
            raise
        log.warning("CLIP did not load (%s): scoring without CLIP features (use_features: auto)", exc)
        return None


def explanation_support(text_encoder: TextEncoder) -> Callable[[np.ndarray], float]:
    """description embedding -> support in (0, 1) against corevad.explain's reference phrases (blocking)."""
    from corevad.explain import ANOMALY_PHRASES, NORMAL_PHRASES, support

    anomaly = text_encoder.encode_texts(list(ANOMALY_PHRASES))
    normal = text_encoder.encode_texts(list(NORMAL_PHRASES))
    return lambda emb: float(support(emb, anomaly, normal)[0])
