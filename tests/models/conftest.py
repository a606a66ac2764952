"""Fixtures for the model tests: tiny random InternVL and open_clip models saved and loaded for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from corevad.models.tiny import build_tiny_internvl, register_tiny_clip


@pytest.fixture(scope="session")
def tiny_internvl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random InternVL saved like a downloaded -hf checkpoint (112 px frames keep prompts short)."""
    return build_tiny_internvl(tmp_path_factory.mktemp("tiny-internvl") / "model", image_size=112)


@pytest.fixture(scope="session")
def tiny_clip_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The name of a tiny open_clip architecture registered from a JSON config written at test time."""
    return register_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def write_video(path: Path, n_frames: int, *, width: int = 64, height: int = 48, seed: int = 0) -> Path:
    """Encode a small H.264 clip with PyAV: a bright square moving over a noisy background."""
    import av
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 80, size=(height, width, 3), dtype=np.uint8)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(n_frames):
            img = base.copy()
            x = (i * 3 + seed * 7) % (width - 12)
            img[10:22, x : x + 12] = (255, 200 - seed * 40 % 200, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three generated clips (75, 60 and 31 frames: partial last segments included) and a corrupt file."""
    d = tmp_path_factory.mktemp("videos")
    write_video(d / "alpha.mp4", 75, seed=1)
    write_video(d / "beta.mp4", 60, seed=2)
    write_video(d / "gamma.mp4", 31, seed=3)
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return d


@pytest.fixture(scope="session")
def make_video():
    """The write_video helper, for tests that need their own clips."""
    return write_video
