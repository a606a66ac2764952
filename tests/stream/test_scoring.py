"""Per-camera scoring (corevad_stream.scoring.CameraScoring): model results in, typed records out."""

from __future__ import annotations

import numpy as np

from corevad.alerts import AlertParams
from corevad.params import CausalParams
from corevad.prompt import parse_answer
from corevad_stream.entities import SegmentJob, SegmentResult
from corevad_stream.messages import AlertEventRecord
from corevad_stream.scoring import CameraScoring


def test_camera_scoring_ranks_explanations_by_weight_times_support() -> None:
    hug, fight = "Two people hug in the car park.", "Two men fight in the car park."
    emb = {hug: np.array([1.0, 0.0], np.float32), fight: np.array([0.0, 1.0], np.float32)}

    def run(support):  # type: ignore[no-untyped-def]
        sc = CameraScoring("c", params=CausalParams(smooth_length=1, text_window=4), use_features=False,
                           alerts=AlertParams(open_threshold=0.9, close_threshold=0.5), text_context=True,
                           support=support)
        events = []
        for i, text in enumerate([hug, hug, fight]):  # the unsupportive description comes first, twice
            v = parse_answer(f"Anomalous scenes. {text}")
            job = SegmentJob(camera="c", index=i, start=float(i), end=i + 1.0, clock=i + 1.0, n_frames=30)
            e = emb[text]
            out = sc.process(SegmentResult(job, v, None, None, None, None, 0.0, answer_text_emb=e,
                                           description_text_emb=e))
            events += [m.payload for m in out.messages if isinstance(m.payload, AlertEventRecord)]
        return events[-1].after_json()["explanation"]

    assert run(None)[0] == hug  # by weight alone: the most frequent description
    assert run(lambda e: 0.05 if e[0] > 0.5 else 0.95)[0] == fight  # weight x support: the one that explains it
