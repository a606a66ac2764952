"""Scene context on the tiny in-process InternVL: one batch of two cameras, each row tokenized with its own
camera's prompt (read back from the very input ids the model is given)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corevad.models import VLMConfig, load_vlm
from corevad.prompt import CONTEXT_HEADING
from corevad.video import iter_segments
from corevad_stream.entities import SegmentJob
from corevad_stream.worker import ModelWorker

DOCK = "A loading dock: forklifts and people carrying boxes are normal at any hour."
LOBBY = "A hotel lobby: people with suitcases are normal; running or a fall matters."


@pytest.fixture(scope="module")
def backend(tiny_internvl_dir: Path):
    b = load_vlm(VLMConfig(model=str(tiny_internvl_dir), max_new_tokens=6, batch_size=4, device="cpu"))
    yield b
    b.close()


@pytest.mark.slow
def test_one_batch_of_two_cameras_feeds_each_row_its_own_context(backend, video_dir: Path) -> None:
    segs = [frames for _seg, frames in iter_segments(video_dir / "alpha.mp4")][:3]
    jobs = [SegmentJob(camera=cam, index=i, start=float(i), end=i + 1.0, clock=i + 1.0, n_frames=30, frames=f,
                       context=ctx)
            for i, (cam, ctx, f) in enumerate([("dock", DOCK, segs[0]), ("lobby", LOBBY, segs[1]),
                                               ("plain", None, segs[2])])]
    worker = ModelWorker(backend)
    prepared = worker.prepare(jobs)
    assert prepared.error is None and len(prepared.prepared) == 1  # one generate call holds all three rows
    _first, inputs = prepared.prepared[0]
    tok = backend.processor.tokenizer
    rows = [tok.decode(ids, skip_special_tokens=True) for ids in inputs["input_ids"].tolist()]
    assert DOCK in rows[0] and LOBBY not in rows[0]
    assert LOBBY in rows[1] and DOCK not in rows[1]
    assert CONTEXT_HEADING not in rows[2]  # no context: the paper's prompt
    assert all(r.count("Frame") == 8 and "Answer with exactly two lines" in r for r in rows)
    # The same rows reach generate: the batch is answered, one answer per camera, in order.
    results = worker.finish(prepared)
    assert [r.job.camera for r in results] == ["dock", "lobby", "plain"] and all(r.error is None for r in results)


def test_prompt_text_with_context_is_what_the_processor_tokenizes(backend) -> None:
    text = backend.prompt_text(8, DOCK)
    ids = backend.processor.tokenizer(text)["input_ids"]
    assert DOCK in backend.processor.tokenizer.decode(ids, skip_special_tokens=True)
    assert text.count(backend.processor.image_token) == 8
    assert backend.prompt_text(8) == backend.prompt_text(8, None) and DOCK not in backend.prompt_text(8)
