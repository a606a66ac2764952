"""The describe-mode replay (`--describe on_demand`): every "Normal" answer replayed as its verdict line, through
the text-anchored context config (the one place descriptions change scores), with bootstrap intervals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from corevad.benchmarks import load_responses
from corevad.prompt import parse_answer
from corevad_stream.config import shipped_config

pytestmark = [pytest.mark.slow, pytest.mark.data]

TEXT_CONFIG = shipped_config("replay_ucf_text.yaml")


def _run(main, capsys, args: list[str], out: Path) -> tuple[dict, dict[str, np.ndarray]]:  # type: ignore[no-untyped-def]
    assert main([*args, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    scores = np.load(out / "online_scores.npz")
    return summary, {k: scores[k] for k in scores.files}


def test_on_demand_replay_is_all_with_normal_descriptions_removed(shared_data: Path, tmp_path: Path,
                                                                  capsys) -> None:
    from corevad_stream.cli import main

    d = shared_data / "ucf_crime"
    responses = load_responses(d / "VLM_responses_LRC_ucf.json")
    stripped = {k: ["Normal scenes." if (v := parse_answer(a)).parsed and v.label == 0 else a for a in answers]
                for k, answers in responses.items()}
    stripped_file = tmp_path / "stripped.json"
    stripped_file.write_text(json.dumps(stripped))
    base = ["replay", "--dataset", "ucf-crime", "--annotations", str(d / "test_annotations.tsv"), "-c",
            str(TEXT_CONFIG), "--half", "test", "--limit", "10", "--json", "--bootstrap", "200"]
    lazy, lazy_scores = _run(main, capsys, [*base, "--responses", str(d / "VLM_responses_LRC_ucf.json"),
                                            "--describe", "on_demand"], tmp_path / "lazy")
    same, same_scores = _run(main, capsys, [*base, "--responses", str(stripped_file)], tmp_path / "all")
    again, again_scores = _run(main, capsys, [*base, "--responses", str(stripped_file), "--describe", "on_demand"],
                               tmp_path / "again")
    full, full_scores = _run(main, capsys, [*base, "--responses", str(d / "VLM_responses_LRC_ucf.json")],
                             tmp_path / "full")
    # Nothing left to remove: on_demand reproduces all exactly; and on_demand is all on stripped answers.
    for other in (again_scores, lazy_scores):
        assert other.keys() == same_scores.keys()
        assert all(np.array_equal(other[k], same_scores[k]) for k in same_scores)
    assert lazy["online"] == same["online"] == again["online"] and lazy["alerts"] == same["alerts"]
    # The descriptions of normal answers do feed the text-anchored context: removing them changes scores.
    assert any(not np.array_equal(full_scores[k], lazy_scores[k]) for k in full_scores)
    assert lazy["describe"] == "on_demand" and full["describe"] == "all"
    for key in ("auc", "ap"):
        iv = full["intervals"][key]
        assert iv["low"] <= iv["estimate"] <= iv["high"] and iv["resamples"] > 100
        assert iv["high"] - iv["low"] > 0.01  # ten videos: the interval is wide
    assert full["intervals"]["auc"]["estimate"] == pytest.approx(full["online"]["auc"])
    assert full["intervals"]["ap"]["estimate"] == pytest.approx(full["online"]["ap"])
    # The first ten videos of the test half are all anomalous: no normal hours, so no false-alert rate.
    assert full["alerts"]["normal_hours"] == 0 and np.isnan(full["intervals"]["false_alerts_per_hour"]["estimate"])


def test_deferred_replay_scores_on_verdicts_alone_and_explains_with_the_descriptions(shared_data: Path,
                                                                                   tmp_path: Path, capsys) -> None:
    from corevad_stream.cli import main

    d = shared_data / "ucf_crime"
    responses = load_responses(d / "VLM_responses_LRC_ucf.json")
    # Every parsed answer reduced to its verdict line: what scoring sees under deferred, for every segment.
    verdicts = {k: [("Normal scenes." if v.label == 0 else "Anomalous scenes.") if (v := parse_answer(a)).parsed
                    else a for a in answers] for k, answers in responses.items()}
    verdicts_file = tmp_path / "verdicts.json"
    verdicts_file.write_text(json.dumps(verdicts))
    base = ["replay", "--dataset", "ucf-crime", "--annotations", str(d / "test_annotations.tsv"), "-c",
            str(TEXT_CONFIG), "--half", "test", "--limit", "10", "--json"]
    deferred, deferred_scores = _run(main, capsys, [*base, "--responses", str(d / "VLM_responses_LRC_ucf.json"),
                                                    "--describe", "deferred"], tmp_path / "deferred")
    bare, bare_scores = _run(main, capsys, [*base, "--responses", str(verdicts_file)], tmp_path / "bare")
    again, again_scores = _run(main, capsys, [*base, "--responses", str(verdicts_file), "--describe", "deferred"],
                               tmp_path / "again")
    # The scores are exactly those of the verdict lines alone; with no description to defer, deferred is all.
    for other in (deferred_scores, again_scores):
        assert other.keys() == bare_scores.keys()
        assert all(np.array_equal(other[k], bare_scores[k]) for k in bare_scores)
    assert deferred["online"] == bare["online"] == again["online"] and deferred["alerts"] == bare["alerts"]
    assert deferred["describe"] == "deferred"

    def explanations(out: Path) -> list[list[str]]:
        return [json.loads(line)["explanation"] for line in (out / "alerts.jsonl").read_text().splitlines()]

    # The same alerts; the descriptions that came after their verdicts explain them, the bare lines cannot.
    assert len(explanations(tmp_path / "deferred")) == len(explanations(tmp_path / "bare")) > 0
    assert all(e == [] for e in explanations(tmp_path / "bare"))
    assert all(e and all(t not in ("", "Anomalous scenes.") for t in e) for e in explanations(tmp_path / "deferred"))
