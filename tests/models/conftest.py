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
