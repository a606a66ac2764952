"""Local Response Cleaning (LRC): give each segment the nearby response that best matches its frames."""

from __future__ import annotations

import numpy as np


def similarity(visual: np.ndarray, text: np.ndarray, renormalise_visual: bool = False) -> np.ndarray:
    """(segments, dim) x (responses, dim) -> (segments, responses) vision-text alignment.

    Text embeddings are expected L2-normalised. The visual feature is the mean of unit frame
    embeddings; the authors use it as is (renormalise_visual=False), which scales each row.
    """
    v = np.asarray(visual, dtype=np.float32)
    t = np.asarray(text, dtype=np.float32)
    if renormalise_visual:
        v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    return v @ t.T


def lrc_choice(sims: np.ndarray, lookback: int = 1, lookahead: int = 1) -> np.ndarray:
    """For each segment i, the index j in [i - lookback, i + lookahead] with the highest sims[i, j].

    Ties go to the earliest j (numpy argmax), as in the authors' code. The offline paper form is
    lookback = lookahead = 1; the causal form uses a lookahead of 0 or 1.
    """
    n, m = sims.shape
    choice = np.empty(n, dtype=np.int64)
    for i in range(n):
        lo, hi = max(0, i - lookback), min(m, i + lookahead + 1)
        choice[i] = lo + int(np.argmax(sims[i, lo:hi]))
    return choice


def clean_responses(responses: list[str], choice: np.ndarray) -> list[str]:
    """Apply an LRC choice to a list of responses."""
    return [responses[j] for j in choice]
