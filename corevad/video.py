"""Video file decoding for the offline pipeline (PyAV, multi-threaded; corevad never imports cv2)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import DataError
from .segments import sample_indices
from .types import Segment

if TYPE_CHECKING:  # av is imported lazily at run time
    from av.container import InputContainer

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")


class VideoDecodeError(DataError):
    """A video file cannot be opened or decoded; carries the path."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What the container says about a video (frames may be 0 or approximate for some containers)."""

    path: str
    frames: int
    fps: float
    width: int
    height: int


def _open(path: str | Path) -> InputContainer:
    import av

    p = Path(path)
    if not p.is_file():
        raise VideoDecodeError(p, "no such file")
    try:
        container = av.open(str(p))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoDecodeError(p, f"cannot open: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(p, "no video stream")
    return container


def probe(path: str | Path) -> VideoInfo:
    """Container metadata of a video, without decoding it."""
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 0
        return VideoInfo(
            path=str(path),
            frames=int(stream.frames or 0),
            fps=float(rate),
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
        )


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Every frame of a video in order, as (H, W, 3) uint8 RGB.

    thread_type AUTO (frame + slice threads) is what makes PyAV match cv2 on heavy H.264 clips.
    Raises VideoDecodeError (naming the file) if decoding fails part-way.
    """
    import av

    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n = 0
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                n += 1
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise VideoDecodeError(path, f"decoding failed after {n} frames: {exc}") from exc
    if n == 0:
        raise VideoDecodeError(path, "no decodable frames")


def count_frames(path: str | Path) -> int:
    """Frames a full decode yields (what the scores must cover); slower than probe() but exact."""
    import av

    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n = 0
        try:
            for packet in container.demux(stream):
                n += len(packet.decode())
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise VideoDecodeError(path, f"decoding failed after {n} frames: {exc}") from exc
    return n


def iter_segments(
    path: str | Path, segment_len: int = 30, n_sampled: int = 8
) -> Iterator[tuple[Segment, np.ndarray]]:
    """(segment, its sampled frames (k, H, W, 3) uint8 RGB) for each 30-frame segment, streaming.

    Sampling matches segment_video(): the last, partial segment samples within its own length, which
    is only known at end of file, so each segment's frames are held until it is complete.
    """
    buf: list[np.ndarray] = []
    start = 0
    for frame in iter_frames(path):
        buf.append(frame)
        if len(buf) == segment_len:
            yield _segment(start, buf, n_sampled, start // segment_len)
            start += segment_len
            buf = []
    if buf:
        yield _segment(start, buf, n_sampled, start // segment_len)


def _segment(start: int, buf: list[np.ndarray], n_sampled: int, index: int) -> tuple[Segment, np.ndarray]:
    end = start + len(buf)
    idx = sample_indices(start, end, n_sampled)
    return Segment(index=index, start=start, end=end, sampled=idx), np.stack([buf[i - start] for i in idx])


def frame_count_message(video: str, decoded: int, expected: int | None) -> str | None:
    """A one-line warning when a decoded frame count differs from what the ground truth expects."""
    if expected is None or decoded == expected:
        return None
    return (
        f"{video}: decoded {decoded} frames but the annotation expects {expected} "
        f"({decoded - expected:+d}); scores must have exactly {expected} frames"
    )


def find_videos(folder: str | Path) -> dict[str, Path]:
    """Video files directly in a folder, keyed by file name without extension."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"video folder {root} does not exist")
    return {
        p.stem: p for p in sorted(root.iterdir()) if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
    }
