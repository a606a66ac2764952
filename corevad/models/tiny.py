"""Tiny random InternVL and open_clip models: saved and loaded exactly like real checkpoints (tests, demo)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..paths import cache_dir

if TYPE_CHECKING:  # transformers is imported lazily at run time (slow to import)
    from transformers import PreTrainedTokenizerFast

# Bumped whenever the tiny recipe changes, so stale cached copies are never reused.
TINY_VERSION = 2
TINY_CLIP_NAME = "corevad-tiny-clip"

_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]

# A Qwen2-style template like the -hf InternVL checkpoints': images become <IMG_CONTEXT>, which the
# processor expands to <img> + image_seq_length context tokens + </img>.
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif item['type'] == 'video' %}<video>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Enough text that the byte-level BPE learns the words the prompt and the answers use.
_CORPUS = [
    "Anomalous scenes. A person is fighting with another person on the street.",
    "Normal scenes. People are walking along the sidewalk in daylight.",
    "Normal scenes. Cars are driving on the road at an intersection.",
    "Anomalous scenes. A man is stealing a bag from a parked car at night.",
    "Anomalous scenes. An explosion and fire are visible near a building.",
    "Normal scenes. A shop with customers standing at the counter.",
    "You are an assistant that watches security-camera footage for video anomaly detection.",
    "Answer with exactly two lines and nothing else. Line 1: Line 2: one short sentence.",
    "Frame1: Frame2: Frame3: Frame4: Frame5: Frame6: Frame7: Frame8:",
    "The frames below are sampled in order from one second of a single camera.",
    "Look at the people, vehicles and objects across all frames and decide whether anything abnormal.",
]


def default_cache_dir() -> Path:
    """Where tiny models are cached (corevad.paths.cache_dir)."""
    return cache_dir()


def _publish(tmp: Path, final: Path) -> None:
    """Move a finished build into place; another process finishing first is fine."""
    try:
        os.replace(tmp, final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _train_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    # transformers leaves TokenizersBackend.__init__ (*args, **kwargs) unannotated.
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        extra_special_tokens={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )


def build_tiny_internvl(
    directory: str | os.PathLike[str] | None = None,
    *,
    image_size: int = 448,
    seed: int = 0,
    text_heads: int = 4,
    force: bool = False,
) -> Path:
    """Build a tiny random InternVL (tokenizer, processor, config, weights) and save it; return its folder.

    The folder loads with AutoProcessor / InternVLForConditionalGeneration exactly like a downloaded
    -hf checkpoint. With directory=None it is cached under default_cache_dir(); an existing complete
    build is reused unless force=True. Weights come from a fixed seed, so every build is identical.
    text_heads: attention heads of the 64-wide text model; 2 (head size 32) for vLLM, whose CPU attention
    has no kernel for the default's head size 16.
    """
    if text_heads not in (1, 2, 4):
        raise ValueError(f"text_heads must be 1, 2 or 4 (the text model is 64 wide), got {text_heads}")
    heads_tag = "" if text_heads == 4 else f"-h{text_heads}"
    if image_size % 28:
        raise ValueError(f"image_size must be a multiple of 28 (patch 14, downsample 0.5), got {image_size}")
    final = (
        Path(directory)
        if directory is not None
        else default_cache_dir() / f"tiny-internvl-v{TINY_VERSION}-{image_size}-s{seed}{heads_tag}"
    )
    if (final / "config.json").is_file() and (final / "model.safetensors").is_file() and not force:
        return final
    if force and final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)

    from ..optional import require

    # Named, so a base install asked for --tiny-model says which extra to install instead of a traceback.
    torch = require("torch", what="the tiny random models (--tiny-model)")
    require("transformers", what="the tiny random models (--tiny-model)")
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    tokenizer = _train_tokenizer(vocab_size=400)
    image_seq_length = (image_size // 14) ** 2 // 4
    image_processor = GotOcr2ImageProcessor(
        size={"height": image_size, "width": image_size},
        crop_size={"height": image_size, "width": image_size},
        crop_to_patches=False,
        max_patches=12,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    video_processor = InternVLVideoProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    processor = InternVLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        image_seq_length=image_seq_length,
        chat_template=_CHAT_TEMPLATE,
    )
    vocab = len(tokenizer)
    image_token = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    assert isinstance(image_token, int)  # one token asked, one id back
    config = InternVLConfig(
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": [image_size, image_size],
            "patch_size": [14, 14],
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": vocab,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": text_heads,
            "num_key_value_heads": min(2, text_heads),
            "max_position_embeddings": 8192,
            "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
            "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
            "pad_token_id": tokenizer.pad_token_id,
            "tie_word_embeddings": True,
        },
        image_token_id=image_token,
        image_seq_length=image_seq_length,
    )
    torch.manual_seed(seed)
    # PreTrainedModel.eval overrides nn.Module.eval without annotations.
    model = InternVLForConditionalGeneration(config).eval()  # type: ignore[no-untyped-call]
    with torch.no_grad():
        # The default init (std 0.02) makes a 2-layer model emit only newlines; a wider init gives
        # varied text that depends on the frames, so tests can tell answers apart.
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.2)
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        _publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def tiny_clip_config() -> dict[str, Any]:
    """The tiny open_clip architecture (same JSON shape as open_clip's ViT-B-16.json, far smaller)."""
    return {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }


def register_tiny_clip(directory: str | os.PathLike[str] | None = None) -> str:
    """Write the tiny open_clip config into a folder, register it with open_clip; return the model name.

    Use the name with pretrained=None (random weights): it goes through the same
    open_clip.create_model_and_transforms path as ViT-B-16.
    """
    import open_clip

    folder = Path(directory) if directory is not None else default_cache_dir() / f"tiny-clip-v{TINY_VERSION}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{TINY_CLIP_NAME}.json"
    text = json.dumps(tiny_clip_config(), indent=2)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    if TINY_CLIP_NAME not in open_clip.list_models():
        open_clip.add_model_config(folder)
    return TINY_CLIP_NAME


def internvl2_8b_config(vocab_size: int = 92553, image_token_id: int = 92546) -> Any:
    """InternVLConfig with InternVL2-8B's layer sizes (native classes; llama text model ~ InternLM2.5)."""
    from transformers import InternVLConfig

    return InternVLConfig(
        vision_config={
            "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
            "intermediate_size": 4096, "image_size": [448, 448], "patch_size": [14, 14],
            "norm_type": "layer_norm", "use_qk_norm": False, "layer_scale_init_value": 0.1,
        },
        text_config={
            "model_type": "llama", "vocab_size": vocab_size, "hidden_size": 4096, "intermediate_size": 14336,
            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
        },
        image_token_id=image_token_id,
        image_seq_length=256,
        downsample_ratio=0.5,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        tie_word_embeddings=False,  # InternLM2.5 has a separate output head
    )


def build_8b_shaped(device: str, meta: bool, workdir: Path) -> tuple[object, Path]:
    """InternVL2-8B's shapes with random weights, for speed figures (tools/bench_models.py, tools/bench_gpu.py):
    the 8B-shaped model, on the meta device (no memory: a smoke check) or random bf16 on `device`.

    The processor (tokenizer, 448 px image processor, 256 tokens per frame) is the tiny one; its token
    ids all fall inside the 8B vocabulary, so prompts have the real length.
    """
    import torch
    from transformers import AutoTokenizer, InternVLForConditionalGeneration

    tiny = build_tiny_internvl(workdir / "tiny448", image_size=448)
    tok = AutoTokenizer.from_pretrained(tiny)
    image_token = tok.convert_tokens_to_ids("<IMG_CONTEXT>")
    assert isinstance(image_token, int)  # one token asked, one id back
    cfg = internvl2_8b_config(image_token_id=image_token)
    if meta:
        with torch.device("meta"):
            model = InternVLForConditionalGeneration(cfg)
        return model, tiny
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = InternVLForConditionalGeneration(cfg)
    torch.set_default_dtype(torch.float32)
    model.generation_config.eos_token_id = None  # fixed-length answers
    return model.eval(), tiny  # type: ignore[no-untyped-call]  # PreTrainedModel.eval is unannotated
