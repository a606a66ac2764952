"""Latency-aware figures for live use: detection delay, false alerts per hour, latency-aware AP (LaAP≈).

Time runs in video seconds at `fps` frames per second (30 for the benchmarks). GT spans are 0-based,
end-exclusive frame ranges, as corevad.benchmarks builds them. Alerts are (start_s, end_s) intervals in
video seconds; an alert still open when its video ends should be closed at the video's end by the caller.

LaAP. arXiv 2505.19022 ("Rethinking Metrics and Benchmarks of Video Anomaly Detection") proposes a
latency-aware AP that replaces recall in the precision-recall curve by a recall whose credit for each
anomalous event decays with the delay of its first detection after the event's onset. The paper's exact
decay function could not be retrieved on this machine (no internet, its laap.py not in the index), so
`laap_approx` implements that idea with a documented, parameter-free decay and is named and reported as
an approximation (LaAP≈), not the paper's number:

    for a threshold θ, event e (a GT span of L_e frames) is first detected at offset
        d_e(θ) = min{ i in [0, L_e) : score[onset_e + i] >= θ } + latency_frames     (∞ if none)
    and earns credit w_e(θ) = max(0, 1 - d_e(θ) / L_e)   (the share of the event still ahead of the alarm);
    latency-aware recall LaR(θ) = mean_e w_e(θ);  precision P(θ) = frame-level precision at θ;
    LaAP≈ = Σ_k P(θ_k) (LaR(θ_k) - LaR(θ_{k-1}))  over the distinct scores θ_1 > θ_2 > ... (step-wise,
    like scikit-learn's average_precision_score).

It is 1 for scores that are exactly the GT, and falls when detections come later in their events or when
normal frames score as high as the detections. `latency_frames` adds the time a score needs to become
known (the causal protocol's lookahead) so an online run is charged for waiting on future segments.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

FPS = 30.0

Span = tuple[int, int]
Interval = tuple[float, float]


@dataclass(frozen=True, slots=True)
class DelayStats:
    """Detection delays over anomalous videos (seconds); missed videos are counted, not averaged."""

    videos: int
    detected: int
    median_s: float
    p90_s: float
    mean_s: float

    @property
    def detection_rate(self) -> float:
        return self.detected / self.videos if self.videos else float("nan")


@dataclass(frozen=True, slots=True)
class FalseAlertRate:
    """Alerts that overlap no GT span, over the given videos' total duration."""

    false_alerts: int
    hours: float

    @property
    def per_hour(self) -> float:
        return self.false_alerts / self.hours if self.hours > 0 else float("nan")


def _clip_spans(spans: Iterable[Span], frames: int | None) -> list[Span]:
    out = []
    for s, e in spans:
        e2 = e if frames is None else min(e, frames)
        if e2 > s:
            out.append((int(s), int(e2)))
    return out


def _overlaps(a: Interval, b: Interval) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def detection_delay(spans: Sequence[Span], alerts: Sequence[Interval], fps: float = FPS, *,
                    latency_s: float = 0.0) -> float | None:
    """Seconds from the first GT span's start to the first alert that overlaps any GT span.

    Alerts are compared with the spans by the video time they cover; `latency_s` is how long after its
    start an alert is actually published (for the causal runtime: (lookahead + 1) segments, the time
    until the opening segment's score is final), added before measuring the delay. An alert already
    published when the anomaly starts counts as delay 0. None when no alert overlaps a span (the anomaly
    was missed), or when the video has no span.
    """
    sp = [(s / fps, e / fps) for s, e in _clip_spans(spans, None)]
    if not sp:
        return None
    t0 = min(s for s, _ in sp)
    hits = [a[0] for a in alerts if any(_overlaps((float(a[0]), float(a[1])), s) for s in sp)]
    if not hits:
        return None
    return max(0.0, min(hits) + latency_s - t0)


