"""corevad.tuning: the protocol's pieces on small made-up benchmarks (the full run: tests/replay/test_tuning_tools)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from corevad.alerts import AlertParams
from corevad.benchmarks import VideoGT
from corevad.errors import DataError
from corevad.params import CausalParams
from corevad.refine import causal_smooth, causal_smooth_convolved
from corevad.tuning import (
    OPEN_THRESHOLDS,
    TuneVideo,
    alert_intervals,
    alert_metrics,
    alert_rule,
    choose_alerts,
    choose_alerts_fine,
    context_scores,
    halves,
    load_videos,
    smoother_disagreement,
    tune_scores,
)

SEG = 30


@pytest.mark.parametrize(("length", "sigma", "lookahead"), [(1, 2.0, 0), (5, 2.0, 0), (12, 2.0, 0), (9, 5.0, 1),
                                                            (30, 10.0, 2), (7, 1.0, 2)])
@pytest.mark.parametrize("n", [1, 3, 40])
def test_convolved_smoother_is_causal_smooth(length: int, sigma: float, lookahead: int, n: int) -> None:
    """The fast twin against the reference, also for videos shorter than the kernel."""
    x = np.random.default_rng(n * 100 + length).random(n)
    np.testing.assert_allclose(causal_smooth_convolved(x, length, sigma, lookahead),
                               causal_smooth(x, length, sigma, lookahead), atol=1e-12, rtol=0)


def test_convolved_smoother_never_reads_past_its_lookahead() -> None:
    """Segment i moves with segment i + lookahead + 1 only through its own later outputs: causal."""
    x = np.zeros(20)
    y = x.copy()
    y[10] = 1.0
    a, b = causal_smooth_convolved(x, 5, 2.0, 1), causal_smooth_convolved(y, 5, 2.0, 1)
    assert np.array_equal(a[:9], b[:9]) and b[9] > 0


def _video(name: str, cls: str, labels: list[float], span: tuple[int, int] | None = None) -> TuneVideo:
    n = len(labels) * SEG
    return TuneVideo(VideoGT(name, cls, n, (span,) if span else ()), np.asarray(labels, dtype=np.float64))


def test_alert_intervals_follow_the_tracker_in_video_seconds() -> None:
    scores = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    p = AlertParams(open_threshold=0.5, close_threshold=0.5, close_after_s=0.0, cooldown_s=0.0)
    ((start, end),) = alert_intervals(scores, len(scores) * SEG, p)
    assert start == 2.0 and 4.0 <= end <= 5.0
    assert alert_intervals(np.zeros(8), 8 * SEG, p) == []
    # an alert still open at the end of the video is closed and counted
    ((start, end),) = alert_intervals(np.array([0.0, 1.0, 1.0]), 3 * SEG, p)
    assert start == 1.0 and end == 3.0


def _bench() -> list[TuneVideo]:
    """Two anomalous videos (their spans scored 0.9 / 0.6) and a normal one with a 0.6 blip."""
    return [_video("Fight001", "Fighting", [0, 0, 0.9, 0.9, 0, 0], (60, 120)),
            _video("Fight002", "Fighting", [0, 0.6, 0.6, 0, 0, 0], (30, 90)),
            _video("Normal001", "Normal", [0, 0, 0, 0.6, 0, 0, 0, 0])]


def test_alert_metrics_count_detections_and_false_alerts() -> None:
    videos = _bench()
    seg = [v.labels for v in videos]
    low = alert_metrics(videos, seg, AlertParams(open_threshold=0.5, close_threshold=0.5, close_after_s=0.0,
                                                 cooldown_s=0.0), 0)
    assert low["detected"] == 2 and low["anomalous_videos"] == 2 and low["false_alerts"] == 1
    assert low["false_alerts_per_hour"] == pytest.approx(3600 / (8 * SEG / 30))
    high = alert_metrics(videos, seg, AlertParams(open_threshold=0.8, close_threshold=0.5, close_after_s=0.0,
                                                  cooldown_s=0.0), 0)
    assert high["detected"] == 1 and high["false_alerts"] == 0


def test_alert_rule_keeps_the_budget_then_detects_most() -> None:
    videos = _bench()
    seg = [v.labels for v in videos]
    strict, _, row = choose_alerts(videos, seg, 0, fa_budget=0.0)
    assert strict.open_threshold > 0.6 and row["false_alerts"] == 0 and row["detected"] == 1
    loose, rows, row = choose_alerts(videos, seg, 0, fa_budget=1e6)
    assert loose.open_threshold <= 0.6 and row["detected"] == 2
    assert len(rows) == len(OPEN_THRESHOLDS) * 2 * 4 * 5
    assert row == max(rows, key=alert_rule)  # every row keeps a budget of 1e6


def test_alert_rule_orders_by_detections_then_delay_then_false_alerts() -> None:
    base = {"detected": 3, "median_delay_s": 2.0, "false_alerts_per_hour": 1.0}
    assert alert_rule({**base, "detected": 4}) > alert_rule(base)
    assert alert_rule({**base, "median_delay_s": 1.0}) > alert_rule(base)
    assert alert_rule({**base, "false_alerts_per_hour": 0.5}) > alert_rule(base)
    assert alert_rule({**base, "median_delay_s": float("nan")}) < alert_rule(base)  # no delay: worst


def test_threshold_search_finds_the_lowest_score_within_budget() -> None:
    videos = [_video("Fight001", "Fighting", [0, 0, 0.93, 0.93, 0, 0], (60, 120)),
              _video("Fight002", "Fighting", [0, 0.71, 0.71, 0, 0, 0], (30, 90)),
              _video("Normal001", "Normal", [0, 0, 0, 0.64, 0, 0, 0, 0])]
    seg = [v.labels for v in videos]
    chosen, row = choose_alerts_fine(videos, seg, 0, budget=0.0)
    assert chosen.open_threshold == pytest.approx(0.71)  # a score value, not on the fixed grid
    assert row["detected"] == 2 and row["false_alerts"] == 0 and row["params"] == chosen
    with pytest.raises(ValueError, match="no score reaches"):
        choose_alerts_fine(videos, [np.zeros_like(s) for s in seg], 0, budget=0.0)


def test_halves_split_by_name_and_keep_load_order() -> None:
    videos = [_video(f"{cls}{i:03d}", cls, [0.0]) for cls in ("Fighting", "Normal") for i in range(6)]
    sets = halves(videos)
    tune, test = {v.gt.name for v in sets["tune"]}, {v.gt.name for v in sets["test"]}
    assert not tune & test and tune | test == {v.gt.name for v in videos}
    assert sets["all"] == videos
    assert [v.gt.name for v in sets["tune"]] == [v.gt.name for v in videos if v.gt.name in tune]
    assert all(3 == sum(v.gt.cls == c for v in sets["tune"]) for c in ("Fighting", "Normal"))


def test_tune_scores_prefers_no_lookahead_when_it_buys_nothing() -> None:
    """Clean 0/1 labels gain nothing from waiting: LaAP≈ charges lookahead as latency."""
    videos = _bench()
    params, rows = tune_scores(videos)
    assert params.smooth_lookahead == 0
    assert len(rows) == 9 * 3 * 3
    assert smoother_disagreement(videos, params) is None


def test_context_scores_need_embeddings_for_text() -> None:
    videos = _bench()
    with pytest.raises(ValueError, match="no text embeddings"):
        context_scores(videos, CausalParams(), text=True)
    with pytest.raises(ValueError, match="query"):
        context_scores(videos, CausalParams(), text=False, query="title")
    plain = context_scores(videos, CausalParams(smooth_length=1), text=False)
    np.testing.assert_allclose(plain[0], videos[0].labels)  # length 1: no smoothing


def test_load_videos_scores_probabilities_and_names_a_missing_video(tmp_path: Path) -> None:
    d = tmp_path / "ucf_crime"
    d.mkdir()
    (d / "test_annotations.tsv").write_text("video\tclass\tframes\tstart1\tend1\tstart2\tend2\n"
                                            "Fight001_x264\tFighting\t90\t30\t59\t-1\t-1\n"
                                            "Normal_Videos_001_x264\tNormal\t90\t-1\t-1\t-1\t-1\n")
    responses = tmp_path / "r.json"
    responses.write_text(json.dumps({
        "Fight001_x264": ["Normal scenes.\nA street.", "Anomalous scenes.\nA fight.", "Anomalous scenes.\nA crowd."],
        "Normal_Videos_001_x264": ["Normal scenes.\nA shop."] * 3}))
    probs = tmp_path / "r.p_anomalous.json"
    probs.write_text(json.dumps({"Fight001_x264": [0.1, 0.8, None], "Normal_Videos_001_x264": [0.2, 0.1, 0.0]}))
    by = {v.gt.name: v for v in load_videos(tmp_path, responses, probs)}
    assert set(by) == {"Fight001_x264", "Normal_Videos_001_x264"}
    np.testing.assert_allclose(by["Fight001_x264"].labels, [0.1, 0.8, 1.0])  # None -> the 0/1 label
    assert by["Fight001_x264"].descriptions[1] == "A fight."
    np.testing.assert_allclose(load_videos(tmp_path, responses)[0].labels, [0.0, 1.0, 1.0])  # labels only
    probs.write_text(json.dumps({"Fight001_x264": [0.1, 0.8, None]}))
    with pytest.raises(DataError, match="Normal_Videos_001_x264.*missing from the probabilities file"):
        load_videos(tmp_path, responses, probs)
