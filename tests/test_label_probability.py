"""The label's probability from the first answer token's candidates: hand-checked cases."""

from __future__ import annotations

import math

import pytest

from corevad.prompt import label_of_token, p_anomalous


@pytest.mark.parametrize(("token", "label"), [
    ("Anomalous", 1), (" Anom", 1), ("An", 1), ("anomalous scenes", 1), ("Normal", 0), ("No", 0), (" Norm", 0),
    ("A", None), ("N", None), ("The", None), ("", None), ("Abnormal", None), ("Anomaly", None),
])
def test_which_label_a_token_begins(token: str, label: int | None) -> None:
    assert label_of_token(token) == label


def test_p_anomalous_renormalises_over_the_two_labels() -> None:
    cands = [("Anomalous", math.log(0.6)), ("Normal", math.log(0.15)), ("No", math.log(0.05)),
             ("The", math.log(0.2))]
    assert p_anomalous(cands) == pytest.approx(0.6 / 0.8)  # Normal + No = 0.2; "The" is neither
    assert 1 - p_anomalous(cands) == pytest.approx(0.2 / 0.8)  # type: ignore[operator]


def test_no_label_among_the_candidates_is_no_probability_not_zero() -> None:
    assert p_anomalous([("The", -0.1), ("A", -2.0)]) is None
    assert p_anomalous([]) is None
    assert p_anomalous([("Normal", -0.01)]) == 0.0  # only Normal seen: a real 0
    assert p_anomalous([("Anomalous", -3.0)]) == 1.0
    assert p_anomalous([("Anomalous", float("-inf")), ("Normal", -1.0)]) == 0.0
