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


def test_a_description_after_its_verdict_explains_the_alert_in_its_next_update_and_never_rescores() -> None:
    from corevad_stream.entities import DescriptionUpdate
    from corevad_stream.messages import ScoreRecord

    def scoring() -> CameraScoring:
        return CameraScoring("c", params=CausalParams(smooth_length=1), use_features=False,
                             alerts=AlertParams(open_threshold=0.9, close_threshold=0.5))

    def result(i: int, pending: bool) -> SegmentResult:
        job = SegmentJob(camera="c", index=i, start=float(i), end=i + 1.0, clock=i + 1.0, n_frames=30)
        return SegmentResult(job, parse_answer("Anomalous scenes."), None, None, None, None, 0.0,
                             description_pending=pending)

    def split(out):  # type: ignore[no-untyped-def]
        return ([m.payload for m in out.messages if isinstance(m.payload, ScoreRecord)],
                [m.payload.to_json() for m in out.messages if isinstance(m.payload, AlertEventRecord)])

    lazy, plain = scoring(), scoring()
    first_scores, first_events = split(lazy.process(result(0, True)))
    # The score is out at verdict time, and the alert opens on the verdict alone, saying a description is due.
    assert [s.index for s in first_scores] == [0]
    assert [e["type"] for e in first_events] == ["new"]
    assert first_events[0]["after"]["explanation"] == [] and first_events[0]["after"]["descriptions_pending"] == 1
    second_scores, _ = split(lazy.process(result(1, True)))
    # The same verdicts without a description to come score the same: nothing waits or is recomputed.
    plain_scores = split(plain.process(result(0, False)))[0] + split(plain.process(result(1, False)))[0]
    assert [s.score for s in first_scores + second_scores] == [s.score for s in plain_scores]

    text = "A man breaks the shop window with a bat."
    scores, events = split(lazy.describe(DescriptionUpdate(camera="c", index=0, description=text, model_s=0.1)))
    assert scores == []  # a description never republishes or changes a score
    assert [e["type"] for e in events] == ["update"]
    assert events[0]["after"]["explanation"] == [text] and events[0]["after"]["descriptions_pending"] == 1
    assert lazy.counters.last_explanation == text
    # A lost description: the verdict stands, the alert says one is missing.
    scores, events = split(lazy.describe(DescriptionUpdate(camera="c", index=1, description=None, model_s=0.1,
                                                           error="description pass failed", error_kind="model")))
    assert scores == [] and [e["type"] for e in events] == ["update"]
    after = events[0]["after"]
    assert after["descriptions_missing"] == 1 and "descriptions_pending" not in after
    assert after["explanation"] == [text] and after["active"]
    # describe: all alerts read as before (no new keys where nothing is pending or missing).
    plain_event = split(scoring().process(result(0, False)))[1][0]["after"]
    assert "descriptions_pending" not in plain_event and "descriptions_missing" not in plain_event
