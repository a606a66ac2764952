"""PyAV decoding of generated clips: frame counts, segment sampling, broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corevad.errors import DataError
from corevad.segments import segment_video
from corevad.video import (
    VideoDecodeError,
    count_frames,
    find_videos,
    frame_count_message,
    iter_frames,
    iter_segments,
    probe,
)


def test_probe_and_count(video_dir: Path) -> None:
    info = probe(video_dir / "alpha.mp4")
    assert (info.width, info.height, round(info.fps)) == (64, 48, 30)
    assert count_frames(video_dir / "alpha.mp4") == 75
    frames = list(iter_frames(video_dir / "gamma.mp4"))
    assert len(frames) == 31 and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8


def test_segments_sample_like_segment_video(video_dir: Path) -> None:
    all_frames = np.stack(list(iter_frames(video_dir / "alpha.mp4")))
    got = list(iter_segments(video_dir / "alpha.mp4"))
    want = segment_video(75)
    assert [s.index for s, _ in got] == [0, 1, 2]
    for (seg, frames), ref in zip(got, want, strict=True):
        assert (seg.start, seg.end) == (ref.start, ref.end)
        np.testing.assert_array_equal(seg.sampled, ref.sampled)
        np.testing.assert_array_equal(frames, all_frames[ref.sampled])


def test_broken_and_missing_files_name_the_path(video_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        list(iter_frames(video_dir / "broken.mp4"))
    with pytest.raises(VideoDecodeError, match="no such file"):
        probe(tmp_path / "nope.mp4")
    assert isinstance(VideoDecodeError("x", "y"), DataError)


def test_truncated_file_fails_or_yields_fewer_frames(video_dir: Path, tmp_path: Path) -> None:
    data = (video_dir / "alpha.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    try:
        n = count_frames(cut)
    except VideoDecodeError as exc:  # either outcome is fine (a clean error or fewer frames), so no pytest.raises
        assert "cut.mp4" in str(exc)  # noqa: PT017
    else:
        assert n < 75


def test_frame_count_message_and_listing(video_dir: Path) -> None:
    assert frame_count_message("v", 30, 30) is None
    assert frame_count_message("v", 30, None) is None
    assert "v: decoded 29 frames but the annotation expects 30 (-1)" in frame_count_message("v", 29, 30)
    assert list(find_videos(video_dir)) == ["alpha", "beta", "broken", "gamma"]
    with pytest.raises(DataError, match="does not exist"):
        find_videos(video_dir / "nope")
