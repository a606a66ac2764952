import numpy as np
import pytest

from corevad.cleaning import lrc_choice, similarity
from corevad.params import CausalParams, OfflineParams
from corevad.pipeline import score_causal, score_offline
from corevad.refine import (
    causal_smooth,
    causal_softmax_refine,
    gaussian_kernel,
    gaussian_smooth,
    position_weights,
    softmax_refine,
    softmax_weights,
)


def test_lrc_picks_best_aligned_neighbour():
    sims = np.array([
        [0.1, 0.9, 0.8, 0.0],   # i=0: candidates 0..1 -> 1
        [0.7, 0.2, 0.1, 0.9],   # i=1: candidates 0..2 -> 0 (3 is out of the window)
        [0.0, 0.1, 0.2, 0.3],   # i=2: candidates 1..3 -> 3
        [0.0, 0.5, 0.5, 0.4],   # i=3: candidates 2..3 -> 2
    ])
    assert lrc_choice(sims, 1, 1).tolist() == [1, 0, 3, 2]
    # causal, no lookahead: only the past and the present
    assert lrc_choice(sims, 1, 0).tolist() == [0, 0, 2, 2]


def test_lrc_ties_go_to_earliest():
    assert lrc_choice(np.ones((3, 3)), 1, 1).tolist() == [0, 0, 1]


def test_similarity_renormalises_only_on_request():
    v = np.array([[0.5, 0.0]])
    t = np.array([[1.0, 0.0]])
    assert similarity(v, t)[0, 0] == pytest.approx(0.5)
    assert similarity(v, t, renormalise_visual=True)[0, 0] == pytest.approx(1.0)


def test_softmax_weights_and_refined_score_by_hand():
    sims = np.array([[0.30, 0.25, 0.20]])
    w = softmax_weights(sims, 0.05)
    e = np.exp(np.array([0.0, -1.0, -2.0]))
    np.testing.assert_allclose(w[0], e / e.sum())
    refined = softmax_refine(sims, np.array([1, 0, 1]), tau=0.05)
    assert refined[0] == pytest.approx((e[0] + e[2]) / e.sum())


def test_causal_softmax_uses_only_the_window():
    sims = np.array([[0.3, 0.1, 0.2], [0.0, 0.3, 0.2], [0.3, 0.0, 0.3]])
    labels = np.array([1.0, 0.0, 1.0])
    out = causal_softmax_refine(sims, labels, tau=0.05, window=2)
    assert out[0] == pytest.approx(1.0)                      # only itself
    np.testing.assert_allclose(out[1], softmax_weights(sims[1, :2], 0.05) @ labels[:2])
    np.testing.assert_allclose(out[2], softmax_weights(sims[2, 1:3], 0.05) @ labels[1:3])
    # a window covering every past segment equals offline refinement at the last segment
    full = causal_softmax_refine(sims, labels, tau=0.05, window=10)
    assert full[-1] == pytest.approx(softmax_refine(sims, labels, 0.05)[-1])


def test_paper_kernel_is_off_centre_as_in_the_authors_code():
    k = gaussian_kernel(9, 5.0)
    grid = np.linspace(-5, 4, 9)             # what linspace(-9//2, 9//2, 9) gives
    assert grid[1] == pytest.approx(-3.875)
    ref = np.exp(-grid**2 / 50.0)
    np.testing.assert_allclose(k, ref / ref.sum())
    assert k.sum() == pytest.approx(1.0)
    assert np.argmax(k) == 4 and k[0] < k[-1]          # peak at x=-0.5, heavier right tail
    c = gaussian_kernel(9, 5.0, centred=True)
    np.testing.assert_allclose(c, c[::-1])
    assert np.argmax(c) == 4


def test_gaussian_smooth_is_same_mode_convolution():
    x = np.zeros(12)
    x[5] = 1.0
    k = gaussian_kernel(9, 5.0)
    y = gaussian_smooth(x, 9, 5.0)
    assert y.shape == (12,)
    # an impulse reproduces the kernel centred on it: y[5 + m] = k[4 + m]
    np.testing.assert_allclose(y[1:10], k)
    # zero padding: a constant signal is attenuated at the borders only
    c = gaussian_smooth(np.ones(20), 9, 5.0)
    assert c[10] == pytest.approx(1.0) and c[0] < 0.7


