"""Against a real vLLM server (the CPU build, its own venv) serving the tiny random InternVL (head size 32, which
vLLM's CPU attention needs): answers and their order, p_anomalous from real logprobs with structured output
forcing the two-line form, both describe modes, one tile per frame (the prompt token count), and a replica
pool of vLLM + `transformers serve`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from corevad.models import Clip, OpenAIOptions, VLMConfig, load_vlm
from corevad.models.tiny import build_tiny_internvl
from corevad.prompt import parse_answer
from corevad_stream.testing import TransformersServe
from corevad_stream.testing.vllm_server import VLLMServer, vllm_venv

pytestmark = [pytest.mark.services, pytest.mark.slow]

# vLLM's structured output: the two-line contract on a random model (PLATFORM.md: 30 of 30 parsed).
TWO_LINES = {"structured_outputs": {"regex": "(Anomalous|Normal) scenes\\.\\n[A-Za-z ,]{1,40}\\."}}
IMAGE_TOKENS = 256  # one 448 px tile: (448 / 14)^2 / 4


@pytest.fixture(scope="module")
def vllm_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_internvl(tmp_path_factory.mktemp("tiny-vllm") / "model", image_size=448, text_heads=2)


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory, vllm_model_dir: Path) -> Iterator[VLLMServer]:
    # Served under its folder's path: `transformers serve` answers only to that name, and the pool test
    # sends one model name to both servers.
    server = VLLMServer(tmp_path_factory.mktemp("vllm"), vllm_model_dir, venv=vllm_venv(),
                        served_name=str(vllm_model_dir))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _backend(urls: str | list[str], model: str, *, describe: str = "all", describe_above: float = 0.5,
             extra_body: dict[str, Any] | None = None, **opts: Any):  # type: ignore[no-untyped-def]
    options = OpenAIOptions(base_url=urls, model=model, api_key_env=None, timeout_s=120,
                            extra_body=TWO_LINES if extra_body is None else extra_body, **opts)
    return load_vlm(VLMConfig(backend="openai", max_new_tokens=24, n_frames=8, describe=describe,
                              describe_above=describe_above, openai=options))


def _clips(n: int, *, frames: int = 8, size: tuple[int, int] = (240, 320), seed: int = 0) -> list[Clip]:
    rng = np.random.default_rng(seed)
    return [Clip("cam", i, rng.integers(0, 256, size=(frames, *size, 3), dtype=np.uint8)) for i in range(n)]


def test_answers_in_order_with_p_anomalous_from_real_logprobs(vllm: VLLMServer) -> None:
    clips = _clips(6)
    backend = _backend(vllm.url, vllm.served_name, concurrency=3)
    try:
        together = backend.answer_scored(clips)
        alone = [backend.answer_scored([c])[0] for c in reversed(clips)][::-1]
    finally:
        backend.close()
    assert [a.text for a in together] == [a.text for a in alone]  # order kept, greedy and repeatable
    assert all(parse_answer(a.text).parsed for a in together), [a.text for a in together]
    # vLLM's logprobs are the model's own (before the structured-output mask), so they need not favour the
    # label the grammar let through; they must be there and be a probability.
    assert all(a.p_anomalous is not None and 0.0 <= a.p_anomalous <= 1.0 for a in together)
    assert len({a.text for a in together}) > 1, "answers should depend on the frames"


def test_one_tile_per_frame_prompt_token_count(vllm: VLLMServer) -> None:
    import httpx

    backend = _backend(vllm.url, vllm.served_name)
    try:
        counts = {}
        for frames in (8, 4):
            body = backend.build_request(_clips(1, frames=frames)[0])  # 320 x 240 frames, as UCF-Crime's
            resp = httpx.post(vllm.url + "/chat/completions", json=body, timeout=120)
            resp.raise_for_status()
            counts[frames] = resp.json()["usage"]["prompt_tokens"]
    finally:
        backend.close()
    # Four more frames add four tiles: 256 image tokens + <img></img> + the "FrameK: " text each. Tiled
    # (13 tiles per 320x240 frame) they would add about 13 x 256 each.
    per_frame = (counts[8] - counts[4]) / 4
    assert IMAGE_TOKENS + 2 <= per_frame <= IMAGE_TOKENS + 12, counts
    assert 8 * IMAGE_TOKENS < counts[8] < 8 * (IMAGE_TOKENS + 12) + 400, counts


@pytest.mark.parametrize("via", ["two_requests", "stop"])
def test_describe_on_demand_matches_all_where_described(vllm: VLLMServer, via: str) -> None:
    clips = _clips(8, seed=1)
    # describe_above 1: only the verdict decides here (the random model's p_anomalous is often high for a
    # "Normal" verdict, which would describe every row).
    full = _backend(vllm.url, vllm.served_name)
    lazy = _backend(vllm.url, vllm.served_name, describe="on_demand", describe_via=via, describe_above=1.0)
    try:
        one = full.answer_scored(clips)
        two = lazy.answer_scored(clips)
    finally:
        full.close()
        lazy.close()
    assert len({parse_answer(a.text).label for a in one}) == 2, "both verdicts should occur in 8 segments"
    for a, b in zip(one, two, strict=True):
        assert b.error is None
        if parse_answer(a.text).label == 1:  # anomalous: the same full answer
            assert b.described and b.text == a.text
        else:
            assert not b.described and b.text == "Normal scenes."
        if via == "two_requests":
            assert b.p_anomalous == pytest.approx(a.p_anomalous, abs=1e-3)


def test_a_pool_of_vllm_and_transformers_serve(vllm: VLLMServer, vllm_model_dir: Path, tmp_path: Path) -> None:
    serve = TransformersServe(tmp_path / "serve", vllm_model_dir)
    serve.start(timeout=180)
    # transformers serve knows no structured output: ask both plainly (the random model's free text).
    backend = _backend([vllm.url, serve.url], vllm.served_name, extra_body={}, concurrency=2)
    try:
        clips = _clips(6, size=(64, 64), frames=2)
        texts = backend.answer(clips)
        stats = {s["url"]: s for s in backend.endpoint_stats()}
    finally:
        backend.close()
        serve.stop()
    assert len(texts) == 6 and all(t.strip() for t in texts)
    assert stats[vllm.url]["requests"] >= 1 and stats[serve.url]["requests"] >= 1
    assert all(s["errors"] == 0 for s in stats.values())
