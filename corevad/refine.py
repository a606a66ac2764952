"""Score refinement: softmax over vision-text alignment, Gaussian smoothing, frame expansion, position weights."""

from __future__ import annotations

import numpy as np


def softmax_weights(sims: np.ndarray, tau: float) -> np.ndarray:
    """Row-wise softmax of sims / tau (max-subtracted for stability)."""
    z = (sims - sims.max(axis=-1, keepdims=True)) / float(tau)
    e = np.exp(z)
    weights: np.ndarray = e / (e.sum(axis=-1, keepdims=True) + 1e-12)
    return weights


def softmax_refine(sims: np.ndarray, labels: np.ndarray, tau: float = 0.05) -> np.ndarray:
    """Offline refinement: refined_i = sum_j softmax_j(sims[i, j] / tau) * label_j over all responses."""
    return softmax_weights(np.asarray(sims, dtype=np.float64), tau) @ np.asarray(labels, dtype=np.float64)


def softmax_refine_paper(sims: np.ndarray, labels: np.ndarray, tau: float = 0.05) -> np.ndarray:
    """softmax_refine with the float16 casts of the authors' eval script (for exact reproduction)."""
    s = np.asarray(sims, dtype=np.float16)
    exps = np.exp((s - s.max(axis=1, keepdims=True)) / float(tau)).astype(np.float16)
    w = exps / (exps.sum(axis=1, keepdims=True) + 1e-12)
    refined: np.ndarray = (w * np.asarray(labels, dtype=np.float16)[None, :]).sum(axis=1).astype(np.float16)
    return refined


def causal_softmax_refine(sims: np.ndarray, labels: np.ndarray, tau: float, window: int) -> np.ndarray:
    """Causal refinement: softmax over responses j in [i - window + 1, i] only."""
    n = sims.shape[0]
    lab = np.asarray(labels, dtype=np.float64)
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        lo = max(0, i - window + 1)
        out[i] = softmax_weights(np.asarray(sims[i, lo:i + 1], dtype=np.float64), tau) @ lab[lo:i + 1]
    return out


def gaussian_kernel(size: int = 9, sigma: float = 5.0, centred: bool = False) -> np.ndarray:
    """The paper's normalised Gaussian kernel.

    The authors' grid is numpy.linspace(-size//2, size//2, size); Python's floor division makes
    -size//2 == -5 for size 9, so the grid runs -5..4 and the kernel is slightly off-centre.
    centred=False reproduces that; centred=True uses -(size//2)..size//2.
    """
    lo = -size // 2 if not centred else -(size // 2)
    x = np.linspace(lo, size // 2, size)
    k = np.exp(-(x**2) / (2 * sigma**2))
    kernel: np.ndarray = k / k.sum()
    return kernel


def gaussian_smooth(scores: np.ndarray, size: int = 9, sigma: float = 5.0, centred: bool = False) -> np.ndarray:
    """'same'-mode convolution with gaussian_kernel (zero padding at both ends, as np.convolve does)."""
    return np.convolve(np.asarray(scores, dtype=np.float64), gaussian_kernel(size, sigma, centred), mode="same")


def causal_kernel(length: int = 5, sigma: float = 5.0, lookahead: int = 0) -> np.ndarray:
    """Taps for offsets d = -lookahead .. length-1 (d = i - j, so d < 0 is the future), unnormalised."""
    d = np.arange(-lookahead, length, dtype=np.float64)
    return np.exp(-(d**2) / (2 * sigma**2))


def causal_smooth(scores: np.ndarray, length: int = 5, sigma: float = 5.0, lookahead: int = 0, *,
                  start_prior: bool = False) -> np.ndarray:
    """One-sided Gaussian smoothing: score_i uses scores[i - length + 1 .. i + lookahead].

    Taps after the end of the stream are left out and the kernel renormalised over the taps that exist.
    Taps before the start: left out too (start_prior=False), or counted as score 0, "normal" (start_prior),
    so the first answers of a camera weigh what they weigh mid-stream.
    """
    x = np.asarray(scores, dtype=np.float64)
    n = x.shape[0]
    taps = causal_kernel(length, sigma, lookahead)
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        lo, hi = max(0, i - length + 1), min(n, i + lookahead + 1)
        # taps index t = d + lookahead with d = i - j
        w = taps[i - np.arange(lo, hi) + lookahead]
        out[i] = w @ x[lo:hi] / (w.sum() + start_mass(taps, i, length, lookahead, start_prior))
    return out


def causal_smooth_convolved(scores: np.ndarray, length: int = 5, sigma: float = 5.0,
                            lookahead: int = 0) -> np.ndarray:
    """causal_smooth (start_prior=False) as two convolutions: the same numbers, up to rounding, in one
    pass, for parameter searches that smooth every video thousands of times (corevad.tuning). Tested
    against causal_smooth, the reference; the monitor uses causal_smooth (via CausalScorer's step form).

    The numerator convolves the scores with the taps, the denominator a run of ones, so each output is
    renormalised over the taps that fall inside the stream, as causal_smooth does.
    """
    x = np.asarray(scores, dtype=np.float64)
    taps = causal_kernel(length, sigma, lookahead)
    num = np.convolve(x, taps)[lookahead:lookahead + len(x)]
    den = np.convolve(np.ones_like(x), taps)[lookahead:lookahead + len(x)]
    return num / den


def start_mass(taps: np.ndarray, i: int, length: int, lookahead: int, start_prior: bool) -> float:
    """The weight of the taps that fall before the stream's start for segment i (0 without the prior)."""
    missing = length - 1 - i  # past offsets d = i+1 .. length-1 have no segment
    if not start_prior or missing <= 0:
        return 0.0
    return float(taps[lookahead + i + 1: lookahead + length].sum())


def text_context_refine(labels: np.ndarray, query: np.ndarray, keys: np.ndarray, *, tau: float, window: int,
                        mix: float = 1.0) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Text-anchored causal refinement (batch form).

    context_i = sum over j in [i - window + 1, i] of softmax(query_i . keys_j / tau)_j * labels_j, where
    query_i embeds segment i's whole answer and keys_j the description of answer j (unit vectors);
    returns (1 - mix) * labels + mix * context, and per segment (window indices, weights).
    """
    lab = np.asarray(labels, dtype=np.float64)
    q = np.asarray(query, dtype=np.float32)
    k = np.asarray(keys, dtype=np.float32)
    n = lab.shape[0]
    out = np.empty(n, dtype=np.float64)
    weights: list[tuple[np.ndarray, np.ndarray]] = []
    for i in range(n):
        lo = max(0, i - window + 1)
        w = softmax_weights((k[lo:i + 1] @ q[i]).astype(np.float64), tau)
        out[i] = (1.0 - mix) * lab[i] + mix * float(w @ lab[lo:i + 1])
        weights.append((np.arange(lo, i + 1), w))
    return out, weights


def position_weights(n_frames: int) -> np.ndarray:
    """exp(-0.5 ((t - n//2) / int(0.5 n))^2): the paper's centre prior over a whole (offline) video."""
    if n_frames <= 0:
        return np.zeros(0)
    sigma = max(int(n_frames * 0.5), 1)
    t = np.arange(n_frames, dtype=np.float64)
    return np.exp(-0.5 * ((t - n_frames // 2) / sigma) ** 2)
