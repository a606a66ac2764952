"""Alert hysteresis (corevad.alerts): pure, step by step."""

from __future__ import annotations

import pytest

from corevad.alerts import AlertEvent, AlertParams, AlertTracker


def feed(tracker: AlertTracker, scores: list[float], drivers: list[list[tuple[str, float]]] | None = None,
         first: int = 0) -> list[tuple[int, AlertEvent]]:
    out = []
    for k, s in enumerate(scores):
        i = first + k
        for ev in tracker.update(index=i, start=float(i), end=float(i + 1), score=s,
                                 drivers=drivers[k] if drivers else ()):
            out.append((i, ev))
    return out


P = AlertParams(open_threshold=0.6, close_threshold=0.4, close_after_s=2.0, cooldown_s=3.0, top_k=2,
                update_min_delta=0.05)


def test_opens_above_open_threshold_and_ends_after_staying_below_close_threshold() -> None:
    t = AlertTracker("cam", P)
    evs = feed(t, [0.1, 0.59, 0.61, 0.5, 0.45, 0.39, 0.3, 0.2, 0.1])
    kinds = [(i, e.type) for i, e in evs]
    assert kinds[0] == (2, "new")
    # 0.39 at segment 5 (clock 6): last above-close was segment 4 (clock 5); 2 s below -> ends at segment 6.
    assert kinds[-1] == (6, "end")
    end = evs[-1][1]
    assert end.after.start_index == 2 and end.after.end_index == 6
    assert end.after.start_time == 2.0 and end.after.end_time == 7.0
    assert end.before is not None and end.before.active and not end.after.active
    assert end.after.peak_score == pytest.approx(0.61) and end.after.peak_index == 2
    assert t.state == "normal"


def test_dip_between_thresholds_or_short_dip_below_does_not_end() -> None:
    t = AlertTracker("cam", P)
    evs = feed(t, [0.7, 0.5, 0.3, 0.45, 0.3, 0.5, 0.35])
    assert [e.type for _, e in evs] == ["new"]
    assert t.state == "anomalous" and t.active is not None


def test_updates_on_peak_growth_with_before_and_after() -> None:
    t = AlertTracker("cam", P)
    evs = feed(t, [0.65, 0.67, 0.72, 0.73, 0.9])
    assert [(i, e.type) for i, e in evs] == [(0, "new"), (2, "update"), (4, "update")]
    upd = evs[1][1]
    assert upd.before is not None and upd.before.peak_score == pytest.approx(0.67)
    assert upd.after.peak_score == pytest.approx(0.72) and upd.after.peak_index == 2
    assert upd.to_dict()["before"]["peak_score"] == pytest.approx(0.67)


def test_cooldown_blocks_a_new_alert_then_allows_it() -> None:
    t = AlertTracker("cam", P)
    evs = feed(t, [0.8, 0.1, 0.1])  # ends at segment 2 (clock 3) -> cooldown until clock 6
    assert [(i, e.type) for i, e in evs] == [(0, "new"), (2, "end")]
    assert feed(t, [0.9, 0.9], first=3) == []  # clocks 4 and 5: cooling down
    later = feed(t, [0.9], first=5)  # clock 6
    assert [(i, e.type) for i, e in later] == [(5, "new")]


def test_explanation_ranks_descriptions_by_accumulated_weight() -> None:
    t = AlertTracker("cam", P)
    evs = feed(t, [0.7, 0.75, 0.9], drivers=[
        [("a man climbs a fence", 0.6), ("a car passes", 0.1)],
        [("a man breaks a window", 0.5), ("a car passes", 0.2)],
        [("a man breaks a window", 0.5), ("", 1.0), ("ignored", 0.0)],
    ])
    assert evs[0][1].after.explanation == ("a man climbs a fence", "a car passes")
    final = t.active
    assert final is not None
    assert final.explanation == ("a man breaks a window", "a man climbs a fence")  # top_k = 2


def test_close_ends_an_open_alert_at_end_of_stream() -> None:
    t = AlertTracker("cam", P)
    feed(t, [0.9, 0.9])
    evs = t.close()
    assert [e.type for e in evs] == ["end"] and evs[0].after.end_time == 2.0
    assert t.close() == []


def test_clock_decouples_hysteresis_from_wall_time() -> None:
    t = AlertTracker("cam", P)
    # Replay: wall times barely move, the stream clock advances one second per segment.
    out = []
    for i, s in enumerate([0.9, 0.1, 0.1, 0.1]):
        out += t.update(index=i, start=100.0, end=100.001, score=s, clock=float(i + 1))
    assert [e.type for e in out] == ["new", "end"]


@pytest.mark.parametrize("kw", [{"open_threshold": 0.3, "close_threshold": 0.5}, {"top_k": 0},
                                {"cooldown_s": -1}])
def test_invalid_params_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kw))):  # the error names the field
        AlertParams(**kw)  # type: ignore[arg-type]


def test_missing_answers_neither_update_nor_end_and_pause_the_close_countdown() -> None:
    p = AlertParams(open_threshold=0.6, close_threshold=0.4, close_after_s=2.0, cooldown_s=0.0,
                    max_unscored_s=10.0)
    t = AlertTracker("cam", p, run_id="r1")
    assert [e.type for _, e in feed(t, [0.9])] == ["new"] and t.active is not None
    assert t.active.id == "cam-r1-0"
    for clock in (2.0, 3.0, 4.0, 5.0, 6.0):  # five segments without an answer (clock = segment end)
        assert t.unscored(clock=clock) == []
    # Answers resume below the close threshold: the 5 s gap does not count as "below" (without the pause the
    # first answer would end it at once); as without a gap, the second segment below ends it.
    assert feed(t, [0.1], first=6) == []
    evs = feed(t, [0.1], first=7)
    assert [e.type for _, e in evs] == ["end"] and evs[0][1].after.end_reason == "score below close threshold"


def test_an_alert_without_answers_for_max_unscored_s_ends_with_a_reason() -> None:
    p = AlertParams(open_threshold=0.6, close_threshold=0.4, close_after_s=2.0, max_unscored_s=10.0)
    t = AlertTracker("cam", p)
    feed(t, [0.9, 0.9])
    assert t.unscored(clock=11.9, segment=False) == []  # a timer check: 9.9 s since the last score
    evs = t.unscored(clock=12.0, segment=False)
    assert [e.type for e in evs] == ["end"] and t.active is None
    assert evs[0].after.end_reason == "model unavailable" and evs[0].after.end_index == 1
    assert t.close() == []  # nothing left to end
