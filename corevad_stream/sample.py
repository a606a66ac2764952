"""The demo camera's sample clip, generated on first use with PyAV (no download, no ffmpeg binary needed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from corevad.paths import cache_dir


def make_clip(path: Path, *, seconds: float = 12.0, size: tuple[int, int] = (640, 480), fps: int = 30) -> Path:
    """Write an H.264 MP4: a street-like background with a box walking across, then running and jumping."""
    import av

    w, h = size
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.mp4")
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([(xx * 255 // w), (yy * 255 // h), np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "veryfast", "tune": "zerolatency"}
        n = int(seconds * fps)
        for i in range(n):
            img = background.copy()
            t = i / fps
            fast = t > seconds * 0.6  # the second half: the "person" runs erratically
            x = int((t * (180 if fast else 40)) % (w - 40))
            y = h // 2 + (int(60 * np.sin(t * 9)) if fast else 0)
            img[y - 40:y + 40, x:x + 40] = (220, 40, 40) if fast else (40, 40, 220)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    os.replace(tmp, path)
    return path


def ensure_sample_clip(name: str = "demo") -> Path:
    """The cached sample clip `name`.mp4, generated the first time it is asked for."""
    path = cache_dir() / "samples" / f"{name}.mp4"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        make_clip(path)
    return path
