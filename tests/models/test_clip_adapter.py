"""The open_clip adapter on a tiny registered architecture (same loading path as ViT-B-16)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from corevad.errors import ModelError
from corevad.models import ClipConfig, ImageTextEncoder, load_clip


@pytest.fixture(scope="module")
def encoder(tiny_clip_name: str):
    return load_clip(ClipConfig(model=tiny_clip_name, pretrained=None, batch_size=4))


def test_encoder_satisfies_protocol_and_normalises(encoder) -> None:
    assert isinstance(encoder, ImageTextEncoder)
    assert encoder.dim == 32
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(10, 48, 80, 3), dtype=np.uint8)  # not square, not model size
    emb = encoder.encode_images(frames)
    assert emb.shape == (10, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # Batching (batch_size=4 over 10 frames) must not change results.
    np.testing.assert_allclose(emb[7], encoder.encode_images(frames[7:8])[0], atol=1e-5)
    # Different images give different embeddings.
    assert not np.allclose(emb[0], emb[1])


def test_texts_truncated_normalised_and_empty_is_zero(encoder) -> None:
    long = "a person runs " * 100  # far past the 77-token context
    emb = encoder.encode_texts(["Normal scenes. People walk.", "", long, "Normal scenes. People walk."])
    assert emb.shape == (4, 32)
    np.testing.assert_allclose(np.linalg.norm(emb[[0, 2, 3]], axis=1), 1.0, atol=1e-5)
    assert not emb[1].any()
    np.testing.assert_allclose(emb[0], emb[3], atol=1e-6)


def test_paper_preprocess_squashes_with_imagenet_stats(tiny_clip_name: str, encoder) -> None:
    paper = load_clip(ClipConfig(model=tiny_clip_name, pretrained=None, preprocess="paper"))
    # A wide frame: left third black, rest white. The open_clip centre crop drops the black part;
    # the paper's square resize keeps it.
    frame = np.full((1, 64, 192, 3), 255, np.uint8)
    frame[:, :, :64] = 0
    crop = encoder._preprocess(frame)
    squash = paper._preprocess(frame)
    assert crop.shape == squash.shape == (1, 3, 64, 64)
    assert float(squash[0, :, :, 0].mean()) < -1.5  # black under ImageNet stats: about -1.8..-2.0
    assert float(crop[0, :, :, 0].mean()) > 1.5  # white under CLIP stats: about 1.9..2.1


def test_rejects_bad_frames(encoder) -> None:
    with pytest.raises(ValueError, match="uint8"):
        encoder.encode_images(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="RGB"):
        encoder.encode_images(np.zeros((8, 8, 3), np.uint8))


def test_thread_safe_for_concurrent_callers(encoder) -> None:
    frames = np.random.default_rng(2).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    want = encoder.encode_images(frames)
    got: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: got.append(encoder.encode_images(frames))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 3 and all(np.allclose(g, want, atol=1e-5) for g in got)


def test_unknown_model_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="no-such-clip"):
        load_clip(ClipConfig(model="no-such-clip", pretrained=None))


def test_segment_feature_is_mean_of_unit_frame_embeddings(encoder) -> None:
    frames = np.random.default_rng(3).integers(0, 256, size=(30, 24, 32, 3), dtype=np.uint8)
    seg = encoder.encode_segment(frames)
    np.testing.assert_allclose(seg, encoder.encode_images(frames).mean(axis=0), atol=1e-6)
    assert np.linalg.norm(seg) < 1.0 + 1e-6  # a mean of unit vectors, left as the authors use it
