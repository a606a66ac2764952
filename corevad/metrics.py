"""Frame-level ROC-AUC and AP (scikit-learn), overall and per UCF-Crime class."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .benchmarks import NORMAL_CLASS, VideoGT


@dataclass(frozen=True, slots=True)
class ClassMetric:
    cls: str
    auc: float
    videos: int
    ap: float | None = None


def frame_auc(gt: np.ndarray, scores: np.ndarray) -> float:
    # int8 labels: sklearn's label checks run np.unique over every frame, much cheaper on int8.
    return float(roc_auc_score(np.asarray(gt, dtype=np.int8), scores))


def frame_ap(gt: np.ndarray, scores: np.ndarray) -> float:
    return float(average_precision_score(np.asarray(gt, dtype=np.int8), scores))


def per_class_metrics(videos: Sequence[VideoGT], frame_scores: Sequence[np.ndarray], *,
                      with_ap: bool = False) -> list[ClassMetric]:
    """For each anomalous class: AUC (and AP) over that class's videos together with all normal videos."""
    normal = [k for k, v in enumerate(videos) if not v.is_anomalous]
    classes = sorted({v.cls for v in videos if v.is_anomalous})
    if not normal:
        return []
    gts = [v.gt.astype(np.int8) for v in videos]
    out = []
    for cls in classes:
        idx = [k for k, v in enumerate(videos) if v.cls == cls] + normal
        g = np.concatenate([gts[k] for k in idx])
        s = np.concatenate([frame_scores[k] for k in idx])
        if g.min() == g.max():
            continue
        out.append(ClassMetric(cls, frame_auc(g, s), len(idx) - len(normal), frame_ap(g, s) if with_ap else None))
    return out


__all__ = ["ClassMetric", "NORMAL_CLASS", "frame_ap", "frame_auc", "per_class_metrics"]
