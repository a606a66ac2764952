"""Parity: a video replayed through the runtime (replay backend, tiny CLIP) scores exactly like the method core.

This holds the contract between corevad_stream and corevad: the runtime's per-camera causal scores equal
corevad.pipeline.score_causal on the same answers and the same CLIP features.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from stream_doubles import stream_config

from corevad.models import ClipConfig, ReplayBackend, load_clip
from corevad.models.tiny import register_tiny_clip
from corevad.pipeline import score_causal
from corevad.prompt import parse_answer
from corevad.segments import segment_video
from corevad_stream import App, MemorySink
from corevad_stream.segmenter import prepare_frame

SIZE = 64


def answers(n: int) -> list[str]:
    out = []
    for i in range(n):
        if i % 5 == 4:
            out.append("I cannot tell what is going on here.")  # unparsed
        elif 3 <= i <= 7:
            out.append(f"Anomalous scenes.\nA man hits car number {i} with a bat.")
        else:
            out.append(f"Normal scenes.\nTraffic moves along street {i % 3}.")
    return out


@pytest.fixture(scope="module")
def tiny_clip():  # type: ignore[no-untyped-def]
    return load_clip(ClipConfig(model=register_tiny_clip(), pretrained=None, device="cpu", dtype="float32"))


def expected_features(video: Path, encoder, texts: list[str]) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    n = len(frames)
    visual = []
    for seg in segment_video(n, 30, 8):
        imgs = np.stack([prepare_frame(frames[k], SIZE) for k in seg.sampled])
        visual.append(encoder.encode_images(imgs).mean(axis=0))
    verdicts = [parse_answer(t) for t in texts]
    resp = encoder.encode_texts([v.text for v in verdicts])
    desc = encoder.encode_texts([v.description or v.text for v in verdicts])
    return n, np.stack(visual), resp, desc


@pytest.mark.slow
@pytest.mark.parametrize("lookahead", [0, 1])
async def test_runtime_scores_equal_score_causal_on_the_same_answers_and_features(
        video_factory: Callable[..., Path], tiny_clip, lookahead: int) -> None:  # type: ignore[no-untyped-def]
    video = video_factory("parity.mp4", seconds=10, size=(160, 120))
    texts = answers(10)
    refinement = {"use_features": True, "lrc_lookahead": lookahead, "smooth_lookahead": lookahead, "refine_window": 4,
                  "smooth_length": 3}
    cfg = stream_config([{"name": "parity", "url": str(video), "rate": "fast", "overload_policy": "block"}],
                        refinement=refinement, runtime={"frame_size": SIZE, "max_batch": 3})
    sink = MemorySink()
    async with App(cfg, backend=ReplayBackend({"parity": texts}), encoder=tiny_clip, sinks=[sink]) as app:
        await app.wait_finished(timeout=120)
    got = {m.payload["index"]: m.payload for m in sink.of("score", "parity")}  # type: ignore[index]
    n, visual, resp, desc = expected_features(video, tiny_clip, texts)
    assert n == 300 and sorted(got) == list(range(10))
    labels = np.array([parse_answer(t).label for t in texts])
    want = score_causal(labels, n, cfg.refinement.params(), visual=visual, response_emb=resp, description_emb=desc)
    np.testing.assert_allclose([got[i]["score"] for i in range(10)], want.segment_scores, atol=1e-5)
    np.testing.assert_allclose([got[i]["refined"] for i in range(10)], want.refined, atol=1e-5)
    assert app.stats()["cameras"]["parity"]["unparsed"] == 2
    assert len({round(float(s), 3) for s in want.segment_scores}) > 3  # the comparison is not trivial


async def test_frameless_replay_matches_the_text_only_causal_protocol() -> None:
    texts = answers(12)
    cfg = stream_config([{"name": "Abuse028_x264", "url": "frameless://350", "rate": "fast",
                          "overload_policy": "block"}], refinement={"smooth_length": 4})
    sink = MemorySink()
    backend = ReplayBackend({"Abuse028_x264": texts})
    async with App(cfg, backend=backend, encoder=None, sinks=[sink]) as app:
        await app.wait_finished(timeout=60)
    got = sorted(sink.of("score"), key=lambda m: m.payload["index"])  # type: ignore[index]
    labels = np.array([parse_answer(t).label for t in texts])
    want = score_causal(labels, 350, cfg.refinement.params())
    assert len(got) == 12  # ceil(350 / 30): the partial last segment is scored too
    np.testing.assert_allclose([m.payload["score"] for m in got], want.segment_scores, rtol=0, atol=1e-12)  # type: ignore[index]
