"""Model health alone: unknown -> ok / degraded / down, changes reported once, the published record."""

from __future__ import annotations

import pytest

from corevad_stream.health import ModelHealth, ModelState


def test_failures_degrade_then_go_down_after_down_after_s_and_one_answer_brings_it_back() -> None:
    h = ModelHealth(down_after_s=10.0)
    assert h.state is ModelState.UNKNOWN
    ok = h.success()
    assert ok is not None and ok.state is ModelState.OK
    assert h.success() is None  # no change, nothing to publish
    first = h.failure("timeout", "no answer in 30 s", now=100.0)
    assert first is not None and first.state is ModelState.DEGRADED and first.reason == "timeout: no answer in 30 s"
    assert h.failure("timeout", "again", now=105.0) is None  # same kind, still degraded: no new message
    assert h.reason == "timeout: again"
    down = h.failure("timeout", "still", now=110.0)
    assert down is not None and down.state is ModelState.DOWN
    assert h.errors == {"timeout": 3}
    back = h.success()
    assert back is not None and back.state is ModelState.OK and h.reason == ""


def test_a_model_that_never_answered_is_down_at_its_second_failure() -> None:
    h = ModelHealth(down_after_s=60.0)
    assert h.failure("refused", "connection refused", now=0.0).state is ModelState.DEGRADED  # type: ignore[union-attr]
    assert h.failure("refused", "connection refused", now=0.1).state is ModelState.DOWN  # type: ignore[union-attr]


def test_stalled_marks_down_only_past_down_after_s_and_the_record_rounds_for_the_wire() -> None:
    h = ModelHealth(down_after_s=5.0)
    assert h.stalled(4.9) is None and h.state is ModelState.UNKNOWN
    change = h.stalled(5.0)
    assert change is not None and change.state is ModelState.DOWN and "over 5 s" in change.reason
    h.success()
    rec = h.record()
    assert rec.state == "ok" and rec.last_success == h.last_success  # unrounded in the record
    wire = rec.to_json()
    assert list(wire) == ["state", "reason", "since", "last_success", "errors"]
    assert wire["since"] == round(h.since, 3) and wire["errors"] == {} and h.snapshot() == wire
    with pytest.raises(ValueError, match="down_after_s"):
        ModelHealth(down_after_s=-1)
