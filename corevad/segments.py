"""30-frame segments, the 8 frames sampled from each, and mapping segment scores back to frames."""

from __future__ import annotations

import math

import numpy as np

from .types import Segment


def segment_count(n_frames: int, segment_len: int = 30) -> int:
    """ceil(n_frames / segment_len): the last segment may be partial."""
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    return math.ceil(n_frames / segment_len)


def sample_indices(start: int, end: int, n_sampled: int = 8) -> np.ndarray:
    """Frames [start, end) sampled evenly from first to last; all of them when there are <= n_sampled."""
    if end <= start:
        raise ValueError(f"empty segment [{start}, {end})")
    if end - start <= n_sampled:
        return np.arange(start, end, dtype=np.int64)
    # int32 truncation as in the authors' build_second_chunks (floor, not round).
    return np.linspace(start, end - 1, num=n_sampled, dtype=np.int32).astype(np.int64)


def segment_video(n_frames: int, segment_len: int = 30, n_sampled: int = 8) -> list[Segment]:
    """All segments of a video with their absolute sampled frame indices."""
    out = []
    for i in range(segment_count(n_frames, segment_len)):
        start = i * segment_len
        end = min(start + segment_len, n_frames)
        out.append(Segment(index=i, start=start, end=end, sampled=sample_indices(start, end, n_sampled)))
    return out


def expand_to_frames(segment_scores: np.ndarray, n_frames: int, segment_len: int = 30) -> np.ndarray:
    """Repeat each segment score segment_len times and cut to the video's frame count."""
    scores = np.asarray(segment_scores)
    if scores.shape[0] * segment_len < n_frames:
        raise ValueError(
            f"{scores.shape[0]} segment scores cover {scores.shape[0] * segment_len} frames, "
            f"fewer than the video's {n_frames}"
        )
    return np.repeat(scores, segment_len)[:n_frames]


def segment_means(frame_features: np.ndarray, segment_len: int = 30) -> np.ndarray:
    """Mean of each segment's frame embeddings: (frames, dim) -> (segments, dim)."""
    feats = np.asarray(frame_features, dtype=np.float32)
    starts = np.arange(0, feats.shape[0], segment_len)
    counts = np.diff(np.append(starts, feats.shape[0])).astype(np.float32)
    return np.add.reduceat(feats, starts, axis=0) / counts[:, None]
