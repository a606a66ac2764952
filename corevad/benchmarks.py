"""Benchmark ground truth (UCF-Crime, XD-Violence) and recorded responses, built as the authors built them.

Spans are 0-based, start-inclusive, end-exclusive, clipped to the video's frame count by slicing; videos
keep the annotation file's order, so concatenated per-frame arrays line up with the authors' gt_*.npy.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AnnotationError, DataError, ResponseCountError
from .files import MIB, read_text_checked

ANNOTATION_LIMIT = 64 * MIB  # XD-Violence's 800 videos take well under 1 MB

DATASETS = ("ucf-crime", "xd-violence")
NORMAL_CLASS = "Normal"


@dataclass(frozen=True, slots=True)
class VideoGT:
    """One test video: its name (the responses key), class, frame count and anomalous spans."""

    name: str
    cls: str
    frames: int
    spans: tuple[tuple[int, int], ...]

    @property
    def is_anomalous(self) -> bool:
        return self.cls != NORMAL_CLASS

    @property
    def gt(self) -> np.ndarray:
        g = np.zeros(self.frames, dtype=np.float32)
        for s, e in self.spans:
            g[s:e] = 1.0
        return g

    def segments(self, segment_len: int = 30) -> int:
        return math.ceil(self.frames / segment_len)


def _int(path: str, line: int, field: str, value: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AnnotationError(path, line, f"{field} is not an integer: {value!r}") from None


def _spans(path: str, line: int, numbers: list[int]) -> tuple[tuple[int, int], ...]:
    if len(numbers) % 2:
        raise AnnotationError(path, line, f"odd number of span bounds: {numbers}")
    spans = []
    for s, e in zip(numbers[::2], numbers[1::2], strict=True):
        if s == -1:
            continue
        if s < 0 or e < s:
            raise AnnotationError(path, line, f"bad span ({s}, {e})")
        spans.append((s, e))
    return tuple(spans)


def load_ucf_crime(path: str | Path) -> list[VideoGT]:
    """UCF-Crime from the tab-separated `video, class, frames, start1, end1, start2, end2` file."""
    p = str(path)
    videos = []
    rows = list(csv.reader(io.StringIO(read_text_checked(p, limit=ANNOTATION_LIMIT, what="annotation file"),
                                       newline=""), delimiter="\t"))
    if not rows or [c.strip().lower() for c in rows[0][:3]] != ["video", "class", "frames"]:
        raise AnnotationError(p, 1, "expected a header row starting 'video<TAB>class<TAB>frames'")
    for n, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 7:
            raise AnnotationError(p, n, f"expected 7 tab-separated fields, got {len(row)}")
        name, cls = row[0].strip(), row[1].strip()
        frames = _int(p, n, "frames", row[2])
        if frames <= 0:
            raise AnnotationError(p, n, f"frames must be > 0, got {frames}")
        nums = [_int(p, n, f"field {k + 4}", v) for k, v in enumerate(row[3:])]
        videos.append(VideoGT(name, cls, frames, _spans(p, n, nums)))
    return videos


def load_xd_violence(path: str | Path) -> list[VideoGT]:
    """XD-Violence from the authors' JSON list of {video, temporal_label, length, label}."""
    p = str(path)
    try:
        items = json.loads(read_text_checked(p, limit=ANNOTATION_LIMIT, what="annotation file"))
    except json.JSONDecodeError as e:
        raise AnnotationError(p, e.lineno, f"invalid JSON: {e.msg}") from e
    if not isinstance(items, list):
        raise AnnotationError(p, 1, "expected a JSON list of videos")
    videos = []
    for n, item in enumerate(items):
        where = f"entry {n}"
        try:
            name = str(item["video"]).replace("#", "")
            frames = int(item["length"])
            nums = [int(x) for x in item["temporal_label"]]
            label = str(item["label"])
        except (KeyError, TypeError, ValueError) as e:
            raise AnnotationError(p, n + 1, f"{where}: missing or malformed field ({e})") from None
        if name.endswith(".mp4"):
            name = name[:-4]
        cls = NORMAL_CLASS if label == "0" else "Violence"
        videos.append(VideoGT(name, cls, frames, _spans(p, n + 1, nums)))
    return videos


