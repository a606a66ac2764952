"""corevad.bootstrap against hand-checked cases and sklearn on the concatenated resample."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from corevad.bootstrap import FrameRanks, bootstrap, paired_bootstrap, rate_per_hour, resample_counts


def test_the_mean_of_four_videos_one_of_them_1() -> None:
    # Values [0, 0, 0, 1]: a resample's mean is k/4 with k ~ Binomial(4, 1/4), so P(k <= 0, 1, 2, 3) =
    # 0.316, 0.738, 0.949, 0.996. The 95 % interval is [0, 0.75]; the 80 % one [0, 0.5].
    values = np.array([0.0, 0.0, 0.0, 1.0])

    def mean(w: np.ndarray) -> float:
        return float(w @ values / w.sum())

    wide = bootstrap(mean, 4, n_resamples=4000, level=0.95, seed=1)
    assert (wide.estimate, wide.low, wide.high, wide.resamples) == (0.25, 0.0, 0.75, 4000)
    narrow = bootstrap(mean, 4, n_resamples=4000, level=0.80, seed=1)
    assert (narrow.low, narrow.high) == (0.0, 0.5)


def test_seeded_and_every_resample_draws_n_videos() -> None:
    a, b = resample_counts(7, 50, seed=3), resample_counts(7, 50, seed=3)
    assert (a == b).all() and (a.sum(axis=1) == 7).all()
    assert not (resample_counts(7, 50, seed=4) == a).all()


def test_paired_difference_of_a_constant_shift_is_that_shift_and_unpaired_noise_cancels() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=30)

    def run_a(w: np.ndarray) -> float:
        return float(w @ base / w.sum())

    def run_b(w: np.ndarray) -> float:
        return float(w @ (base - 0.1) / w.sum())

    diff = paired_bootstrap(run_a, run_b, 30, n_resamples=500, seed=0)
    assert diff.estimate == pytest.approx(0.1) and diff.low == pytest.approx(0.1) and diff.high == pytest.approx(0.1)
    alone = bootstrap(run_a, 30, n_resamples=500, seed=0)
    assert alone.high - alone.low > 0.3  # each run alone is far noisier than their difference


def test_weighted_auc_and_ap_equal_sklearn_on_the_concatenated_resample() -> None:
    rng = np.random.default_rng(5)
    scores = [np.round(rng.random(n), 1) for n in (40, 25, 60, 10)]  # rounded: many ties
    labels = [rng.random(len(s)) < p for s, p in zip(scores, (0.5, 0.0, 0.3, 1.0), strict=True)]
    ranks = FrameRanks(scores, labels)
    for w in (np.array([1, 1, 1, 1]), np.array([2, 0, 1, 3]), np.array([0, 3, 1, 0])):
        s = np.concatenate([np.tile(x, k) for x, k in zip(scores, w, strict=True)])
        y = np.concatenate([np.tile(x, k) for x, k in zip(labels, w, strict=True)])
        assert ranks.auc(w) == pytest.approx(roc_auc_score(y, s))
        assert ranks.ap(w) == pytest.approx(average_precision_score(y, s))
    assert np.isnan(ranks.auc(np.array([0, 1, 0, 0])))  # one video, all normal: undefined


def test_rate_per_hour_weights_events_and_hours() -> None:
    stat = rate_per_hour([2, 0, 0], [1.0, 0.5, 0.0])
    assert stat(np.array([1, 1, 1])) == pytest.approx(2 / 1.5)
    assert stat(np.array([0, 2, 5])) == 0.0
    assert np.isnan(stat(np.array([0, 0, 3])))
