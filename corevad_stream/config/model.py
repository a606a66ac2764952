"""Section `model`: the VLM backend, the CLIP encoder and the sentence encoder (corevad.models configs)."""

from __future__ import annotations

from pydantic import Field

from corevad.defaults import DEFAULT_TEXT_MODEL
from corevad.models.config import ClipConfig, VLMConfig
from corevad.schema import StrictModel

__all__ = ["ModelConfig", "TextModelConfig"]


class TextModelConfig(StrictModel):
    """The sentence encoder of text-anchored context refinement (corevad.models.text)."""

    model: str = Field(DEFAULT_TEXT_MODEL, min_length=1, description="sentence-transformers hub id or local "
                                                                     "folder, or 'clip' for CLIP's text tower.")
    device: str = Field("cpu", description="Device of the encoder (a small model: cpu is fine).")


class ModelConfig(StrictModel):
    """Which VLM backend and CLIP encoder run in the worker (corevad.models configs)."""

    tiny: bool = Field(False, description="Use tiny RANDOM models (tests, demo without weights): the whole "
                                          "path runs, but scores and explanations are meaningless.")
    vlm: VLMConfig = Field(default_factory=VLMConfig, description="VLM backend (corevad.models.VLMConfig).")
    clip: ClipConfig | None = Field(default_factory=ClipConfig, description="CLIP encoder "
                                    "(corevad.models.ClipConfig); null disables CLIP features.")
    text: TextModelConfig = Field(default_factory=lambda: TextModelConfig(), description="Sentence encoder "
                                  "for refinement.text_context (loaded only when a camera uses it).")
