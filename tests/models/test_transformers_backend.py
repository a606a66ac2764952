"""The transformers backend loads a saved tiny InternVL by path and answers for real decoded frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from corevad.errors import ModelError
from corevad.models import Clip, VLMBackend, VLMConfig, load_vlm
from corevad.video import iter_segments


@pytest.fixture(scope="module")
def backend(tiny_internvl_dir: Path):
    b = load_vlm(VLMConfig(model=str(tiny_internvl_dir), max_new_tokens=12, batch_size=3, device="cpu"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def clips(video_dir: Path) -> list[Clip]:
    segs = list(iter_segments(video_dir / "alpha.mp4")) + list(iter_segments(video_dir / "gamma.mp4"))
    return [Clip("v", k, frames) for k, (_seg, frames) in enumerate(segs)]


def test_answers_real_frames_in_order_and_batched(backend, clips: list[Clip]) -> None:
    assert isinstance(backend, VLMBackend) and backend.name == "transformers"
    assert [c.frames.shape[0] for c in clips] == [8, 8, 8, 8, 1]  # gamma's last segment has one frame
    answers = backend.answer(clips)  # 5 clips with batch_size 3: two generate calls, ragged frame counts
    assert len(answers) == 5 and all(isinstance(a, str) for a in answers)
    assert any(answers), "the tiny model should emit some text"
    # Left padding and batching must not change greedy answers: one at a time gives the same text.
    assert [backend.answer([c])[0] for c in clips] == answers


def test_answer_depends_on_frames(backend) -> None:
    rng = np.random.default_rng(0)
    a = Clip("v", 0, rng.integers(0, 256, size=(8, 40, 40, 3), dtype=np.uint8))
    b = Clip("v", 1, np.zeros((8, 40, 40, 3), np.uint8))
    out = backend.answer([a, b, a])
    assert out[0] == out[2]
    assert out[0] != out[1]


def test_prompt_has_one_image_slot_per_frame(backend) -> None:
    text = backend.prompt_text(8)
    assert text.count(backend.processor.image_token) == 8
    assert "Frame8:" in text and text.endswith("assistant\n")


def test_a_camera_with_zones_still_sends_one_tile_per_frame(backend, video_dir: Path) -> None:
    """Zones crop before the runtime's resize to the model's square: a wide crop of real decoded frames still
    reaches the real processor as one tile per frame (issue 20 item 2)."""
    import cv2

    from corevad_stream.config import CameraConfig
    from corevad_stream.ring import FrameRing
    from corevad_stream.segmenter import Segmenter
    from corevad_stream.zones import CameraZones

    cam = CameraConfig(name="v", url="alpha.mp4", zones=[{"name": "strip", "points": [[0, 0.1], [1, 0.1], [1, 0.4],
                                                                                       [0, 0.4]]}])
    jobs: list = []
    seg = Segmenter("v", ring=FrameRing(2, 8, size=112), frames_per_segment=8, emit=jobs.append,
                    zones=CameraZones("v", cam.zones))
    seg.start_stream(30.0)
    cap = cv2.VideoCapture(str(video_dir / "alpha.mp4"), cv2.CAP_FFMPEG)
    for i in range(30):
        ok, frame = cap.read()
        assert ok
        seg.push(frame if seg.wants() else None, float(i))
    cap.release()
    assert len(jobs) == 1 and seg.zones is not None and seg.zones.layout is not None
    assert seg.zones.layout.box == (0, 5, 64, 19)  # a 64 x 14 strip of the 64 x 48 frames
    [(_, inputs)] = backend.prepare([Clip("v", 0, jobs[0].frames)])
    assert tuple(inputs["pixel_values"].shape) == (8, 3, 112, 112)  # 8 frames, 8 tiles
    image_id = backend.processor.tokenizer.convert_tokens_to_ids(backend.processor.image_token)
    assert int((inputs["input_ids"] == image_id).sum()) == 8 * backend.processor.image_seq_length


def test_missing_frames_is_a_model_error(backend) -> None:
    with pytest.raises(ModelError, match="no frames"):
        backend.answer([Clip("cam", 3, None)])


def test_remote_code_checkpoint_is_refused_with_advice(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "internvl_chat"}))
    with pytest.raises(ModelError, match="openai"):
        load_vlm(VLMConfig(model=str(tmp_path)))


def test_missing_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot load VLM"):
        load_vlm(VLMConfig(model=str(tmp_path / "nothing-here")))


def test_a_big_model_on_the_cpu_is_warned_about(tiny_internvl_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    import corevad.models.transformers_backend as tb

    load_vlm(VLMConfig(model=str(tiny_internvl_dir), device="cpu")).close()
    assert "far too slow" not in caplog.text  # the tiny model is fine on a CPU
    monkeypatch.setattr(tb, "CPU_WARN_PARAMS", 1000)  # pretend the tiny model is an 8B one
    load_vlm(VLMConfig(model=str(tiny_internvl_dir), device="cpu")).close()
    assert "runs on the CPU: expect minutes per segment" in caplog.text


def test_label_probability_is_the_first_tokens_softmax_renormalised_over_the_labels(backend, clips) -> None:
    import torch

    from corevad.prompt import label_of_token

    tok = backend.processor.tokenizer
    by_label: dict[int, list[int]] = {0: [], 1: []}
    for i in range(len(tok)):
        label = label_of_token(tok.decode([i], skip_special_tokens=True))
        if label is not None:
            by_label[label].append(i)
    assert by_label[0] and by_label[1]  # the tiny vocabulary has tokens that begin both labels
    scored = backend.answer_scored(clips[:3])  # one batch
    assert [a.text for a in scored] == backend.answer(clips[:3])
    for clip, a in zip(clips[:3], scored, strict=True):
        inputs = backend.processor(text=[backend.prompt_text(len(clip.frames))], images=list(clip.frames),
                                   return_tensors="pt", crop_to_patches=False)
        with torch.inference_mode():
            probs = backend.model(**inputs).logits[0, -1].float().softmax(-1)
        pa, pn = float(probs[by_label[1]].sum()), float(probs[by_label[0]].sum())
        assert a.p_anomalous is not None and 0.0 <= a.p_anomalous <= 1.0
        assert a.p_anomalous == pytest.approx(pa / (pa + pn), abs=1e-3)  # = 1 - p(Normal), renormalised


def test_a_static_cache_gives_the_same_answers(tiny_internvl_dir: Path, clips: list[Clip], backend) -> None:
    static = load_vlm(VLMConfig(model=str(tiny_internvl_dir), max_new_tokens=12, batch_size=3, device="cpu",
                                static_cache=True))
    caches: list[str] = []
    generate = static.model.generate  # type: ignore[attr-defined]

    def recording(**kw):  # type: ignore[no-untyped-def]
        out = generate(**kw)
        caches.append(type(out.past_key_values).__name__)
        return out

    static.model.generate = recording  # type: ignore[attr-defined]
    try:
        got = static.answer_scored(clips)  # type: ignore[attr-defined]
    finally:
        static.close()
    assert caches == ["StaticCache", "StaticCache"]  # two generate calls of up to 3, both static
    want = backend.answer_scored(clips)
    assert [a.text for a in got] == [a.text for a in want]
    assert [a.p_anomalous for a in got] == pytest.approx([a.p_anomalous for a in want], abs=1e-5)
