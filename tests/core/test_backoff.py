"""The one Backoff: exponential growth, jitter only downwards, a cap no attempt count can overflow."""

from __future__ import annotations

import random

import pytest

from corevad.backoff import Backoff, BackoffPolicy


def test_grows_exponentially_with_downward_jitter_and_resets() -> None:
    b = Backoff(BackoffPolicy(initial_s=1, max_s=8, factor=2, jitter=0.25), rng=random.Random(1))
    delays = [b.next_delay() for _ in range(6)]
    for d, base in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert base * 0.75 <= d <= base
    assert len({round(d, 6) for d in delays[3:]}) > 1  # jitter spreads retries of many cameras
    b.reset()
    assert b.next_delay() <= 1.0


def test_thousands_of_attempts_never_overflow_and_stay_at_the_cap() -> None:
    b = Backoff(BackoffPolicy(initial_s=0.001, max_s=0.5, factor=2.0, jitter=0.0))
    delays = [b.next_delay() for _ in range(5000)]
    assert b.attempt == 5000
    assert delays[-1] == 0.5 and max(delays) == 0.5
    # A huge factor overflows float after a handful of multiplications without the ceiling.
    huge = Backoff(BackoffPolicy(initial_s=1.0, max_s=60.0, factor=1e300, jitter=0.0))
    assert [huge.next_delay() for _ in range(5)] == [1.0, 60.0, 60.0, 60.0, 60.0]


def test_a_retry_after_hint_raises_the_delay_but_never_past_the_cap() -> None:
    b = Backoff(BackoffPolicy(initial_s=0.5, max_s=30.0, factor=2.0, jitter=0.0))
    assert b.next_delay(at_least=3600.0) == 30.0
    assert b.next_delay(at_least=5.0) == 5.0
    assert b.next_delay(at_least=float("inf")) == 2.0  # not a number we can honour: ignored


@pytest.mark.parametrize("kwargs", [{"initial_s": -1}, {"max_s": float("inf")}, {"factor": 0.5},
                                    {"jitter": 1.5}, {"initial_s": 5, "max_s": 1}])
def test_bad_policies_are_refused_early(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        BackoffPolicy(**kwargs)
