"""In-process VLM backend on transformers' native InternVL classes (the -hf checkpoints)."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ..prompt import (
    VERDICT_LINES,
    camera_prompt,
    cut_answer,
    label_of_token,
    load_prompt,
    needs_description,
    p_anomalous,
)
from ._device import resolve_device, resolve_dtype
from .base import Answer, Clip, VerdictPass
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
            model_type: str | None = json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
            return model_type
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
        # Extra generate() arguments: tools/bench_gpu.py passes a logits processor that scripts verdicts.
        self.generate_kwargs: dict[str, Any] = {}
        self.answers_cut = 0  # answers longer than max_answer_chars, cut
        self.verdict_rows = 0  # describe on_demand: segments given a verdict ...
        self.described_rows = 0  # ... of which described
        self.continuation_failures = 0

    def label_tokens(self) -> tuple[Any, list[str]]:
        """The vocabulary entries that begin "Anomalous" or "Normal" (corevad.prompt.label_of_token), found once."""
        if self._label_tokens is None:
            tok = self.processor.tokenizer
            found = [(i, text) for i in range(len(tok))
                     if label_of_token(text := tok.decode([i], skip_special_tokens=True)) is not None]
            ids = self._torch.tensor([i for i, _ in found], dtype=self._torch.long, device=self.device)
            self._label_tokens = (ids, [t for _, t in found])
        return self._label_tokens

    def prompt_text(self, n_frames: int, context: str | None = None) -> str:
        """The full chat-formatted prompt for a segment of n_frames frames of a camera with this scene context."""
        body = camera_prompt(self.template, context, n_frames, image_token=self.processor.image_token)
        messages = [{"role": "user", "content": [{"type": "text", "text": body}]}]
        prompt: str = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return prompt

    def _inputs(self, clips: Sequence[Clip]) -> Any:
        """The processor's tensors for one generate call, on the CPU (pinned when the model is on a GPU, so
        the copy to it can overlap)."""
        images: list[np.ndarray] = []
        texts: list[str] = []
        for clip in clips:
            frames = _frames_list(clip)
            images.extend(frames)
            texts.append(self.prompt_text(len(frames), clip.context))  # each row its own camera's prompt
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

    def _on_device(self, inputs: Any) -> Any:
        inputs = inputs.to(self.device, non_blocking=True)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return inputs

    def _generate(self, inputs: Any) -> list[Answer]:
        inputs = self._on_device(inputs)
        with self._torch.inference_mode():
            if self.config.describe == "on_demand":
                return self._generate_on_demand(inputs)
            out = self.model.generate(
                **inputs, max_new_tokens=self.config.max_new_tokens, **self._greedy(static=self.config.static_cache),
            )
            probs = self._first_token_p(out.logits[0])
        new_tokens = out.sequences[:, inputs["input_ids"].shape[1] :]
        decoded = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        return [self._bounded(t, p) for t, p in zip(decoded, probs, strict=True)]

    def _greedy(self, *, static: bool) -> dict[str, Any]:
        extra: dict[str, Any] = {"cache_implementation": "static"} if static else {}
        return {"do_sample": False, "num_beams": 1, "output_logits": True, "return_dict_in_generate": True,
                **extra, **self.generate_kwargs}

    def _first_token_p(self, logits: Any) -> list[float | None]:
        """Each row's P(Anomalous) from the first answer token's raw logits (before any logits processor)."""
        ids, texts = self.label_tokens()
        logp = self._torch.log_softmax(logits.float(), dim=-1).index_select(1, ids).cpu().tolist()
        return [p_anomalous(zip(texts, row, strict=True)) for row in logp]

    def _bounded(self, text: str, p: float | None, *, described: bool = True) -> Answer:
        text, cut = cut_answer(text.strip(), self.config.max_answer_chars)
        if cut:
            self.answers_cut += 1
        return Answer(text, p, described=described, cut=cut)

    def _verdict_pass(self, inputs: Any) -> tuple[list[Answer | None], list[int], list[float | None], Any]:
        """Verdict first: one prefill and one decoding step for the whole batch (inputs on the device, inside
        inference_mode). Returns each row's answer so far (None: its first token began neither label, so its
        verdict is not known yet), the rows that need a description (prompt.needs_description), each row's
        p_anomalous, and the first pass's output, whose KV cache the description pass continues on."""
        cfg = self.config
        first = self.model.generate(**inputs, max_new_tokens=1, **self._greedy(static=False))
        probs = self._first_token_p(first.logits[0])
        n_prompt = inputs["input_ids"].shape[1]
        first_ids = first.sequences[:, n_prompt].tolist()
        first_texts = [self.processor.tokenizer.decode([t], skip_special_tokens=True) for t in first_ids]
        eos = self.model.generation_config.eos_token_id
        stops = set(eos if isinstance(eos, list) else [eos])
        out: list[Answer | None] = [None] * len(first_ids)
        rows: list[int] = []
        for i, (tok, text, p) in enumerate(zip(first_ids, first_texts, probs, strict=True)):
            if tok in stops or cfg.max_new_tokens == 1:
                out[i] = self._bounded(text, p)  # the one-pass answer ends here too
            elif needs_description(text, p, describe_above=cfg.describe_above):
                rows.append(i)
                label = label_of_token(text)
                if label is not None:  # the verdict is known: its line stands until the description comes
                    out[i] = Answer(VERDICT_LINES[label], p, described=False)
            else:
                out[i] = self._bounded(VERDICT_LINES[0], p, described=False)
        self.verdict_rows += len(first_ids)
        return out, rows, probs, first

    def _description_pass(self, inputs: Any, first: Any, rows: list[int], probs: list[float | None],
                          where: str) -> list[Answer]:
        """The answers of `rows` decoded on from their first token. A failure costs only these rows: each
        carries the error (the caller keeps a verdict it already has)."""
        if not rows:
            return []
        self.described_rows += len(rows)
        try:
            with self._torch.inference_mode():
                decoded = self._continue(inputs, first, rows)
        except Exception as exc:  # noqa: BLE001 - these rows fail, the verdicts already known stand
            self.continuation_failures += 1
            log.error("description pass failed for %d segments (%s): %s", len(rows), where, exc)
            return [Answer("", probs[i], described=False, error=f"description pass failed: {exc}",
                           error_kind="model") for i in rows]
        return [self._bounded(text, probs[i]) for i, text in zip(rows, decoded, strict=True)]

    def _generate_on_demand(self, inputs: Any) -> list[Answer]:
        """describe on_demand in one call: the verdict pass, then decoding continues only for the rows that need a
        description, on their rows of the same KV cache (no second prefill). Greedy decoding makes those rows'
        answers token for token the one-pass answers. If the continuation fails, only its rows fail: a known
        verdict keeps its verdict line, undescribed; a row whose verdict one token could not tell carries the
        error."""
        out, rows, probs, first = self._verdict_pass(inputs)
        for i, a in zip(rows, self._description_pass(inputs, first, rows, probs, "one pass"), strict=True):
            if a.error is None or out[i] is None:
                out[i] = a
        return [a for a in out if a is not None]

    @property
    def two_phase(self) -> bool:
        """describe on_demand (two_phase delivery) splits: verdicts() gives every verdict before the descriptions
        are decoded."""
        return self.config.describe == "on_demand" and self.config.describe_delivery == "two_phase"

    def verdicts(self, clips: Sequence[Clip], prepared: list[tuple[Clip, Any]] | None = None) -> VerdictPass:
        """The verdict pass of every generate call of the batch now; describe() then continues the rows that need a
        description on each call's own KV cache (held until then, on the device)."""
        if self.config.describe != "on_demand":
            raise ModelError("verdicts() needs describe: on_demand (describe: all answers in one pass)")
        prepared = self.prepare(clips) if prepared is None else prepared
        answers: list[Answer | None] = []
        pending: list[int] = []
        later: list[tuple[str, Any, Any, list[int], list[float | None]]] = []
        with self._lock:
            for first_clip, inputs in prepared:
                where = f"{first_clip.source} segments from {first_clip.index}"
                try:
                    inputs = self._on_device(inputs)
                    with self._torch.inference_mode():
                        out, rows, probs, first = self._verdict_pass(inputs)
                except Exception as exc:
                    raise ModelError(f"generate failed for {where}: {exc}") from exc
                pending.extend(len(answers) + r for r in rows)
                answers.extend(out)
                if rows:
                    later.append((where, inputs, first, rows, probs))

        def describe() -> list[Answer]:
            got: list[Answer] = []
            with self._lock:
                while later:
                    where, inputs, first, rows, probs = later.pop(0)  # each call's cache is freed once continued
                    got.extend(self._description_pass(inputs, first, rows, probs, where))
            return got

        return VerdictPass(answers, pending, describe)

    def _continue(self, inputs: Any, first: Any, rows: list[int]) -> list[str]:
        """Decode the answers of `rows` on from their first token, on those rows of the first pass's cache."""
        torch = self._torch
        # transformers >= 5.20 names the cache `cache` (output field and generate argument); before that
        # `past_key_values` (the GPU machine has 5.17).
        name = "cache" if "cache" in {f.name for f in dataclasses.fields(first)} else "past_key_values"
        cache = getattr(first, name)
        index = torch.tensor(rows, dtype=torch.long, device=first.sequences.device)
        if len(rows) < first.sequences.shape[0]:
            cache.batch_select_indices(index)
        sequences = first.sequences.index_select(0, index)
        mask = inputs["attention_mask"].index_select(0, index)
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
        more = self.model.generate(input_ids=sequences, attention_mask=mask, **{name: cache},
                                   max_new_tokens=self.config.max_new_tokens - 1, **self._greedy(static=False))
        return list(self.processor.batch_decode(more.sequences[:, inputs["input_ids"].shape[1]:],
                                                skip_special_tokens=True))

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


