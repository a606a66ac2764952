"""The worker reads a backend's per-segment failure (Answer.error, e.g. a failed description pass of describe
on_demand) as that segment's failure alone, and an undescribed verdict line as an answer."""

from __future__ import annotations

from collections.abc import Sequence

from corevad.models.base import Answer, Clip
from corevad_stream.entities import SegmentJob
from corevad_stream.worker import ModelWorker


class _Backend:
    name = "double"

    def answer(self, clips: Sequence[Clip]) -> list[str]:
        return [a.text for a in self.answer_scored(clips)]

    def answer_scored(self, clips: Sequence[Clip]) -> list[Answer]:
        return [Answer("Normal scenes.", 0.1, described=False),
                Answer("", 0.4, described=False, error="description pass failed: out of memory", error_kind="model"),
                Answer("Anomalous scenes.\nA man breaks a window.", 0.9)][: len(clips)]

    def close(self) -> None:
        pass


def test_a_row_error_fails_only_its_segment() -> None:
    jobs = [SegmentJob(camera="cam", index=i, start=float(i), end=i + 1.0, clock=i + 1.0, n_frames=0)
            for i in range(3)]
    out = ModelWorker(_Backend()).infer(jobs)
    assert [r.answered for r in out] == [True, False, True]
    assert out[1].error_kind == "model" and "out of memory" in (out[1].error or "")
    assert out[1].p_anomalous is None  # an unanswered segment carries no probability
    assert out[0].verdict.label == 0 and out[0].verdict.description == "" and out[0].p_anomalous == 0.1
    assert out[2].verdict.label == 1 and out[2].verdict.description == "A man breaks a window."
