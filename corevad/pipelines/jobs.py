"""Which videos an offline pipeline processes: those an annotation lists (in its order), else a whole folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class VideoJob:
    """A video to process: its key (responses/feature name), file, and the frame count the GT expects."""

    name: str
    path: Path | None
    expected_frames: int | None = None


def list_jobs(videos_dir: str | Path, dataset: str | None, annotations: str | Path | None) -> list[VideoJob]:
    """Videos to process: those the annotation lists (in its order), else every video in the folder.

    A listed video with no file is kept with path=None so it is reported, not silently dropped.
    """
    from ..video import find_videos

    files = find_videos(videos_dir)
    if annotations is None:
        return [VideoJob(name, path) for name, path in files.items()]
    if dataset is None:
        raise ValueError("--annotations needs --dataset (ucf-crime or xd-violence)")
    from ..benchmarks import load_benchmark

    by_clean = {name.replace("#", ""): path for name, path in files.items()}
    jobs = []
    for v in load_benchmark(dataset, annotations):
        jobs.append(VideoJob(v.name, files.get(v.name) or by_clean.get(v.name), v.frames))
    return jobs