def test_position_weights_formula():
    w = position_weights(10)
    t = np.arange(10)
    np.testing.assert_allclose(w, np.exp(-0.5 * ((t - 5) / 5) ** 2))
    assert w[5] == 1.0 and position_weights(0).shape == (0,)


def test_causal_smooth_by_hand_and_renormalised_at_edges():
    x = np.array([1.0, 0.0, 0.0, 2.0])
    y = causal_smooth(x, length=2, sigma=1.0, lookahead=0)
    w1 = np.exp(-0.5)
    assert y[0] == pytest.approx(1.0)                         # only itself exists
    assert y[1] == pytest.approx((0.0 + w1 * 1.0) / (1 + w1))
    assert y[3] == pytest.approx((2.0 + w1 * 0.0) / (1 + w1))
    z = causal_smooth(x, length=1, sigma=1.0, lookahead=1)
    assert z[3] == pytest.approx(2.0) and z[2] == pytest.approx(2 * w1 / (1 + w1))


def test_causal_equals_offline_where_windows_coincide():
    rng = np.random.default_rng(0)
    x = rng.random(40)
    # causal smoothing with the centred kernel's half-width as lookahead equals offline centred smoothing
    # away from the borders (the causal form renormalises at the borders, offline zero-pads)
    off = gaussian_smooth(x, 9, 5.0, centred=True)
    cau = causal_smooth(x, length=5, sigma=5.0, lookahead=4)
    np.testing.assert_allclose(cau[4:-4], off[4:-4])
    # causal LRC with lookback = lookahead = 1 is the offline LRC
    sims = rng.random((40, 40))
    assert (lrc_choice(sims, 1, 1) == lrc_choice(sims, 1, 1)).all()


def test_text_only_offline_pipeline_by_hand():
    labels = np.array([0, 1, 1, 0], dtype=float)
    s = score_offline(labels, 100, OfflineParams())
    assert not s.used_features
    expected_seg = np.convolve(labels, gaussian_kernel(9, 5.0), mode="same")
    np.testing.assert_allclose(s.segment_scores, expected_seg)
    frames = np.repeat(expected_seg, 30)[:100] * position_weights(100)
    np.testing.assert_allclose(s.frame_scores, frames)
    no_pw = score_offline(labels, 100, OfflineParams(position_weighting=False))
    np.testing.assert_allclose(no_pw.frame_scores, np.repeat(expected_seg, 30)[:100])


def test_feature_pipeline_refines_with_softmax():
    rng = np.random.default_rng(1)
    vis = rng.normal(size=(4, 8))
    desc = rng.normal(size=(4, 8))
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    labels = np.array([1, 0, 0, 1], dtype=float)
    s = score_offline(labels, 120, OfflineParams(position_weighting=False), visual=vis, description_emb=desc)
    assert s.used_features
    np.testing.assert_allclose(s.refined, softmax_refine(vis @ desc.T, labels, 0.05), rtol=1e-5)
    with pytest.raises(ValueError, match="expected 4 segments"):
        score_offline(labels, 120, visual=vis[:3], description_emb=desc)


def test_paper_precision_quantises_to_float16():
    labels = np.array([0, 1, 1, 0, 0, 1], dtype=float)
    s = score_offline(labels, 180, OfflineParams(paper_precision=True))
    half = np.repeat(gaussian_smooth(labels, 9, 5.0), 30)[:180].astype(np.float16)
    np.testing.assert_allclose(s.frame_scores, half * position_weights(180))


def test_causal_pipeline_text_only_has_no_position_weighting():
    labels = np.array([0, 0, 1, 1, 1, 0], dtype=float)
    p = CausalParams(smooth_length=3, smooth_sigma=2.0)
    s = score_causal(labels, 170, p)
    np.testing.assert_allclose(s.segment_scores, causal_smooth(labels, 3, 2.0, 0))
    assert s.frame_scores.shape == (170,) and s.frame_scores[0] == 0.0