def load_benchmark(dataset: str, annotation_path: str | Path) -> list[VideoGT]:
    """Ground truth for `dataset` ('ucf-crime' or 'xd-violence') from its annotation file."""
    if dataset == "ucf-crime":
        return load_ucf_crime(annotation_path)
    if dataset == "xd-violence":
        return load_xd_violence(annotation_path)
    raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


def concat_gt(videos: list[VideoGT]) -> np.ndarray:
    """Per-frame labels of all videos, concatenated in list order (the authors' gt_*.npy)."""
    return np.concatenate([v.gt for v in videos]) if videos else np.zeros(0, dtype=np.float32)


RESPONSES_LIMIT = 256 * MIB  # the UCF-Crime file is 3.6 MB: 70x headroom


def _per_video_lists(path: str | Path, what: str, items: str) -> dict[str, list[Any]]:
    """A size-checked JSON object video -> list (responses and their probabilities share this form), with
    video names as the authors store them ('#' dropped, no .mp4)."""
    p = Path(path)
    try:
        data = json.loads(read_text_checked(p, limit=RESPONSES_LIMIT, what=what))
    except json.JSONDecodeError as e:
        raise DataError(f"{p}:{e.lineno}: invalid JSON: {e.msg}") from e
    if not isinstance(data, dict):
        raise DataError(f"{p}: expected a JSON object video -> list of {items}")
    out = {}
    for k, v in data.items():
        if not isinstance(v, list):
            raise DataError(f"{p}: video {k!r}: expected a list of {items}, got {type(v).__name__}")
        out[str(k).replace("#", "").removesuffix(".mp4")] = v
    return out


def load_responses(path: str | Path) -> dict[str, list[str]]:
    """The authors' responses JSON: video name -> one answer per 30-frame segment."""
    return {k: ["" if r is None else str(r) for r in v]
            for k, v in _per_video_lists(path, "responses file", "answers").items()}


def probabilities_beside(responses: str | Path) -> Path:
    """Where the label probabilities of a responses file live: `<stem>.p_anomalous.json` beside it."""
    p = Path(responses)
    return p.with_name(p.stem + ".p_anomalous.json")


def load_probabilities(path: str | Path) -> dict[str, list[float | None]]:
    """Label probabilities beside a responses file (`corevad generate` writes `<out stem>.p_anomalous.json`):
    video name -> P(Anomalous) per segment, null where the backend could not tell."""
    out: dict[str, list[float | None]] = {}
    for k, v in _per_video_lists(path, "probabilities file", "probabilities").items():
        for i, x in enumerate(v):
            if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float)) or not 0.0 <= x <= 1.0):
                raise DataError(f"{path}: video {k!r} segment {i}: expected a probability in [0, 1] or null, "
                                f"got {x!r}")
        out[k] = [None if x is None else float(x) for x in v]
    return out


def match_responses(
    videos: list[VideoGT], responses: Mapping[str, list[str]], segment_len: int = 30, skip_bad: bool = False
) -> tuple[list[tuple[VideoGT, list[str]]], list[ResponseCountError]]:
    """Pair each video with its answers, checking there is exactly one per segment.

    A missing video or a wrong count raises ResponseCountError naming the video and both numbers,
    unless skip_bad, in which case the video is left out and the error returned.
    """
    pairs, skipped = [], []
    for v in videos:
        expected = v.segments(segment_len)
        answers = responses.get(v.name)
        if answers is None or len(answers) != expected:
            err = ResponseCountError(v.name, expected, None if answers is None else len(answers))
            if not skip_bad:
                raise err
            skipped.append(err)
            continue
        pairs.append((v, answers))
    return pairs, skipped
