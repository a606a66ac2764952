"""explanation_class_hits: the class-hit rate the explanation tools report, on hand-made alerts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from corevad.benchmarks import NORMAL_CLASS, VideoGT
from corevad_stream.replay import UCF_CLASSES, ReplayAlert, VideoReplay, explanation_class_hits


class WordEncoder:
    """One axis per UCF class: a text points along the class whose name (or phrase) it contains."""

    words = [c.lower() for c in UCF_CLASSES]
    words[UCF_CLASSES.index("RoadAccidents")] = "road accident"

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = np.full((len(texts), len(self.words)), 0.01, np.float32)
        for i, t in enumerate(texts):
            for j, w in enumerate(self.words):
                out[i, j] += w in t.lower()
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _video(name: str, cls: str, spans: tuple[tuple[int, int], ...], alerts: list[tuple[int, int, str]]) -> VideoReplay:
    gt = VideoGT(name=name, cls=cls, frames=30 * 20, spans=spans)
    return VideoReplay(gt=gt, segment_scores=np.zeros(20), labels=np.zeros(20),
                       alerts=[ReplayAlert(name, s, e, 1.0, (text,)) for s, e, text in alerts])


def test_counts_only_alerts_on_a_gt_span_of_an_anomalous_video_and_their_first_sentence() -> None:
    videos = [
        _video("a", "Explosion", ((60, 150),), [(1, 3, "An explosion in a yard."),  # on the span, right class
                                                (10, 12, "An explosion again.")]),  # after the span: not counted
        _video("b", "RoadAccidents", ((0, 90),), [(0, 1, "A road accident on a crossing."),  # right
                                                  (2, 2, "Two men fighting.")]),  # on the span, wrong class
        _video("n", NORMAL_CLASS, (), [(0, 5, "An explosion.")]),  # a normal video's alert: not counted
    ]
    got = explanation_class_hits(videos, WordEncoder())
    assert got == {"alerts": 3, "hits": 2, "hit_rate": 2 / 3}


def test_no_alert_on_a_span_is_an_undefined_rate_not_zero() -> None:
    got = explanation_class_hits([_video("a", "Arson", ((300, 330),), [(0, 1, "Arson.")])], WordEncoder())
    assert got["alerts"] == 0 and got["hits"] == 0 and np.isnan(got["hit_rate"])