def count_false_alerts(spans: Sequence[Span], alerts: Sequence[Interval], fps: float = FPS) -> int:
    """Alerts whose interval overlaps no GT span of their video."""
    sp = [(s / fps, e / fps) for s, e in _clip_spans(spans, None)]
    return sum(1 for a in alerts if not any(_overlaps((float(a[0]), float(a[1])), s) for s in sp))


def false_alerts_per_hour(
    videos: Iterable[tuple[int, Sequence[Span], Sequence[Interval]]], fps: float = FPS
) -> FalseAlertRate:
    """False alerts over (frames, spans, alerts) per video, divided by the videos' total hours.

    Pass the normal videos to get the usual 'false alerts per hour of normal footage'.
    """
    n, frames = 0, 0
    for f, spans, alerts in videos:
        n += count_false_alerts(spans, alerts, fps)
        frames += int(f)
    return FalseAlertRate(n, frames / fps / 3600.0)


def delay_stats(delays: Sequence[float | None]) -> DelayStats:
    """Median / p90 / mean of the detected delays; `None` entries are missed videos."""
    got = np.array([d for d in delays if d is not None], dtype=np.float64)
    if got.size == 0:
        return DelayStats(len(delays), 0, float("nan"), float("nan"), float("nan"))
    return DelayStats(len(delays), int(got.size), float(np.median(got)), float(np.percentile(got, 90)),
                      float(got.mean()))


def laap_approx(
    frame_scores: Sequence[np.ndarray], spans: Sequence[Sequence[Span]], *, latency_frames: int = 0
) -> float:
    """Latency-aware AP (approximation of arXiv 2505.19022; definition in the module docstring).

    frame_scores[k] and spans[k] belong to video k; every GT span is one event. NaN without events.
    """
    if len(frame_scores) != len(spans):
        raise ValueError(f"{len(frame_scores)} score arrays but {len(spans)} span lists")
    if latency_frames < 0:
        raise ValueError(f"latency_frames must be >= 0, got {latency_frames}")
    scores = [np.asarray(s, dtype=np.float64).ravel() for s in frame_scores]
    if not scores:
        return float("nan")
    all_scores = np.concatenate(scores)
    gt = np.concatenate([_gt(len(s), sp) for s, sp in zip(scores, spans, strict=True)])
    # Distinct thresholds, descending, and frame-level precision at each (frames with score >= θ).
    uniq_asc = np.unique(all_scores)
    thr = uniq_asc[::-1]
    order = np.argsort(-all_scores, kind="stable")
    tp_cum = np.cumsum(gt[order])
    n_at = np.searchsorted(-all_scores[order], -thr, side="right")
    precision = tp_cum[n_at - 1] / n_at
    # Per event: credit gained as θ falls past each new running-max ("record") of its scores.
    vals, incs = [], []
    events = 0
    for s, sp in zip(scores, spans, strict=True):
        for a, b in _clip_spans(sp, len(s)):
            events += 1
            x = s[a:b]
            run = np.maximum.accumulate(x)
            rec = np.flatnonzero(np.r_[True, run[1:] > run[:-1]])
            w = np.maximum(0.0, 1.0 - (rec + latency_frames) / (b - a))
            # Highest record first: credit w[-1]; each lower record adds w[k] - w[k+1].
            inc = w - np.r_[w[1:], 0.0]
            vals.append(x[rec])
            incs.append(inc)
    if events == 0:
        return float("nan")
    v = np.concatenate(vals)
    idx = len(thr) - 1 - np.searchsorted(uniq_asc, v)
    delta = np.zeros(len(thr))
    np.add.at(delta, idx, np.concatenate(incs))
    return float(precision @ delta / events)


def _gt(n: int, spans: Sequence[Span]) -> np.ndarray:
    g = np.zeros(n, dtype=np.float64)
    for s, e in spans:
        g[s:e] = 1.0
    return g


__all__ = [
    "FPS", "DelayStats", "FalseAlertRate", "count_false_alerts", "delay_stats", "detection_delay",
    "false_alerts_per_hour", "laap_approx",
]
