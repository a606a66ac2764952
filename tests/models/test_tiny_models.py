"""The tiny model builders cache their output and produce loadable checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from corevad.models.tiny import build_tiny_internvl


def test_cached_build_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_internvl_dir: Path) -> None:
    assert (tiny_internvl_dir / "config.json").is_file()
    assert (tiny_internvl_dir / "tokenizer.json").is_file()
    # A second call on a complete folder returns at once without rewriting the weights.
    mtime = (tiny_internvl_dir / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_internvl(tiny_internvl_dir, image_size=112) == tiny_internvl_dir
    assert (tiny_internvl_dir / "model.safetensors").stat().st_mtime_ns == mtime


def test_rejects_bad_image_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 28"):
        build_tiny_internvl(tmp_path / "m", image_size=100)


def test_default_location_honours_cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from corevad.models import tiny

    monkeypatch.setenv("COREVAD_CACHE", str(tmp_path))
    assert tiny.default_cache_dir() == tmp_path


@pytest.mark.slow
def test_tiny_name_builds_cached_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from corevad.models import TINY, Clip, VLMConfig, load_clip, load_vlm

    monkeypatch.setenv("COREVAD_CACHE", str(tmp_path))
    backend = load_vlm(VLMConfig(model=TINY, max_new_tokens=4, device="cpu"))
    try:
        out = backend.answer([Clip("cam", 0, np.zeros((8, 32, 32, 3), np.uint8))])
    finally:
        backend.close()
    assert len(out) == 1
    assert any(p.name.startswith("tiny-internvl-") for p in tmp_path.iterdir())
    enc = load_clip(model=TINY, device="cpu")
    assert enc.dim == 32 and enc.config.pretrained is None
