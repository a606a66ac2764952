"""corevad.pipelines used as a library: typed calls, progress through the protocol, nothing printed.

The commands around them (and extract/generate on real videos with tiny models) are tested in
tests/models/test_offline_commands.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from corevad.errors import DataError
from corevad.features import feature_path
from corevad.files import atomic_save_npy, atomic_write_json
from corevad.pipelines import RunReport, lrc_responses
from corevad.pipelines.report import fit_length, read_state
from corevad_stream.testing import HashEncoder


class RecordingProgress:
    """A PipelineProgress that records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def begin(self, videos: int) -> None:
        self.calls.append(("begin", videos))

    def video(self, name: str, *, units: int | None, done: int = 0) -> None:
        self.calls.append(("video", name, units, done))

    def advance_units(self, n: int) -> None:
        self.calls.append(("units", n))

    def video_done(self) -> None:
        self.calls.append(("done",))

    def failed(self, name: str, error: str) -> None:
        self.calls.append(("failed", name, error))


def _features(folder: Path, video: str, answers: list[str], enc: HashEncoder) -> None:
    """Per-frame features whose segment means sit exactly on one answer's text embedding each."""
    emb = enc.encode_texts(answers)
    atomic_save_npy(feature_path(folder, video), np.repeat(emb, 30, axis=0).astype(np.float32))


def test_lrc_reports_progress_and_a_failed_video_then_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    enc = HashEncoder(dim=32)
    a = ["Normal scenes. A street.", "Anomalous scenes. A fight.", "Normal scenes. A shop."]
    responses = {"alpha": a, "beta": a[:2]}
    feats = tmp_path / "feats"
    feats.mkdir()
    _features(feats, "alpha", a, enc)  # beta has no features: it fails, alpha goes on
    out = tmp_path / "lrc.json"
    progress = RecordingProgress()
    report = lrc_responses(responses, feats, out, enc.encode_texts, progress=progress)
    assert isinstance(report, RunReport)
    assert report.done == ["alpha"] and list(report.failed) == ["beta"] and report.exit_code == 1
    assert "no CLIP features for video 'beta'" in report.failed["beta"]
    assert progress.calls == [("begin", 2), ("done",), ("failed", "beta", report.failed["beta"]), ("done",)]
    # each segment matches its own answer best: LRC keeps them all
    assert json.loads(out.read_text()) == {"alpha": a}
    assert capsys.readouterr() == ("", "")  # a library call prints nothing

    _features(feats, "beta", a[:2], enc)
    again = lrc_responses(responses, feats, out, enc.encode_texts)  # no progress: NoProgress
    assert again.skipped == ["alpha"] and again.done == ["beta"] and not again.failed
    assert json.loads(out.read_text()) == {"alpha": a, "beta": a[:2]}


def test_state_files_and_fitting(tmp_path: Path) -> None:
    assert read_state(tmp_path / "none.json", {"x": 1}) == {"x": 1}
    atomic_write_json(tmp_path / "s.json", {"v": ["é"]})
    assert read_state(tmp_path / "s.json", {}) == {"v": ["é"]}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON.*move it away"):
        read_state(tmp_path / "bad.json", {})
    assert fit_length([1, 2], 4) == [1, 2, 2, 2] and fit_length([1, 2, 3], 2) == [1, 2]
    np.testing.assert_array_equal(fit_length(np.array([[1], [2]]), 3), [[1], [2], [2]])
