"""In-process VLM backend on transformers' native InternVL classes (the -hf checkpoints)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ..prompt import label_of_token, load_prompt, p_anomalous, render_prompt
from ._device import resolve_device, resolve_dtype
from .base import Answer, Clip
from .config import VLMConfig

_REMOTE_CODE_HINT = (
    "it looks like a remote-code InternVL checkpoint (model_type 'internvl_chat', e.g. OpenGVLab/InternVL2-8B), "
    "whose code does not run on transformers >= 4.50. Use an -hf checkpoint (e.g. "
    "OpenGVLab/InternVL2_5-8B-MPO-hf, OpenGVLab/InternVL3-8B-hf) with this backend, or serve the "
    "original model with vLLM or LMDeploy and use backend 'openai'."
)


def _local_model_type(model: str) -> str | None:
    cfg = Path(model) / "config.json"
    if cfg.is_file():
        try:
            return json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
        except (OSError, json.JSONDecodeError):
            return None
    return None


def _frames_list(clip: Clip) -> list[np.ndarray]:
    if clip.frames is None:
        raise ModelError(f"clip {clip.source}#{clip.index} has no frames (the transformers backend needs them)")
    frames = np.asarray(clip.frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] == 0:
        raise ModelError(
            f"clip {clip.source}#{clip.index}: frames must be (k>0, H, W, 3) uint8 RGB, "
            f"got {frames.shape} {frames.dtype}"
        )
    return list(frames)


log = logging.getLogger(__name__)
CPU_WARN_PARAMS = 1_000_000_000  # above this, a CPU is no place for live inference

class TransformersBackend:
    """VLMBackend running InternVLForConditionalGeneration + AutoProcessor from a hub id or local folder.

    One generate call per batch of up to config.batch_size clips; greedy decoding; each frame one tile
    (crop_to_patches=False) as in the paper. answer() is synchronous and serialised by a lock.
    """

    name = "transformers"

    def __init__(self, config: VLMConfig | None = None, *, prompt: str | None = None) -> None:
        from ..optional import require

        torch = require("torch", what="the in-process transformers backend")
        transformers = require("transformers", what="the in-process transformers backend")
        AutoProcessor, InternVLForConditionalGeneration = (  # noqa: N806 - classes
            transformers.AutoProcessor, transformers.InternVLForConditionalGeneration)

        self.config = config or VLMConfig()
        cfg = self.config
        if _local_model_type(cfg.model) == "internvl_chat":
            raise ModelError(f"cannot load {cfg.model!r}: {_REMOTE_CODE_HINT}")
        self.device = resolve_device(cfg.device)
        if cfg.static_cache:
            import os

            from ..paths import cache_dir

            # torch.compile's output survives a restart here (default: a temp folder), so a restarted
            # monitor does not compile again.
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))
        self.dtype = resolve_dtype(cfg.dtype, self.device, gpu_default="bfloat16")
        try:
            self.processor = AutoProcessor.from_pretrained(cfg.model)
            kwargs: dict[str, Any] = {"dtype": self.dtype}
            if self.device.type == "cuda":
                # Load shards straight onto the GPU instead of staging the full model in host memory.
                kwargs["device_map"] = str(self.device)
            model = InternVLForConditionalGeneration.from_pretrained(cfg.model, **kwargs)
        except Exception as exc:
            hint = _REMOTE_CODE_HINT if "internvl_chat" in str(exc) or "remote" in str(exc) else ""
            raise ModelError(f"cannot load VLM {cfg.model!r}: {exc}. {hint}".strip()) from exc
        self.model = model.to(self.device).eval()
        n_params = sum(p.numel() for p in self.model.parameters())
        if self.device.type == "cpu" and n_params > CPU_WARN_PARAMS:
            log.warning("%s has %.1f B parameters and runs on the CPU: expect minutes per segment, far too slow "
                        "for live cameras; use a GPU (device: cuda) or the openai backend with a GPU server",
                        cfg.model, n_params / 1e9)
        tok = self.processor.tokenizer
        tok.padding_side = "left"  # decoder-only batched generation needs left padding
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self.template = prompt if prompt is not None else load_prompt(cfg.prompt_path)
        self._lock = threading.Lock()
        self._torch = torch
        self._label_tokens: tuple[Any, list[str]] | None = None  # (ids, texts) of tokens that begin a label

    def label_tokens(self) -> tuple[Any, list[str]]:
        """The vocabulary entries that begin "Anomalous" or "Normal" (corevad.prompt.label_of_token), found once."""
        if self._label_tokens is None:
            tok = self.processor.tokenizer
            found = [(i, text) for i in range(len(tok))
                     if label_of_token(text := tok.decode([i], skip_special_tokens=True)) is not None]
            ids = self._torch.tensor([i for i, _ in found], dtype=self._torch.long, device=self.device)
            self._label_tokens = (ids, [t for _, t in found])
        return self._label_tokens

    def prompt_text(self, n_frames: int) -> str:
        """The full chat-formatted prompt for a segment of n_frames frames."""
        body = render_prompt(self.template, n_frames, image_token=self.processor.image_token)
        messages = [{"role": "user", "content": [{"type": "text", "text": body}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _inputs(self, clips: Sequence[Clip]) -> Any:
        """The processor's tensors for one generate call, on the CPU (pinned when the model is on a GPU, so
        the copy to it can overlap)."""
        images: list[np.ndarray] = []
        texts: list[str] = []
        for clip in clips:
            frames = _frames_list(clip)
            images.extend(frames)
            texts.append(self.prompt_text(len(frames)))
        inputs = self.processor(
            text=texts,
            images=images,
            return_tensors="pt",
            padding=True,
            crop_to_patches=self.config.crop_to_patches,
        )
        if self.device.type == "cuda":
            for k, v in inputs.items():
                if hasattr(v, "pin_memory"):
                    inputs[k] = v.pin_memory()
        return inputs

    def _generate(self, inputs: Any) -> list[Answer]:
        inputs = inputs.to(self.device, non_blocking=True)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with self._torch.inference_mode():
            extra: dict[str, Any] = {"cache_implementation": "static"} if self.config.static_cache else {}
            out = self.model.generate(
                **inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False, num_beams=1,
                output_logits=True, return_dict_in_generate=True, **extra,
            )
            # The label's probability from the first answer token's raw logits (before any processor).
            ids, texts = self.label_tokens()
            logp = self._torch.log_softmax(out.logits[0].float(), dim=-1).index_select(1, ids).cpu().tolist()
        new_tokens = out.sequences[:, inputs["input_ids"].shape[1] :]
        decoded = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        return [Answer(t.strip(), p_anomalous(zip(texts, row, strict=True))) for t, row in zip(decoded, logp,
                                                                                                strict=True)]

    def prepare(self, clips: Sequence[Clip]) -> list[tuple[Clip, Any]]:
        """CPU preprocessing, one entry per generate call of config.batch_size clips (thread-safe: the runtime
        runs it for the next batch while run() has the model)."""
        bs = self.config.batch_size
        out = []
        for s in range(0, len(clips), bs):
            chunk = clips[s : s + bs]
            try:
                out.append((chunk[0], self._inputs(chunk)))
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(f"preprocessing failed for {chunk[0].source} segments from {chunk[0].index}: "
                                 f"{exc}") from exc
        return out

    def run(self, prepared: list[tuple[Clip, Any]]) -> list[Answer]:
        """The model on prepared inputs: answers in order, with each answer's P(Anomalous)."""
        out: list[Answer] = []
        with self._lock:
            for first, inputs in prepared:
                try:
                    out.extend(self._generate(inputs))
                except Exception as exc:
                    raise ModelError(f"generate failed for {first.source} segments from {first.index}: {exc}"
                                     ) from exc
        return out

    def answer(self, clips: Sequence[Clip]) -> list[str]:
        """Raw answer text per clip, same order; batched config.batch_size clips per generate call."""
        return [a.text for a in self.answer_scored(clips)]

    def answer_scored(self, clips: Sequence[Clip]) -> list[Answer]:
        """answer() with each answer's P(Anomalous) from the first token's logits."""
        return self.run(self.prepare(clips))

    def close(self) -> None:
        self.model = None
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()