def scripted_first_tokens(backend: TransformersBackend, labels: Sequence[int], *, prompt_len: int,
                          bias: float = 1e4) -> Any:
    """A logits processor list that makes row i's first answer token begin label labels[i] (1 Anomalous, 0
    Normal) by adding `bias` to one token of that label, for benchmarks and tests of describe "on_demand"
    on random models. Only the first answer step (input length prompt_len) is biased; p_anomalous is still
    the model's own, read from the raw logits. Pass it as backend.generate_kwargs["logits_processor"]."""
    import transformers

    ids, texts = backend.label_tokens()
    pick = {}
    for i, text in zip(ids.tolist(), texts, strict=True):
        label = label_of_token(text)
        if label is not None and label not in pick:
            pick[label] = i
    wanted = [pick[int(label)] for label in labels]

    class _FirstToken(transformers.LogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if input_ids.shape[1] != prompt_len:
                return scores
            if input_ids.shape[0] != len(wanted):
                raise ValueError(f"scripted {len(wanted)} rows, got a batch of {input_ids.shape[0]}")
            scores = scores.clone()
            rows = backend._torch.arange(len(wanted), device=scores.device)
            cols = backend._torch.tensor(wanted, device=scores.device)
            scores[rows, cols] += bias
            return scores

    return transformers.LogitsProcessorList([_FirstToken()])
