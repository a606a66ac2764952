"""The supervisor alone: rates over a sliding window, the hung-model watchdog, the stats payload."""

from __future__ import annotations

from typing import Any

import pytest

from corevad_stream.entities import CameraCounters, ScoringOutput
from corevad_stream.messages import Message
from corevad_stream.supervisor import RateWindow, Supervisor


class _Cam:
    def __init__(self, name: str, *, lag: float = 0.0, busy: bool = False, overdue: bool = False) -> None:
        self.name = name
        self.counters = CameraCounters()
        self._lag, self._busy, self._overdue = lag, busy, overdue
        self.stalled_for: list[float] = []

    def lag(self, now: float | None = None) -> float:
        return self._lag

    def stalled(self, seconds: float) -> list[Message]:
        self.stalled_for.append(seconds)
        return [Message("model", {"state": "down"}, camera=self.name)] if self._busy else []

    def overdue(self) -> ScoringOutput | None:
        return ScoringOutput(messages=[Message("state", "normal", camera=self.name)]) if self._overdue else None


class _Model:
    def __init__(self, inflight: float | None = None) -> None:
        self.inflight = inflight
        self.stalls: list[float] = []

    def inflight_s(self, now: float | None = None) -> float | None:
        return self.inflight

    def stalled(self, seconds: float) -> None:
        self.stalls.append(seconds)

    def stats(self) -> dict[str, Any]:
        return {"backend": "x", "batches": 3}


def _supervisor(cams: dict[str, _Cam], model: _Model) -> tuple[Supervisor, list[Message], list[tuple[str, Any]]]:
    published: list[Message] = []
    dispatched: list[tuple[str, Any]] = []

    async def dispatch(cam: Any, out: ScoringOutput) -> None:
        dispatched.append((cam.name, out))

    sup = Supervisor(cameras=cams, model=model, dispatch=dispatch, publish=published.append,  # type: ignore[arg-type]
                     stats_interval_s=5.0, run_id="r1", sink_stats=lambda: {"dropped": 0, "errors": 1},
                     store_stats=lambda: None)
    return sup, published, dispatched


def test_rate_window_is_steady_over_its_window_and_forgets_old_points() -> None:
    w = RateWindow(window_s=10.0)
    assert w.rate(0.0, 0) == 0.0
    for t in range(1, 21):
        r = w.rate(float(t), 5 * t)  # 5 events per second throughout
    assert r == pytest.approx(5.0)
    assert w.rate(21.0, 100) == pytest.approx((100 - 5 * 11) / 10.0)  # only the last ~10 s count
    with pytest.raises(ValueError, match="window_s"):
        RateWindow(window_s=0)


async def test_tick_sets_rates_and_lag_and_forgets_removed_cameras() -> None:
    cams = {"a": _Cam("a", lag=1.5)}
    sup, _, _ = _supervisor(cams, _Model())
    for t in range(11):
        cams["a"].counters.frames, cams["a"].counters.scored = 30 * t, t
        await sup.tick(float(t))
    c = cams["a"].counters
    assert c.fps_in == pytest.approx(30.0) and c.segments_per_s == pytest.approx(1.0) and c.queue_lag_s == 1.5
    del cams["a"]
    await sup.tick(12.0)
    assert sup.stats()["cameras"] == {}


async def test_watchdog_marks_a_stuck_model_down_only_for_busy_cameras_and_ends_overdue_alerts() -> None:
    cams = {"busy": _Cam("busy", busy=True), "idle": _Cam("idle"), "late": _Cam("late", overdue=True)}
    model = _Model(inflight=42.0)
    sup, published, dispatched = _supervisor(cams, model)
    await sup.watchdog(100.0)
    assert model.stalls == [42.0] and cams["busy"].stalled_for == [42.0]
    assert [(m.kind, m.camera) for m in published] == [("model", "busy")]
    assert [name for name, _ in dispatched] == ["late"]
    model.inflight = None  # nothing in the model: no stall reported
    published.clear()
    await sup.watchdog(101.0)
    assert model.stalls == [42.0] and published == []


async def test_stats_payload_has_the_published_shape() -> None:
    sup, published, _ = _supervisor({"a": _Cam("a")}, _Model())
    sup.publish_stats()
    [msg] = published
    assert msg.kind == "stats" and msg.camera is None and not msg.retain
    stats = msg.payload
    assert isinstance(stats, dict)
    assert list(stats) == ["uptime_s", "run_id", "cameras", "model", "sinks", "store", "mqtt"]
    assert stats["run_id"] == "r1" and stats["model"] == {"backend": "x", "batches": 3}
    assert stats["sinks"] == {"dropped": 0, "errors": 1} and stats["store"] is None
    assert stats["cameras"]["a"]["status"] == "connecting"
    with pytest.raises(ValueError, match="stats_interval_s"):
        Supervisor(cameras={}, model=_Model(), dispatch=None, publish=print,  # type: ignore[arg-type]
                   stats_interval_s=0, run_id="x", sink_stats=dict, store_stats=lambda: None)
