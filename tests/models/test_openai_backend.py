"""The openai backend against a real `transformers serve` process serving the tiny InternVL on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from corevad.models import Clip, OpenAIOptions, VLMBackend, VLMConfig, load_vlm
from corevad.models.openai_backend import OpenAIError, encode_jpeg_data_url
from corevad_stream.testing import TransformersServe, free_port

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tiny_internvl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    serve = TransformersServe(tmp_path_factory.mktemp("serve"), tiny_internvl_dir)
    serve.start(timeout=180)  # model load + import on a slow CI machine
    try:
        yield f"http://{serve.host}:{serve.port}"
    finally:
        serve.stop(timeout=20)


def _backend(base_url: str, model: str, **opts: object):
    options = OpenAIOptions(base_url=base_url, model=model, max_side=48, api_key_env=None, **opts)
    return load_vlm(VLMConfig(backend="openai", max_new_tokens=10, openai=options))


def _frames(seed: int) -> np.ndarray:
    # Square frames: the server tiles images by aspect ratio, and a square one stays a single tile.
    return np.random.default_rng(seed).integers(0, 256, size=(8, 48, 48, 3), dtype=np.uint8)


def test_answers_with_images_through_a_real_server(server: str, tiny_internvl_dir: Path) -> None:
    backend = _backend(f"{server}/v1", str(tiny_internvl_dir), concurrency=2)
    try:
        assert isinstance(backend, VLMBackend) and backend.name == "openai"
        clips = [Clip("cam", 0, _frames(1)), Clip("cam", 1, np.zeros((8, 48, 48, 3), np.uint8)),
                 Clip("cam", 2, _frames(1))]
        answers = backend.answer(clips)
        assert len(answers) == 3 and backend.requests_sent == 3
        assert any(answers)
        # Greedy decoding: the same frames give the same answer; different frames change it, which
        # shows the server really reads the images we send.
        assert answers[0] == answers[2]
        assert answers[0] != answers[1]
    finally:
        backend.close()


def test_request_interleaves_frames_with_text(tiny_internvl_dir: Path) -> None:
    backend = _backend("http://127.0.0.1:9/v1", "m")
    try:
        body = backend.build_request(Clip("cam", 0, _frames(2)))
    finally:
        backend.close()
    parts = body["messages"][0]["content"]
    images = [p for p in parts if p["type"] == "image_url"]
    assert len(images) == 8 and all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in images)
    first_image = next(i for i, p in enumerate(parts) if p["type"] == "image_url")
    assert parts[first_image - 1]["text"].endswith("Frame1: ")
    assert body["max_tokens"] == 10 and body["temperature"] == 0.0


def test_client_error_fails_fast_with_status(server: str) -> None:
    backend = _backend(f"{server}/no-such-api", "m", max_retries=3, backoff_s=0.01)
    try:
        with pytest.raises(OpenAIError, match="404") as info:
            backend.answer([Clip("cam", 7, _frames(3))])
        assert info.value.status == 404
        assert backend.requests_sent == 1  # a 4xx is not retried
    finally:
        backend.close()


def test_unreachable_server_is_retried_then_reported() -> None:
    port = free_port()  # nothing listens there
    backend = _backend(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, backoff_s=0.01)
    try:
        with pytest.raises(OpenAIError, match="after 3 attempts") as info:
            backend.answer([Clip("cam", 4, _frames(4))])
        assert "segment 4" in str(info.value)
        assert backend.requests_sent == 3 and backend.retries == 2
    finally:
        backend.close()


def test_jpeg_data_url_downscales() -> None:
    import base64
    import io

    from PIL import Image

    url = encode_jpeg_data_url(np.zeros((100, 200, 3), np.uint8), quality=80, max_side=50)
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert img.format == "JPEG" and img.size == (50, 25)
