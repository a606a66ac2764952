import numpy as np
import pytest

from corevad.segments import expand_to_frames, sample_indices, segment_count, segment_means, segment_video


def test_full_segment_samples_eight_frames_first_to_last():
    # linspace(0, 29, 8) = 0, 4.14, 8.29, 12.43, 16.57, 20.71, 24.86, 29 -> truncated like int32
    assert sample_indices(0, 30).tolist() == [0, 4, 8, 12, 16, 20, 24, 29]
    assert sample_indices(30, 60).tolist() == [30, 34, 38, 42, 46, 50, 54, 59]


def test_short_segment_takes_all_frames():
    assert sample_indices(60, 65).tolist() == [60, 61, 62, 63, 64]
    assert sample_indices(0, 8).tolist() == list(range(8))
    assert len(sample_indices(0, 9)) == 8
    with pytest.raises(ValueError, match="empty segment"):
        sample_indices(5, 5)


def test_segment_video_bookkeeping():
    segs = segment_video(65)
    assert segment_count(65) == 3 == len(segs)
    assert [(s.start, s.end) for s in segs] == [(0, 30), (30, 60), (60, 65)]
    assert segs[2].n_frames == 5 and segs[2].sampled.tolist() == [60, 61, 62, 63, 64]
    assert segment_count(60) == 2 and segment_count(0) == 0


def test_expand_to_frames_repeats_and_cuts():
    out = expand_to_frames(np.array([0.1, 0.5, 0.9]), 65)
    assert out.shape == (65,)
    assert (out[:30] == 0.1).all() and (out[30:60] == 0.5).all() and (out[60:] == 0.9).all()
    with pytest.raises(ValueError, match="fewer"):
        expand_to_frames(np.array([1.0]), 31)


def test_segment_means_handles_partial_last_segment():
    feats = np.arange(65 * 2, dtype=np.float32).reshape(65, 2)
    m = segment_means(feats)
    assert m.shape == (3, 2)
    np.testing.assert_allclose(m[0], feats[:30].mean(0))
    np.testing.assert_allclose(m[2], feats[60:].mean(0))
