"""Small generated video files for tests and benchmarks (one home: five writers had grown apart).

make_test_video: an H.264 MP4 of ffmpeg's lavfi test pattern (PyAV's libx264 when ffmpeg is missing), for
the RTSP camera and the file source. write_moving_square_video: a tiny clip of an exact frame count, a
bright square moving over fixed noise, for the models and replay tests (frame counts decide segments).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def make_test_video(
    path: Path | str,
    *,
    seconds: float = 4.0,
    size: tuple[int, int] = (320, 240),
    fps: int = 30,
    pattern: str = "testsrc2",
) -> Path:
    """Write a small H.264 MP4 (yuv420p, keyframe every second) made by ffmpeg's lavfi test source.

    Falls back to PyAV's bundled libx264 (a moving gradient; `pattern` then does not apply) when the
    ffmpeg binary is missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        subprocess.run(
            [ffmpeg, "-loglevel", "error", "-y", "-f", "lavfi",
             "-i", f"{pattern}=size={width}x{height}:rate={fps}", "-t", str(seconds),
             "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(fps), str(path)],
            check=True, capture_output=True,
        )
        return path
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(fps)}
        yy, xx = np.mgrid[0:height, 0:width]
        for i in range(round(seconds * fps)):
            img = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, np.full_like(xx, (8 * i) % 256)], -1)
            frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_moving_square_video(
    path: Path | str,
    n_frames: int,
    *,
    width: int = 64,
    height: int = 48,
    seed: int = 0,
    colour: tuple[int, int, int] | None = None,
) -> Path:
    """Encode exactly n_frames of H.264 with PyAV (30 fps): a bright 12 px square moving over noise.

    seed picks the noise and the square's start; colour defaults to one that varies with the seed.
    """
    import av
    import numpy as np

    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 80, size=(height, width, 3), dtype=np.uint8)
    square = colour if colour is not None else (255, 200 - seed * 40 % 200, 40)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(n_frames):
            img = base.copy()
            x = (i * 3 + seed * 7) % (width - 12)
            img[10:22, x : x + 12] = square
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return Path(path)
