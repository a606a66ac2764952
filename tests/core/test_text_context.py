"""Text-anchored context refinement and the start prior: hand-checked cases, batch == step, causality."""

from __future__ import annotations

import math

import numpy as np
import pytest

from corevad.causal import CausalScorer
from corevad.params import CausalParams
from corevad.pipeline import score_causal
from corevad.refine import causal_kernel, causal_smooth, text_context_refine


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _inputs(n: int, seed: int = 0, dim: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 2, n).astype(float), _unit(rng.normal(size=(n, dim))), _unit(rng.normal(size=(n, dim))))


def test_hand_checked_weights_window_edge_and_mix() -> None:
    e0, e1 = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    labels = np.array([1.0, 0.0, 0.0])
    keys = np.stack([e0, e1, e1])  # descriptions: an anomaly, then two normal ones
    query = np.stack([e0, e1, e0])  # the third answer reads like the first description
    out, weights = text_context_refine(labels, query, keys, tau=0.5, window=2)
    assert out[0] == pytest.approx(1.0)  # alone in its window: its own label
    # segment 1: window {0, 1}, sims (0, 1) -> softmax(0, 2) -> weight of the anomaly 1 / (1 + e^2)
    assert out[1] == pytest.approx(1 / (1 + math.e**2))
    # segment 2: window {1, 2} (segment 0 fell out of it): both normal, whatever the weights
    assert out[2] == 0.0 and list(weights[2][0]) == [1, 2]
    mixed, _ = text_context_refine(labels, query, keys, tau=0.5, window=2, mix=0.25)
    assert mixed[1] == pytest.approx(0.75 * 0.0 + 0.25 * out[1])


def test_start_prior_counts_missing_history_as_normal() -> None:
    taps = causal_kernel(12, 2.0)
    first = causal_smooth(np.array([1.0]), 12, 2.0, start_prior=True)[0]
    assert first == pytest.approx(1.0 / taps.sum())  # about 0.33: one answer is not an alert
    assert causal_smooth(np.array([1.0]), 12, 2.0)[0] == 1.0  # without: renormalised over one tap
    long = np.ones(30)
    a, b = causal_smooth(long, 12, 2.0, start_prior=True), causal_smooth(long, 12, 2.0)
    np.testing.assert_allclose(a[11:], b[11:])  # from the 12th segment on, nothing is missing
    assert np.all(np.diff(a[:12]) > 0)  # the score builds up as evidence arrives


@pytest.mark.parametrize("params", [
    CausalParams(),
    CausalParams(text_window=5, text_tau=0.05, text_mix=0.6, smooth_length=4, smooth_lookahead=2,
                 start_prior=True),
    CausalParams(text_window=1, start_prior=True),
])
def test_step_scorer_equals_batch_with_text_context(params: CausalParams) -> None:
    labels, query, keys = _inputs(90, seed=4)
    batch = score_causal(labels, 90 * 30, params, answer_text_emb=query, description_text_emb=keys)
    scorer = CausalScorer(params, use_features=False, text_context=True)
    out = []
    for i in range(90):
        out += scorer.push(int(labels[i]), answer_text_emb=query[i], description_text_emb=keys[i])
    out += scorer.flush()
    assert [s.index for s in out] == list(range(90))
    np.testing.assert_allclose([s.refined for s in out], batch.refined, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose([s.score for s in out], batch.segment_scores, rtol=1e-6, atol=1e-9)
    assert len(scorer._cleaned) <= params.text_window + params.smooth_lookahead + 2


def test_future_answers_never_change_final_text_context_scores() -> None:
    labels, query, keys = _inputs(60, seed=9)
    p = CausalParams(text_window=20, smooth_lookahead=1, start_prior=True)
    a = score_causal(labels, 1800, p, answer_text_emb=query, description_text_emb=keys).segment_scores
    labels2, query2, keys2 = labels.copy(), query.copy(), keys.copy()
    k = 30
    labels2[k:] = 1 - labels2[k:]
    query2[k:], keys2[k:] = -query2[k:], keys2[::-1][k:]
    b = score_causal(labels2, 1800, p, answer_text_emb=query2, description_text_emb=keys2).segment_scores
    cutoff = k - p.delay
    np.testing.assert_array_equal(a[:cutoff], b[:cutoff])
    assert not np.array_equal(a[cutoff:], b[cutoff:])


def test_text_context_and_clip_features_are_exclusive() -> None:
    labels, query, keys = _inputs(5)
    with pytest.raises(ValueError, match="not both"):
        score_causal(labels, 150, visual=keys, description_emb=keys, answer_text_emb=query, description_text_emb=keys)
    with pytest.raises(ValueError, match="exclusive"):
        CausalScorer(use_features=True, text_context=True)
    with pytest.raises(ValueError, match="answer_text_emb"):
        CausalScorer(use_features=False, text_context=True).push(1)
