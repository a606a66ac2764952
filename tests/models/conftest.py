"""Fixtures for the model tests: tiny random InternVL and open_clip models saved and loaded for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from corevad.models.tiny import build_tiny_internvl, register_tiny_clip
from corevad_stream.testing import write_moving_square_video


@pytest.fixture(scope="session")
def tiny_internvl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random InternVL saved like a downloaded -hf checkpoint (112 px frames keep prompts short)."""
    return build_tiny_internvl(tmp_path_factory.mktemp("tiny-internvl") / "model", image_size=112)


@pytest.fixture(scope="session")
def tiny_clip_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The name of a tiny open_clip architecture registered from a JSON config written at test time."""
    return register_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three generated clips (75, 60 and 31 frames: partial last segments included) and a corrupt file."""
    d = tmp_path_factory.mktemp("videos")
    write_moving_square_video(d / "alpha.mp4", 75, seed=1)
    write_moving_square_video(d / "beta.mp4", 60, seed=2)
    write_moving_square_video(d / "gamma.mp4", 31, seed=3)
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return d


@pytest.fixture(scope="session")
def make_video():
    """The clip writer (corevad_stream.testing.write_moving_square_video), for tests that need their own clips."""
    return write_moving_square_video
