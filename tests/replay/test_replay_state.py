"""A replay keeps its open-alert record in a private folder, never in the shared state directory where a real
monitor (same default prefix) or a concurrent replay would read it and end the other's alerts."""

from __future__ import annotations

from pathlib import Path

import pytest

from corevad.benchmarks import load_benchmark, load_responses
from corevad.models.replay import ReplayBackend
from corevad_stream.replay import frameless_inputs, run_replay

pytestmark = pytest.mark.data


async def test_replay_leaves_the_shared_state_directory_alone(shared_data: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    d = shared_data / "ucf_crime"
    videos = [v for v in load_benchmark("ucf-crime", d / "test_annotations.tsv") if v.is_anomalous][:3]
    result = await run_replay(frameless_inputs(videos), backend=ReplayBackend(load_responses(d / "VLM_responses_"
                                                                                             "LRC_ucf.json")),
                              concurrency=3, timeout_s=120)
    assert len(result.videos) == 3 and result.segments > 0
    assert sum(len(v.alerts) for v in result.videos) > 0  # alerts were open, so the record was written
    assert not (tmp_path / "corevad").exists() or not any((tmp_path / "corevad").iterdir())
