"""Small doubles of OUR model protocols (VLMBackend, ImageTextEncoder) for runtime tests, plus config helpers."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from corevad.models.base import Clip
from corevad_stream.config import StreamConfig, config_from_dict

NORMAL = "Normal scenes.\nPeople walk past the shop."
ANOMALOUS = "Anomalous scenes.\nA man smashes the shop window."
GARBLED = "<unk> %%% ### the the the"


class ScriptedBackend:
    """Answers by (camera, segment index) with an optional fixed delay per call (a slow model)."""

    name = "scripted"

    def __init__(self, answer: Callable[[Clip], str] | None = None, *, delay_s: float = 0.0) -> None:
        self._answer = answer or (lambda clip: NORMAL)
        self.delay_s = delay_s
        self.calls: list[list[tuple[str, int, bool]]] = []
        self.lock = threading.Lock()
        self.closed = False

    def answer(self, clips: Sequence[Clip]) -> list[str]:
        with self.lock:
            self.calls.append([(c.source, c.index, c.frames is not None) for c in clips])
        if self.delay_s:
            time.sleep(self.delay_s)
        return [self._answer(c) for c in clips]

    def close(self) -> None:
        self.closed = True


def _unit(seed: bytes, dim: int) -> np.ndarray:
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed).digest()[:8], "little"))
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


class HashEncoder:
    """Deterministic unit embeddings: images from their mean colour, texts from their bytes."""

    def __init__(self, dim: int = 16) -> None:
        self.dim = dim

    def encode_images(self, frames: np.ndarray) -> np.ndarray:
        return np.stack([_unit(np.round(f.reshape(-1, 3).mean(0)).astype(np.int64).tobytes(), self.dim)
                         for f in frames])

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([_unit(t.encode(), self.dim) for t in texts])


def stream_config(cameras: list[dict[str, Any]], **sections: Any) -> StreamConfig:
    """A test config: no metrics port, small frames, quick reconnects (override any section)."""
    base: dict[str, Any] = {
        "cameras": cameras,
        "metrics": {"enabled": False},
        "alerts": {"snapshot": False},
        "runtime": {"frame_size": 32, "max_wait_s": 0.0, "stats_interval_s": 1.0,
                    "reconnect": {"initial_s": 0.2, "max_s": 1.0, "open_timeout_s": 5, "stall_timeout_s": 3}},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return config_from_dict(base)
