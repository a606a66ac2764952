"""Replay over generated video files: the live file source decodes them, tiny real models answer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from corevad.benchmarks import load_benchmark
from corevad.models import ClipConfig, VLMConfig, load_clip, load_vlm
from corevad.models.replay import ReplayBackend
from corevad.models.tiny import build_tiny_internvl, register_tiny_clip
from corevad.params import CausalParams
from corevad.pipeline import score_causal
from corevad_stream.replay import ReplayError, online_figures, run_replay, video_inputs
from corevad_stream.testing import write_moving_square_video

# (name, class, frames, spans): partial last segments included; one anomalous span per anomalous clip.
CLIPS = [("Fight001_x264", "Fighting", 95, (30, 75)), ("Normal_Videos_001_x264", "Normal", 61, None),
         ("Arson001_x264", "Arson", 70, (0, 40))]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("bench")
    (d / "videos" / "sub").mkdir(parents=True)
    rows = ["video\tclass\tframes\tstart1\tend1\tstart2\tend2"]
    for k, (name, cls, frames, span) in enumerate(CLIPS):
        write_moving_square_video(d / "videos" / "sub" / f"{name}.mp4", frames, seed=k + 1, colour=(255, 180, 40))
        s, e = span or (-1, -1)
        rows.append(f"{name}\t{cls}\t{frames}\t{s}\t{e}\t-1\t-1")
    (d / "ann.tsv").write_text("\n".join(rows) + "\n")
    return d / "ann.tsv", d / "videos"


RUNTIME = {"frame_size": 112, "max_batch": 4, "max_wait_s": 0.0, "max_pending_per_camera": 2}


@pytest.mark.slow
async def test_tiny_models_replay_decoded_videos(bench, tmp_path_factory: pytest.TempPathFactory) -> None:
    ann, folder = bench
    videos = load_benchmark("ucf-crime", ann)
    vlm = load_vlm(VLMConfig(model=str(build_tiny_internvl(tmp_path_factory.mktemp("vlm") / "m", image_size=112)),
                             max_new_tokens=12, device="cpu", dtype="float32"))
    clip = load_clip(ClipConfig(model=register_tiny_clip(tmp_path_factory.mktemp("clip")), pretrained=None,
                                device="cpu", dtype="float32"))
    try:
        inputs, missing = video_inputs(videos, folder)
        assert not missing
        result = await run_replay(inputs, backend=vlm, encoder=clip, runtime=RUNTIME, concurrency=2,
                                  refinement={"use_features": True}, timeout_s=300)
    finally:
        vlm.close()
    assert result.use_features  # decoded frames + a CLIP encoder: LRC and softmax refinement ran
    assert result.backend == "transformers"
    assert result.drops == 0
    for v, (_name, _cls, frames, _span) in zip(result.videos, CLIPS, strict=True):
        assert v.frame_scores.shape == (frames,)
        assert v.missing_segments == 0 and v.extra_segments == 0  # the decoder found every annotated frame
        assert np.all((v.segment_scores >= 0) & (v.segment_scores <= 1))
    assert result.segments == sum(math.ceil(f / 30) for _n, _c, f, _s in CLIPS)
    fig = online_figures(result)
    assert 0 <= fig.auc <= 1 and [c.cls for c in fig.per_class] == ["Arson", "Fighting"]


async def test_decoded_replay_of_recorded_answers_equals_the_method_core(bench) -> None:
    ann, folder = bench
    videos = load_benchmark("ucf-crime", ann)
    answers = {}
    for name, _cls, frames, _span in CLIPS:
        n = math.ceil(frames / 30)
        answers[name] = [("Anomalous scenes. A fight." if (k + len(name)) % 3 == 0 else "Normal scenes. A street.")
                         for k in range(n)]
    params = {"smooth_length": 3, "smooth_sigma": 2.0, "smooth_lookahead": 1}
    inputs, _ = video_inputs(videos, folder)
    result = await run_replay(inputs, backend=ReplayBackend(answers), refinement=params, runtime=RUNTIME,
                              concurrency=3, timeout_s=120)
    assert not result.use_features  # no encoder: text-only, exactly the method core's causal protocol
    for v in result.videos:
        labels = np.array([1.0 if a.startswith("Anomalous") else 0.0 for a in answers[v.gt.name]])
        ref = score_causal(labels, v.gt.frames, CausalParams(**params))
        np.testing.assert_array_equal(v.segment_scores, ref.segment_scores)
        assert v.frame_scores.shape == (v.gt.frames,)


def test_missing_video_file_is_named(bench, tmp_path: Path) -> None:
    ann, _folder = bench
    videos = load_benchmark("ucf-crime", ann)
    with pytest.raises(ReplayError, match="Fight001_x264"):
        video_inputs(videos, tmp_path)
    found, missing = video_inputs(videos, tmp_path, skip_missing=True)
    assert found == [] and missing == [v.name for v in videos]


@pytest.mark.data
def test_camera_names_are_topic_safe_and_unique(shared_data: Path) -> None:
    import re

    from corevad_stream.replay import camera_names

    xd = load_benchmark("xd-violence", shared_data / "xd_violence" / "xd_annotations.json")
    names = camera_names(xd)
    assert len(set(names.values())) == len(xd) == 800
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}", n) for n in names.values())


def test_camera_backend_keeps_the_two_stage_form_and_the_label_probability() -> None:
    """Replay's per-camera wrapper maps camera names to videos and hides nothing the worker looks for."""
    from corevad.models.base import Answer, Clip, answers
    from corevad_stream.replay import _CameraBackend

    class TwoStage:
        name = "two-stage"

        def __init__(self) -> None:
            self.prepared: list[list[str]] = []

        def answer(self, clips):  # type: ignore[no-untyped-def]
            return [f"Normal scenes. {c.source}" for c in clips]

        def answer_scored(self, clips):  # type: ignore[no-untyped-def]
            return [Answer(f"Anomalous scenes. {c.source}", 0.75) for c in clips]

        def prepare(self, clips):  # type: ignore[no-untyped-def]
            self.prepared.append([c.source for c in clips])
            return [c.source for c in clips]

        def run(self, prepared):  # type: ignore[no-untyped-def]
            return [Answer(f"ran {s}", 0.5) for s in prepared]

        def close(self) -> None:
            pass

    inner = TwoStage()
    w = _CameraBackend(inner, {"cam-a": "Video_A"})  # type: ignore[arg-type]
    clip = Clip("cam-a", 0, np.zeros((1, 2, 2, 3), np.uint8))
    assert answers(w, [clip]) == [Answer("Anomalous scenes. Video_A", 0.75)]
    assert w.run(w.prepare([clip])) == [Answer("ran Video_A", 0.5)]  # type: ignore[attr-defined]
    assert inner.prepared == [["Video_A"]]
    plain = _CameraBackend(ReplayBackend({"Video_A": ["Normal scenes. x"]}), {"cam-a": "Video_A"})
    assert not hasattr(plain, "prepare")  # the replay backend has one stage; so does its wrapper
    assert answers(plain, [clip]) == [Answer("Normal scenes. x", None)]
