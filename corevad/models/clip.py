"""open_clip adapter: unit-norm frame and text embeddings (the paper's CLIP ViT-B/16 by default)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ModelError
from ._device import resolve_device, resolve_dtype
from .config import ClipConfig

# InternVL's build_transform, which the authors also used for their CLIP features.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class OpenClipEncoder:
    """ImageTextEncoder over an open_clip model.

    encode_images takes (n, H, W, 3) uint8 RGB and preprocesses in torch on the model's device (no PIL
    round trip per frame). Empty texts encode to a zero vector, as in the authors' text_encode.
    A lock serialises calls, so one instance can be shared between threads.
    """

    def __init__(self, config: ClipConfig | None = None) -> None:
        from ..optional import require

        open_clip = require("open_clip", what="the CLIP encoder")
        torch = require("torch", what="the CLIP encoder")

        config = config or ClipConfig()
        self.config = config
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device, gpu_default="float16")
        try:
            # Random weights (pretrained=None) come from a fixed seed, so two processes agree; the
            # caller's RNG state is left alone.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model, _, _ = open_clip.create_model_and_transforms(
                    config.model, pretrained=config.pretrained, device=self.device
                )
            self._tokenizer = open_clip.get_tokenizer(config.model)
        except Exception as exc:  # open_clip raises RuntimeError / FileNotFoundError / HF errors
            raise ModelError(
                f"cannot load CLIP model {config.model!r} (pretrained={config.pretrained!r}): {exc}"
            ) from exc
        self._model = model.to(device=self.device, dtype=self.dtype).eval()
        pp = open_clip.get_model_preprocess_cfg(model)
        size = pp.get("size", 224)
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else tuple(size)
        if config.preprocess == "paper":
            mean, std = _IMAGENET_MEAN, _IMAGENET_STD
        else:
            mean, std = pp.get("mean", open_clip.OPENAI_DATASET_MEAN), pp.get("std", open_clip.OPENAI_DATASET_STD)
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        with torch.inference_mode():
            probe = self._model.encode_text(self._tokenizer([""]).to(self.device))
        self.dim: int = int(probe.shape[-1])
        self.name = f"open_clip:{config.model}/{config.pretrained}"
        self._lock = threading.Lock()

    def _preprocess(self, frames: np.ndarray) -> Any:
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        th, tw = self.image_size
        if self.config.preprocess == "paper":
            # Squash the whole frame to the model size, as InternVL's build_transform does.
            x = F.interpolate(x, size=(th, tw), mode="bicubic", align_corners=False, antialias=True)
        else:
            # open_clip's default: shortest side to the model size, then centre crop.
            h, w = x.shape[-2:]
            scale = max(th / h, tw / w)
            nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
            top, left = (nh - th) // 2, (nw - tw) // 2
            x = x[:, :, top : top + th, left : left + tw]
        x = x.clamp_(0.0, 1.0)
        return ((x - self._mean) / self._std).to(self.dtype)

    def encode_images(self, frames: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB -> (n, dim) float32, L2-normalised; batched by config.batch_size."""
        import torch

        arr = np.asarray(frames)
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"frames must be (n, H, W, 3) RGB, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {arr.dtype}")
        out = np.empty((arr.shape[0], self.dim), dtype=np.float32)
        bs = self.config.batch_size
        with self._lock, torch.inference_mode():
            for s in range(0, arr.shape[0], bs):
                feats = self._model.encode_image(self._preprocess(arr[s : s + bs])).float()
                feats = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                out[s : s + bs] = feats.cpu().numpy()
        return out

    def encode_segment(self, frames: np.ndarray) -> np.ndarray:
        """A segment's visual feature: the mean of its frames' unit embeddings (not re-normalised).

        Pass all of the segment's frames (the paper, config.segment_frames == "all") or only the
        sampled ones (cheaper); the choice is the caller's, since only it holds the frames.
        """
        return frame_means(self.encode_images(frames))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """n strings -> (n, dim) float32 unit vectors; truncated to the context length; "" -> zeros."""
        import torch

        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        keep = [i for i, t in enumerate(texts) if t and t.strip()]
        bs = self.config.batch_size
        with self._lock, torch.inference_mode():
            for s in range(0, len(keep), bs):
                idx = keep[s : s + bs]
                tokens = self._tokenizer([texts[i] for i in idx]).to(self.device)
                feats = self._model.encode_text(tokens).float()
                feats = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                out[idx] = feats.cpu().numpy()
        return out

    def close(self) -> None:
        """Drop the model (frees GPU memory once nothing else references it)."""
        self._model = None


def frame_means(frame_embeddings: np.ndarray) -> np.ndarray:
    """The segment visual feature: the (not re-normalised) mean of unit frame embeddings, as the paper."""
    mean: np.ndarray = np.asarray(frame_embeddings, dtype=np.float32).mean(axis=0)
    return mean


def load_clip(config: ClipConfig | None = None, **overrides: Any) -> OpenClipEncoder:
    """Build the CLIP encoder from a ClipConfig (or ClipConfig fields as keywords)."""
    cfg = config or ClipConfig()
    if overrides:
        cfg = cfg.model_copy(update=overrides)
        cfg = ClipConfig.model_validate(cfg.model_dump())
    return OpenClipEncoder(cfg)
