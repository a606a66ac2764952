"""Video-level bootstrap: 95 % intervals for figures computed over many videos, and the paired difference of two
runs on the same videos (is AUC 84.06 vs 84.17 a change at all?).

Videos, not frames, are resampled: frames of one video are strongly correlated, so resampling frames would
give intervals far too narrow. A resample is a vector of counts (how often each video was drawn), and a
statistic is a function of those counts used as weights, so one sorting of the frames serves every resample
(FrameRanks: weighted AUC and AP in O(frames) each, equal to sklearn's on the concatenated resample).
Percentile intervals; seeded, so a report is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Statistic = Callable[[np.ndarray], float]  # per-video weights (counts) -> value


@dataclass(frozen=True, slots=True)
class Interval:
    """A figure on all videos (estimate) and its bootstrap percentile interval [low, high] at `level`;
    `resamples` counts the resamples where the figure was defined (an AUC needs both classes)."""

    estimate: float
    low: float
    high: float
    level: float
    resamples: int

    def to_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level,
                "resamples": self.resamples}


def resample_counts(n_videos: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_videos) draw counts: each row draws n_videos videos with replacement."""
    if n_videos < 1 or n_resamples < 1:
        raise ValueError(f"need at least one video and one resample, got {n_videos} and {n_resamples}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_videos, size=(n_resamples, n_videos))
    counts = np.zeros((n_resamples, n_videos), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(n_resamples), n_videos), draws.ravel()), 1)
    return counts


def _interval(estimate: float, values: np.ndarray, level: float) -> Interval:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    ok = values[np.isfinite(values)]
    if ok.size == 0:
        return Interval(estimate, float("nan"), float("nan"), level, 0)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(ok, [tail, 1.0 - tail], method="inverted_cdf")
    return Interval(float(estimate), float(low), float(high), level, int(ok.size))


def bootstrap(statistic: Statistic, n_videos: int, *, n_resamples: int = 1000, level: float = 0.95,
              seed: int = 0) -> Interval:
    """The statistic on all videos (weights 1) and its percentile interval over video resamples."""
    counts = resample_counts(n_videos, n_resamples, seed)
    values = np.array([statistic(c) for c in counts], dtype=np.float64)
    return _interval(statistic(np.ones(n_videos, dtype=np.int64)), values, level)


def paired_bootstrap(a: Statistic, b: Statistic, n_videos: int, *, n_resamples: int = 1000, level: float = 0.95,
                     seed: int = 0) -> Interval:
    """a - b (two runs' figures on the same videos) and its interval, both computed on the same resamples: an
    interval that holds 0 means the runs are not told apart by these videos."""
    counts = resample_counts(n_videos, n_resamples, seed)
    values = np.array([a(c) - b(c) for c in counts], dtype=np.float64)
    ones = np.ones(n_videos, dtype=np.int64)
    return _interval(a(ones) - b(ones), values, level)


class FrameRanks:
    """Frame scores and 0/1 labels of many videos, sorted once: frame AUC and AP of any video weighting."""

    def __init__(self, scores: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> None:
        if len(scores) != len(labels):
            raise ValueError(f"{len(scores)} score arrays for {len(labels)} label arrays")
        for k, (s, y) in enumerate(zip(scores, labels, strict=True)):
            if len(s) != len(y):
                raise ValueError(f"video {k}: {len(s)} scores for {len(y)} labels")
        self.n_videos = len(scores)
        video = np.concatenate([np.full(len(s), k, dtype=np.int64) for k, s in enumerate(scores)])
        s = np.concatenate([np.asarray(x, dtype=np.float64) for x in scores])
        y = np.concatenate([np.asarray(x) for x in labels]).astype(bool)
        unique, inverse = np.unique(s, return_inverse=True)  # ascending; ties share one entry
        from scipy import sparse

        # Frames per (video, distinct score), split by label, as sparse (videos x distinct scores) matrices: a
        # resample's weights act through these (a dense one would be 290 x 1.1M for UCF-Crime).
        shape = (self.n_videos, unique.size)
        ones = np.ones(s.size)
        self._pos_m = sparse.csr_matrix((ones[y], (video[y], inverse[y])), shape=shape)
        self._neg_m = sparse.csr_matrix((ones[~y], (video[~y], inverse[~y])), shape=shape)

    def _masses(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (self.n_videos,):
            raise ValueError(f"expected {self.n_videos} weights, got shape {w.shape}")
        return np.asarray(self._pos_m.T @ w).ravel(), np.asarray(self._neg_m.T @ w).ravel()

    def auc(self, weights: np.ndarray) -> float:
        """ROC AUC of the weighted frames (ties count one half); NaN without both labels."""
        pos, neg = self._masses(weights)
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos == 0 or total_neg == 0:
            return float("nan")
        below = np.cumsum(neg) - neg  # negatives strictly below each distinct score
        return float((pos * (below + 0.5 * neg)).sum() / (total_pos * total_neg))

    def ap(self, weights: np.ndarray) -> float:
        """Average precision (sklearn's step-wise definition, ties as one threshold); NaN without positives."""
        pos, neg = self._masses(weights)
        if pos.sum() == 0:
            return float("nan")
        tp, fp = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])  # descending thresholds
        seen = (tp + fp) > 0
        precision = np.where(seen, tp / np.where(seen, tp + fp, 1.0), 0.0)
        return float((pos[::-1] * precision).sum() / pos.sum())


def rate_per_hour(events: Sequence[float], hours: Sequence[float]) -> Statistic:
    """The statistic sum(w * events) / sum(w * hours) (e.g. false alerts per hour of normal video: pass 0 hours
    and 0 events for the anomalous videos); NaN when the weighted hours are 0."""
    e, h = np.asarray(events, dtype=np.float64), np.asarray(hours, dtype=np.float64)
    if e.shape != h.shape:
        raise ValueError(f"{e.size} event counts for {h.size} durations")

    def stat(w: np.ndarray) -> float:
        total = float(w @ h)
        return float(w @ e) / total if total > 0 else float("nan")

    return stat


__all__ = ["FrameRanks", "Interval", "bootstrap", "paired_bootstrap", "rate_per_hour", "resample_counts"]
