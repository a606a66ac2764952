"""CLIP feature files in the authors' layout: <folder>/<video>_CLIP_features.npy, frames x dim."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import FeatureError
from .segments import segment_means


def feature_path(folder: str | Path, video: str) -> Path:
    """Where a video's per-frame CLIP features live (same naming as the authors' release)."""
    return Path(folder) / f"{video}_CLIP_features.npy"


def load_segment_features(folder: str | Path, video: str, expected_segments: int, segment_len: int = 30) -> np.ndarray:
    """Per-segment visual features (mean of the frames' embeddings); shape errors name the file and counts."""
    path = feature_path(folder, video)
    if not path.is_file():
        raise FeatureError(f"no CLIP features for video {video!r}: {path} does not exist")
    feats = np.load(path)
    if feats.ndim != 2:
        raise FeatureError(f"{path}: expected a (frames, dim) array, got shape {feats.shape}")
    seg = segment_means(feats, segment_len)
    if seg.shape[0] != expected_segments:
        raise FeatureError(
            f"{path}: {feats.shape[0]} frames give {seg.shape[0]} segments, the video needs {expected_segments}"
        )
    return seg
