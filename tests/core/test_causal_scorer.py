import numpy as np
import pytest

from corevad.causal import CausalScorer
from corevad.params import CausalParams
from corevad.pipeline import score_causal


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _inputs(n, seed=0, dim=16):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 2, n).astype(float), rng.normal(size=(n, dim)).astype(np.float32),
            _unit(rng.normal(size=(n, dim))).astype(np.float32), _unit(rng.normal(size=(n, dim))).astype(np.float32))


def _run(scorer, labels, vis=None, resp=None, desc=None):
    out, emitted_at = [], {}
    for i in range(len(labels)):
        kw = {} if vis is None else {"visual": vis[i], "response_emb": resp[i], "description_emb": desc[i]}
        for s in scorer.push(int(labels[i]), **kw):
            emitted_at[s.index] = i
            out.append(s)
    for s in scorer.flush():
        emitted_at[s.index] = None
        out.append(s)
    return out, emitted_at


@pytest.mark.parametrize("params", [
    CausalParams(),
    CausalParams(lrc_lookahead=1, smooth_lookahead=2, refine_window=7, smooth_length=4, smooth_sigma=2.0),
    CausalParams(lrc_lookback=2, lrc_lookahead=0, refine_window=1, renormalise_visual=True),
])
def test_step_scorer_equals_batch_with_features(params):
    labels, vis, resp, desc = _inputs(50)
    batch = score_causal(labels, 50 * 30 - 7, params, visual=vis, response_emb=resp, description_emb=desc)
    out, emitted_at = _run(CausalScorer(params, use_features=True), labels, vis, resp, desc)
    assert [s.index for s in out] == list(range(50))
    np.testing.assert_allclose([s.score for s in out], batch.segment_scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([s.refined for s in out], batch.refined, rtol=1e-5, atol=1e-6)
    # segment i is final exactly when segment i + delay has arrived
    for i, at in emitted_at.items():
        if i + params.delay < 50:
            assert at == i + params.delay


def test_step_scorer_text_only_equals_batch():
    labels, *_ = _inputs(80, seed=3)
    p = CausalParams(smooth_length=6, smooth_sigma=3.0, smooth_lookahead=1)
    out, _ = _run(CausalScorer(p, use_features=False), labels)
    np.testing.assert_allclose([s.score for s in out], score_causal(labels, 2400, p).segment_scores)


def test_future_answers_never_change_final_scores():
    labels, vis, resp, desc = _inputs(40, seed=5)
    p = CausalParams(lrc_lookahead=1, smooth_lookahead=1, refine_window=10)
    a, _ = _run(CausalScorer(p, use_features=True), labels, vis, resp, desc)
    k = 20
    labels2, vis2, resp2, desc2 = (x.copy() for x in (labels, vis, resp, desc))
    labels2[k:] = 1 - labels2[k:]
    vis2[k:] = -vis2[k:]
    desc2[k:] = desc2[::-1][k:]
    b, _ = _run(CausalScorer(p, use_features=True), labels2, vis2, resp2, desc2)
    cutoff = k - p.delay
    np.testing.assert_array_equal([s.score for s in a[:cutoff]], [s.score for s in b[:cutoff]])
    assert [s.score for s in a[cutoff:]] != [s.score for s in b[cutoff:]]


def test_memory_is_bounded_and_contributors_are_sorted():
    labels, vis, resp, desc = _inputs(600, seed=7)
    p = CausalParams(refine_window=12, smooth_length=5, lrc_lookahead=1)
    sc = CausalScorer(p, use_features=True, top_k=3)
    out, _ = _run(sc, labels, vis, resp, desc)
    assert len(sc._raw) <= 4 and len(sc._cleaned) <= 14 and len(sc._refined) <= 7
    for s in out:
        weights = [w for _, w in s.contributors]
        assert weights == sorted(weights, reverse=True) and len(weights) <= 3
        assert all(s.index - 12 < j <= s.index for j, _ in s.contributors)


def test_scorer_demands_features_it_was_built_for():
    with pytest.raises(ValueError, match="visual"):
        CausalScorer(use_features=True).push(1)
