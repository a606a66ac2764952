"""Replay of the recorded UCF-Crime answers through the live runtime: frame counts, causality, parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from corevad.alerts import AlertParams, AlertTracker
from corevad.benchmarks import VideoGT, load_benchmark, load_responses
from corevad.metrics import frame_ap, frame_auc
from corevad.models.replay import ReplayBackend
from corevad.params import CausalParams
from corevad.pipeline import score_causal
from corevad.prompt import parse_answer
from corevad_stream.replay import alert_figures, frameless_inputs, online_figures, run_replay

pytestmark = pytest.mark.data

TUNED = {"smooth_length": 12, "smooth_sigma": 2.0, "smooth_lookahead": 0}


@pytest.fixture(scope="module")
def ucf(shared_data: Path) -> tuple[list[VideoGT], dict[str, list[str]]]:
    d = shared_data / "ucf_crime"
    return load_benchmark("ucf-crime", d / "test_annotations.tsv"), load_responses(d / "VLM_responses_LRC_ucf.json")


def _labels(answers: list[str]) -> np.ndarray:
    return np.array([parse_answer(a).label for a in answers], dtype=np.float64)


def _some(videos: list[VideoGT], n_anom: int, n_norm: int) -> list[VideoGT]:
    anom = [v for v in videos if v.is_anomalous and v.frames < 3000][:n_anom]
    norm = [v for v in videos if not v.is_anomalous and v.frames < 3000][:n_norm]
    return anom + norm


@pytest.mark.slow
async def test_full_ucf_replay_matches_the_method_core(ucf) -> None:
    videos, responses = ucf
    result = await run_replay(frameless_inputs(videos), backend=ReplayBackend(responses), refinement=TUNED,
                              concurrency=48, timeout_s=600)
    assert [v.gt.name for v in result.videos] == [v.name for v in videos]
    # exactly the GT frame counts, every segment scored once, nothing dropped
    assert all(v.frame_scores.shape == (v.gt.frames,) for v in result.videos)
    assert sum(v.frame_scores.size for v in result.videos) == 1_111_808
    assert result.segments == 37_188 and result.drops == 0
    assert all(v.missing_segments == 0 and v.extra_segments == 0 for v in result.videos)
    # the reported AUC/AP are what corevad.pipeline.score_causal gives for the same parameters
    params = CausalParams(**TUNED)
    assert result.params == params
    ref = [score_causal(_labels(responses[v.name]), v.frames, params).frame_scores for v in videos]
    gt = np.concatenate([v.gt for v in videos])
    fig = online_figures(result)
    assert fig.auc == frame_auc(gt, np.concatenate(ref))
    assert fig.ap == frame_ap(gt, np.concatenate(ref))
    assert 0.7 < fig.auc < 0.9  # text-only causal UCF-Crime: ~0.806 with these parameters


async def test_online_scores_never_use_segments_past_the_lookahead(ucf) -> None:
    videos, responses = ucf
    chosen = _some(videos, 3, 1)
    for lookahead in (0, 2):
        refinement = {"smooth_length": 5, "smooth_sigma": 2.0, "smooth_lookahead": lookahead}
        base = await run_replay(frameless_inputs(chosen), backend=ReplayBackend(responses),
                                refinement=refinement, concurrency=4, timeout_s=300)
        changed_later = False
        for k in (10, 25):
            # Flip every answer from segment k on: scores of segments < k - lookahead must not move.
            perturbed = dict(responses)
            for v in chosen:
                perturbed[v.name] = responses[v.name][:k] + [
                    "Normal scenes. Nothing happens." if parse_answer(a).label else "Anomalous scenes. A fight."
                    for a in responses[v.name][k:]]
            got = await run_replay(frameless_inputs(chosen), backend=ReplayBackend(perturbed),
                                   refinement=refinement, concurrency=4, timeout_s=300)
            for b, g in zip(base.videos, got.videos, strict=True):
                np.testing.assert_array_equal(g.segment_scores[: k - lookahead], b.segment_scores[: k - lookahead])
                changed_later |= not np.array_equal(g.segment_scores[k - lookahead:], b.segment_scores[k - lookahead:])
        assert changed_later, "the perturbation never reached any later score: the test would prove nothing"


async def test_published_alerts_are_the_hysteresis_on_the_online_scores(ucf) -> None:
    videos, responses = ucf
    chosen = _some(videos, 4, 3)
    alerts = {"open_threshold": 0.8, "close_threshold": 0.5, "close_after_s": 3.0, "cooldown_s": 10.0}
    result = await run_replay(frameless_inputs(chosen), backend=ReplayBackend(responses), refinement=TUNED,
                              alerts=alerts, concurrency=8, timeout_s=300)
    assert result.alert_params == AlertParams(**alerts, update_min_delta=result.alert_params.update_min_delta)
    total = 0
    for v in result.videos:
        tracker = AlertTracker("x", result.alert_params)
        want = []
        for i, s in enumerate(v.segment_scores):
            for ev in tracker.update(index=i, start=float(i), end=min(i + 1.0, v.gt.frames / 30), score=float(s)):
                if ev.type == "end":
                    want.append((ev.after.start_index, ev.after.end_index))
        want += [(ev.after.start_index, ev.after.end_index) for ev in tracker.close()]
        assert [(a.start_segment, a.end_segment) for a in v.alerts] == want, v.gt.name
        total += len(want)
    assert total > 0
    fig = alert_figures(result)
    assert fig.alerts == total and fig.anomalous_videos == 4
    assert fig.detected >= 1 and fig.normal_hours == pytest.approx(
        sum(v.frames for v in chosen if not v.is_anomalous) / 30 / 3600)


def test_report_command_prints_both_protocols_as_json(ucf, shared_data: Path, tmp_path: Path, capsys) -> None:
    from corevad_stream.cli import main

    d = shared_data / "ucf_crime"
    rc = main(["report", "--dataset", "ucf-crime", "--annotations", str(d / "test_annotations.tsv"),
               "--responses", str(d / "VLM_responses_LRC_ucf.json"), "--half", "test", "--limit", "12",
               "--json", "--out", str(tmp_path / "out"), "--plots", str(tmp_path / "plots"),
               "--plot-videos", "Abuse030_x264"])
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    assert s["half"] == "test" and s["videos"] == 12
    assert set(s) >= {"online", "offline", "alerts", "params", "segments_per_s"}
    assert s["params"]["causal"]["smooth_length"] == 12  # configs/replay_ucf.yaml, from the tuning protocol
    assert s["params"]["offline"]["kernel_size"] == 9
    assert 0 <= s["online"]["auc"] <= 1 and 0 <= s["offline"]["auc"] <= 1
    assert s["offline"]["auc"] != s["online"]["auc"]
    scores = np.load(tmp_path / "out" / "online_scores.npz")
    videos = {v.name: v for v in ucf[0]}
    assert len(scores.files) == 12
    assert all(scores[n].shape == (videos[n].frames,) for n in scores.files)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["videos"] == 12
    assert (tmp_path / "plots" / "Abuse030_x264.png").stat().st_size > 1000


def test_replay_command_names_a_miscounted_video(ucf, shared_data: Path, tmp_path: Path, capsys) -> None:
    from corevad_stream.cli import main

    videos, responses = ucf
    bad = dict(responses)
    bad[videos[0].name] = bad[videos[0].name][:-1]
    path = tmp_path / "responses.json"
    path.write_text(json.dumps(bad))
    rc = main(["replay", "--dataset", "ucf-crime", "--annotations",
               str(shared_data / "ucf_crime" / "test_annotations.tsv"), "--responses", str(path), "--limit", "3"])
    assert rc == 2
    err = capsys.readouterr().err
    assert videos[0].name in err


def test_report_scores_recorded_label_probabilities_like_the_core(ucf, shared_data: Path, tmp_path: Path,
                                                                  capsys) -> None:
    """report --probabilities: the replay backend replays P(Anomalous) and the runtime scores it (where null,
    the label), equal to corevad.pipeline.score_causal on the same values."""
    from corevad_stream.cli import main

    videos, responses = ucf
    rng = np.random.default_rng(8)
    probs: dict[str, list[float | None]] = {}
    for v in videos:
        lab = _labels(responses[v.name])
        p = 0.6 * lab + 0.4 * rng.random(lab.size)
        probs[v.name] = [None if i % 5 == 0 else float(x) for i, x in enumerate(p)]
    pfile = tmp_path / "r.p_anomalous.json"
    pfile.write_text(json.dumps(probs))
    d = shared_data / "ucf_crime"
    args = ["report", "--dataset", "ucf-crime", "--annotations", str(d / "test_annotations.tsv"),
            "--responses", str(d / "VLM_responses_LRC_ucf.json"), "--half", "test", "--limit", "8", "--json"]
    assert main([*args, "--probabilities", str(pfile), "--out", str(tmp_path / "p")]) == 0
    summary = json.loads(capsys.readouterr().out)
    params = CausalParams(**{k: summary["params"]["causal"][k] for k in TUNED})
    scores = np.load(tmp_path / "p" / "online_scores.npz")
    by_name = {v.name: v for v in videos}
    assert len(scores.files) == 8
    for name in scores.files:
        lab = _labels(responses[name])
        values = np.array([lab[i] if x is None else x for i, x in enumerate(probs[name])])
        ref = score_causal(values, by_name[name].frames, params).frame_scores
        np.testing.assert_allclose(scores[name], ref, rtol=1e-6, atol=1e-9)
    assert main([*args, "--out", str(tmp_path / "labels")]) == 0
    capsys.readouterr()
    labels_only = np.load(tmp_path / "labels" / "online_scores.npz")
    assert any(not np.allclose(labels_only[n], scores[n]) for n in scores.files)  # the probabilities were used
    assert main([*args[:5], "--videos", str(tmp_path), "--probabilities", str(pfile)]) == 2
    assert "--probabilities goes with --responses" in capsys.readouterr().err
