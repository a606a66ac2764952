"""The replay backend answers from the authors' recorded responses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corevad.errors import DataError, ModelError
from corevad.models import Clip, ReplayBackend, VLMBackend, VLMConfig, load_vlm


def test_answers_by_source_and_index(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"A_x264": ["Normal scenes. a", "Anomalous scenes. b"], "B#1": ["Normal scenes. c"]}))
    backend = load_vlm(VLMConfig(backend="replay", responses=path))
    assert isinstance(backend, VLMBackend) and backend.name == "replay"
    clips = [Clip("A_x264.mp4", 1, None), Clip("A_x264", 0, None), Clip("B#1", 0, None)]
    assert backend.answer(clips) == ["Anomalous scenes. b", "Normal scenes. a", "Normal scenes. c"]
    with pytest.raises(ModelError, match="2 recorded answers, no segment 5"):
        backend.answer([Clip("A_x264", 5, None)])
    with pytest.raises(ModelError, match="'nope'"):
        backend.answer([Clip("nope", 0, None)])


def test_recorded_label_probabilities_replay_with_their_answers(tmp_path: Path) -> None:
    from corevad.models.base import Answer, answers

    path = tmp_path / "r.json"
    path.write_text(json.dumps({"A_x264": ["Normal scenes. a", "Anomalous scenes. b"], "B": ["Normal scenes. c"]}))
    probs = tmp_path / "r.p_anomalous.json"
    probs.write_text(json.dumps({"A_x264.mp4": [0.25, None]}))  # names normalised as the answers'; B has none
    backend = load_vlm(VLMConfig(backend="replay", responses=path, probabilities=probs))
    clips = [Clip("A_x264", 0, None), Clip("A_x264", 1, None), Clip("B", 0, None)]
    assert answers(backend, clips) == [Answer("Normal scenes. a", 0.25), Answer("Anomalous scenes. b", None),
                                       Answer("Normal scenes. c", None)]
    probs.write_text(json.dumps({"A_x264": [0.25]}))
    with pytest.raises(ModelError, match="'A_x264' has 1 probabilities for 2"):
        ReplayBackend(path, probabilities=probs)
    probs.write_text(json.dumps({"A_x264": [0.25, -1]}))
    with pytest.raises(DataError, match="segment 1"):
        ReplayBackend(path, probabilities=probs)
    with pytest.raises(ValueError, match="replay backend setting"):
        VLMConfig(backend="openai", probabilities=probs)


def test_bad_files_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        ReplayBackend(bad)
    bad.write_text(json.dumps({"v": "not a list"}))
    with pytest.raises(DataError, match="'v'"):
        ReplayBackend(bad)
    with pytest.raises(ValueError, match="responses"):
        VLMConfig(backend="replay")


@pytest.mark.data
def test_authors_ucf_file_replays(shared_data: Path) -> None:
    backend = ReplayBackend(shared_data / "ucf_crime" / "VLM_responses_LRC_ucf.json")
    assert len(backend.videos) == 290
    ans = backend.answer([Clip("Abuse028_x264", 0, None)])
    assert ans[0].startswith(("Anomalous scenes.", "Normal scenes."))
