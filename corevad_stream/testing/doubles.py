"""Small doubles of corevad's model protocols (VLMBackend, ImageTextEncoder) for tests and benchmarks.

They stand in for the model only: everything around them (runtime, sinks, brokers, cameras) stays real.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from corevad.models.base import Clip

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
