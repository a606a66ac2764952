"""The overlapped model stage (issue 11): the next batch is preprocessed while the model runs this one.

With the real transformers backend on the tiny InternVL, the monitor's answers are the serial ones, routed
to the right segments in order; a preprocessing or model failure in one batch is reported for that batch
only (a double of our own prepare/run protocol scripts the faults).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from stream_doubles import ANOMALOUS, stream_config

from corevad.models.base import Answer, Clip
from corevad.prompt import parse_answer
from corevad_stream import App, MemorySink

pytestmark = pytest.mark.slow


class Recording:
    """Wraps a prepare/run backend and records what each run() answered, per (camera, segment)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.clips: dict[tuple[str, int], Clip] = {}
        self.answered: dict[tuple[str, int], str] = {}
        self.sources: list[str] = []  # in the order prepare() saw them

    def prepare(self, clips: Sequence[Clip]) -> Any:
        for c in clips:
            assert c.frames is not None
            self.sources.append(c.source)
            self.clips[(c.source, c.index)] = Clip(c.source, c.index, c.frames.copy())
        return [(c.source, c.index) for c in clips], self.inner.prepare(clips)

    def run(self, prepared: Any) -> list[Answer]:
        keys, inner = prepared
        out = self.inner.run(inner)
        for k, a in zip(keys, out, strict=True):
            self.answered[k] = a.text
        return list(out)

    def answer(self, clips: Sequence[Clip]) -> list[str]:
        return [a.text for a in self.run(self.prepare(clips))]

    def close(self) -> None:
        self.inner.close()


async def test_overlapped_answers_are_the_serial_ones_in_order(tmp_path: Path,
                                                              video_factory: Callable[..., Path]) -> None:
    from corevad.models import VLMConfig, load_vlm
    from corevad.models.tiny import build_tiny_internvl

    model = build_tiny_internvl(tmp_path / "tiny", image_size=112)
    inner = load_vlm(VLMConfig(model=str(model), max_new_tokens=8, batch_size=4, device="cpu"))
    backend = Recording(inner)
    cams = [{"name": f"cam{i}", "url": str(video_factory(f"c{i}.mp4", seconds=4, size=(96, 64), pattern=p)),
             "rate": "fast", "overload_policy": "block"}
            for i, p in enumerate(("testsrc2", "smptebars", "rgbtestsrc"))]
    cfg = stream_config(cams, runtime={"frames_per_segment": 2, "frame_size": 112, "max_batch": 4},
                        refinement={"smooth_length": 1, "use_features": False})
    sink = MemorySink()
    async with App(cfg, backend=backend, sinks=[sink]) as app:
        await app.wait_finished(timeout=300)
    published = {(m.camera, m.payload["index"]): m.payload for m in sink.messages if m.kind == "score"}
    assert len(published) == 12 and all(p["available"] for p in published.values())  # 3 cameras x 4 s
    for cam in ("cam0", "cam1", "cam2"):  # each camera's scores come out in segment order
        order = [m.payload["index"] for m in sink.messages if m.kind == "score" and m.camera == cam]
        assert order == sorted(order) == list(range(4))
    assert backend.sources[:4] == ["warm-up"] * 4  # a full batch through the model before cameras go online
    serial = {k: inner.answer([clip])[0] for k, clip in backend.clips.items()}  # one at a time
    assert backend.answered == serial  # batching and overlap change no answer
    assert len(published) == len(serial) - 4
    for key, payload in published.items():  # and each answer reached its own segment
        assert payload["description"] == parse_answer(backend.answered[key]).description
    assert len(set(serial.values())) > 1  # the frames matter, so a mix-up would show
    inner.close()


class Faulty:
    """prepare/run double: preprocessing fails for segment 3 of cam0's batches, the model for segment 5."""

    name = "faulty"

    def prepare(self, clips: Sequence[Clip]) -> list[Clip]:
        if any(c.source == "cam0" and c.index == 3 for c in clips):
            raise ValueError("cannot decode the frames of cam0#3")
        return list(clips)

    def run(self, clips: list[Clip]) -> list[Answer]:
        if any(c.source == "cam0" and c.index == 5 for c in clips):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return [Answer(ANOMALOUS if c.index % 2 else "Normal scenes.\nA quiet street.") for c in clips]

    def answer(self, clips: Sequence[Clip]) -> list[str]:
        return [a.text for a in self.run(self.prepare(clips))]

    def close(self) -> None:
        pass


@pytest.mark.parametrize("overlap", [True, False])  # False: runtime.overlap_preprocessing off (serial)
async def test_a_preprocessing_or_model_failure_costs_only_its_batch(video_factory: Callable[..., Path],
                                                                     overlap: bool) -> None:
    cams = [{"name": "cam0", "url": str(video_factory("c0.mp4", seconds=8, size=(64, 48))), "rate": "fast",
             "overload_policy": "block"}]
    cfg = stream_config(cams, runtime={"frames_per_segment": 2, "max_batch": 1,  # one segment per batch
                                       "overlap_preprocessing": overlap})
    sink = MemorySink()
    async with App(cfg, backend=Faulty(), sinks=[sink]) as app:
        await app.wait_finished(timeout=120)
    scores = {m.payload["index"]: m.payload for m in sink.messages if m.kind == "score"}
    assert sorted(scores) == list(range(8))
    failed = {i for i, p in scores.items() if not p["available"]}
    assert failed == {3, 5}  # only the failing batches
    assert "cannot decode" in scores[3]["reason"] and "illegal memory access" in scores[5]["reason"]
    assert all(scores[i]["raw_label"] == i % 2 for i in scores if i not in failed)
