"""`extract-features`: the CLIP embedding of every frame of each video, saved as `<video>_CLIP_features.npy`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from ..features import feature_path
from ..files import atomic_save_npy
from .jobs import VideoJob
from .report import NoProgress, PipelineProgress, RunReport, error_text, fit_length

if TYPE_CHECKING:  # corevad.models loads pydantic: only when a pipeline runs
    from ..models.base import ImageTextEncoder


def extract_features(
    jobs: list[VideoJob],
    out_dir: str | Path,
    encoder: ImageTextEncoder,
    *,
    fix_frame_count: bool = False,
    overwrite: bool = False,
    progress: PipelineProgress | None = None,
    batch_frames: int = 64,
) -> RunReport:
    """Encode every frame of each video with CLIP; save `<video>_CLIP_features.npy` (frames x dim).

    Progress units are frames. A file already there with the encoder's dimension is kept (unless
    overwrite); a video that fails is reported in the RunReport and the others go on.
    """
    from ..video import frame_count_message, iter_frames

    if batch_frames < 1:
        raise ValueError(f"batch_frames must be >= 1, got {batch_frames}")
    progress = progress or NoProgress()
    report = RunReport()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    progress.begin(len(jobs))
    for job in jobs:
        target = feature_path(out, job.name)
        if target.is_file() and not overwrite and _valid_features(target, encoder.dim):
            report.skipped.append(job.name)
            progress.video_done()
            continue
        try:
            if job.path is None:
                raise DataError(f"video {job.name!r} is listed but not in the video folder")
            progress.video(job.name, units=job.expected_frames)
            chunks: list[np.ndarray] = []
            batch: list[np.ndarray] = []
            for frame in iter_frames(job.path):
                batch.append(frame)
                if len(batch) == batch_frames:
                    chunks.append(encoder.encode_images(np.stack(batch)))
                    progress.advance_units(len(batch))
                    batch = []
            if batch:
                chunks.append(encoder.encode_images(np.stack(batch)))
                progress.advance_units(len(batch))
            if not chunks:
                raise DataError(f"{job.name}: no frames decoded")
            feats = np.concatenate(chunks).astype(np.float32)
            decoded = feats.shape[0]
            msg = frame_count_message(job.name, decoded, job.expected_frames)
            if msg:
                if fix_frame_count and job.expected_frames:
                    feats = fit_length(feats, job.expected_frames)
                    msg += f"; features {'padded' if decoded < job.expected_frames else 'cut'} to match"
                report.warnings.append(msg)
            atomic_save_npy(target, feats)
            report.done.append(job.name)
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the run
            report.failed[job.name] = error_text(exc)
            progress.failed(job.name, error_text(exc))
        progress.video_done()
    return report


def _valid_features(path: Path, dim: int) -> bool:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return bool(arr.ndim == 2 and arr.shape[1] == dim and arr.shape[0] > 0)
