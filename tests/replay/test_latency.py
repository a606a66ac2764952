"""Hand-checked cases for detection delay, false alerts per hour and the LaAP approximation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from corevad.latency import (
    count_false_alerts,
    delay_stats,
    detection_delay,
    false_alerts_per_hour,
    laap_approx,
)


def test_delay_from_gt_start_to_first_overlapping_alert() -> None:
    spans = [(60, 120)]  # 2.0 s .. 4.0 s at 30 fps
    assert detection_delay(spans, [(3.5, 4.5)]) == pytest.approx(1.5)
    # an alert already open when the anomaly starts: delay 0
    assert detection_delay(spans, [(1.0, 2.5)]) == 0.0
    # alerts wholly before or after the span do not detect it
    assert detection_delay(spans, [(0.0, 1.9), (4.0, 6.0)]) is None
    # the earliest overlapping alert wins, whatever the list order
    assert detection_delay(spans, [(3.9, 5.0), (2.4, 2.6)]) == pytest.approx(0.4)
    # the first span's start is the reference even when a later span is the one detected
    assert detection_delay([(60, 90), (300, 330)], [(10.5, 11.0)]) == pytest.approx(8.5)
    assert detection_delay([], [(1.0, 2.0)]) is None
    # publication latency is added to the alert's start; an early alert cannot go below 0
    assert detection_delay(spans, [(3.5, 4.5)], latency_s=2.0) == pytest.approx(3.5)
    assert detection_delay(spans, [(0.5, 2.5)], latency_s=1.0) == 0.0


def test_false_alerts_count_and_rate() -> None:
    assert count_false_alerts([(60, 120)], [(0.0, 1.0), (1.5, 2.1), (5.0, 6.0)]) == 2
    one_hour = 30 * 3600
    rate = false_alerts_per_hour([(one_hour, [], [(1.0, 2.0), (50.0, 60.0)]),
                                  (one_hour, [], [(3.0, 4.0)])])
    assert rate.false_alerts == 3
    assert rate.hours == pytest.approx(2.0)
    assert rate.per_hour == pytest.approx(1.5)


def test_delay_stats_counts_misses_separately() -> None:
    st = delay_stats([1.0, None, 3.0, 2.0, None])
    assert (st.videos, st.detected) == (5, 3)
    assert st.median_s == pytest.approx(2.0)
    assert st.p90_s == pytest.approx(2.8)
    assert st.detection_rate == pytest.approx(0.6)
    assert math.isnan(delay_stats([None]).median_s)


def test_laap_is_one_for_perfect_scores() -> None:
    gt = np.zeros(50)
    gt[10:20] = 1
    assert laap_approx([gt, np.zeros(30)], [[(10, 20)], []]) == pytest.approx(1.0)


def test_laap_hand_checked() -> None:
    # One event, frames 4..7 (L = 4). Thresholds 0.9, 0.2, 0.
    # θ=0.9: first hit at offset 1 -> credit 1 - 1/4 = 0.75; precision 3/4 (frame 0 is a normal 0.9).
    # θ=0.2: hit at offset 0 -> credit 1, +0.25; precision 4/5.  LaAP≈ = 0.75*0.75 + 0.25*0.8 = 0.7625.
    s = np.array([0.9, 0, 0, 0, 0.2, 0.9, 0.9, 0.9, 0, 0])
    assert laap_approx([s], [[(4, 8)]]) == pytest.approx(0.7625)
    # One frame of latency: credits 0.5 at θ=0.9 and 0.75 at θ=0.2 -> 0.5*0.75 + 0.25*0.8 = 0.575.
    assert laap_approx([s], [[(4, 8)]], latency_frames=1) == pytest.approx(0.575)


def test_laap_rewards_earlier_detection_where_ap_does_not() -> None:
    from sklearn.metrics import average_precision_score

    gt = np.zeros(40)
    gt[10:30] = 1
    base = np.where(gt > 0, 0.5, 0.1)
    base[:10] = 0.5  # normal frames as high as most of the event
    early, late = base.copy(), base.copy()
    early[10:15] = 0.9  # high scores at the onset
    late[25:30] = 0.9  # the same high scores at the end
    assert average_precision_score(gt, early) == pytest.approx(average_precision_score(gt, late))
    # early: credit 1 at θ=0.9 -> 1.0; late: 0.25 at precision 1, then +0.75 at precision 20/30 -> 0.75
    assert laap_approx([early], [[(10, 30)]]) == pytest.approx(1.0)
    assert laap_approx([late], [[(10, 30)]]) == pytest.approx(0.75)


def test_laap_validates_input() -> None:
    with pytest.raises(ValueError, match="score arrays"):
        laap_approx([np.zeros(3)], [])
    assert math.isnan(laap_approx([np.zeros(3)], [[]]))
