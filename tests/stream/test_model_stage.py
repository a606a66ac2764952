"""The model stage alone: a real Batcher and ModelWorker, a scripted backend, results collected per camera."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from stream_doubles import ANOMALOUS, ScriptedBackend

from corevad_stream.batcher import Batcher
from corevad_stream.entities import SegmentJob, SegmentResult
from corevad_stream.health import ModelHealth
from corevad_stream.messages import Message, ModelRecord
from corevad_stream.model_stage import ModelStage
from corevad_stream.worker import ModelWorker


def _job(cam: str, i: int, released: list[tuple[str, int]]) -> SegmentJob:
    return SegmentJob(camera=cam, index=i, start=float(i), end=i + 1.0, clock=i + 1.0, n_frames=30,
                      frames=np.zeros((2, 8, 8, 3), np.uint8), _release=lambda: released.append((cam, i)))


class _Rig:
    def __init__(self, backend: object, *, overlap: bool = True, down_after_s: float = 30.0) -> None:
        self.delivered: list[SegmentResult | SegmentJob] = []
        self.drops: list[tuple[str, int, str]] = []
        self.published: list[Message] = []
        self.released: list[tuple[str, int]] = []
        self.model_s: list[float] = []
        self.batcher = Batcher(max_batch=4, max_wait_s=0.0, max_pending_per_camera=10, max_pending_total=100,
                               on_drop=lambda j, why: self.drops.append((j.camera, j.index, why)))
        self.health = ModelHealth(down_after_s=down_after_s)
        self.stage = ModelStage(runner=ModelWorker(backend), batches=self.batcher,  # type: ignore[arg-type]
                                health=self.health, overlap=overlap, deliver=self._deliver,
                                on_drop=lambda j, why: self.drops.append((j.camera, j.index, why)),
                                publish=self.published.append, observe_model_s=self.model_s.append)

    async def _deliver(self, item: SegmentResult | SegmentJob) -> None:
        self.delivered.append(item)

    def order(self) -> list[tuple[str, int | str]]:
        return [(i.camera, "end") if isinstance(i, SegmentJob) else (i.job.camera, i.job.index)
                for i in self.delivered if isinstance(i, SegmentJob | SegmentResult)]

    def order_all(self) -> list[tuple[str, int | str]]:
        """order() with descriptions (camera, index) in their place."""
        return [(i.camera, "end") if isinstance(i, SegmentJob) else (i.job.camera, i.job.index)
                if isinstance(i, SegmentResult) else (i.camera, i.index) for i in self.delivered]


@pytest.mark.parametrize("overlap", [True, False])
async def test_results_arrive_in_order_with_each_end_marker_behind_its_cameras_segments(overlap: bool) -> None:
    rig = _Rig(ScriptedBackend(), overlap=overlap)
    for i in range(3):
        rig.batcher.offer(_job("a", i, rig.released))
    rig.batcher.end_of_stream("a")
    for i in range(2):
        rig.batcher.offer(_job("b", i, rig.released))
    rig.batcher.end_of_stream("b")
    await rig.batcher.close()
    await asyncio.wait_for(rig.stage.run(), 20)
    rig.stage.close()
    order = rig.order()
    for cam, n in (("a", 3), ("b", 2)):
        mine = [x for x in order if x[0] == cam]
        assert mine == [(cam, i) for i in range(n)] + [(cam, "end")]
    assert sorted(rig.released) == sorted([("a", i) for i in range(3)] + [("b", i) for i in range(2)])
    assert all(r.answered for r in rig.delivered if isinstance(r, SegmentResult))
    assert rig.model_s and all(s >= 0 for s in rig.model_s)
    # One retained `model` message for the change unknown -> ok, none for the batches after it.
    models = [m for m in rig.published if m.kind == "model"]
    assert len(models) == 1 and models[0].camera is None and models[0].retain
    assert isinstance(models[0].payload, ModelRecord) and models[0].payload.state == "ok"
    assert rig.stage.stats()["batches"] == len(rig.model_s) and rig.stage.stats()["backend"] == "scripted"


async def test_a_failing_backend_is_reported_as_model_health_never_as_answers() -> None:
    class Down(ScriptedBackend):
        def answer(self, clips):  # type: ignore[no-untyped-def]
            raise ConnectionError("model server refused the connection")

    rig = _Rig(Down(), down_after_s=0.0)
    for i in range(2):
        rig.batcher.offer(_job("a", i, rig.released))
    await rig.batcher.close()
    await asyncio.wait_for(rig.stage.run(), 20)
    rig.stage.close()
    results = [r for r in rig.delivered if isinstance(r, SegmentResult)]
    assert len(results) == 2 and not any(r.answered for r in results)
    assert rig.health.state.value == "down" and "refused" in rig.health.reason
    assert [m.payload.state for m in rig.published if isinstance(m.payload, ModelRecord)] == ["down"]


async def test_a_runner_that_raises_drops_its_segments_and_the_stage_keeps_going() -> None:
    class Broken(ModelWorker):
        def finish(self, pb):  # type: ignore[no-untyped-def]
            if pb.jobs[0].camera == "bad":
                raise RuntimeError("bug in the worker")
            return super().finish(pb)

    rig = _Rig(ScriptedBackend())
    rig.stage.runner = Broken(ScriptedBackend())
    rig.batcher.offer(_job("bad", 0, rig.released))
    rig.batcher.end_of_stream("bad")
    await asyncio.sleep(0)
    run = asyncio.create_task(rig.stage.run())
    while not rig.drops:
        await asyncio.sleep(0.01)
    rig.batcher.offer(_job("good", 0, rig.released))
    await rig.batcher.close()
    await asyncio.wait_for(run, 20)
    rig.stage.close()
    assert rig.drops == [("bad", 0, "worker error")] and ("bad", 0) in rig.released
    assert rig.order() == [("bad", "end"), ("good", 0)]  # the marker still arrives; the next batch is scored


async def test_a_hung_batch_shows_as_in_flight_and_the_watchdog_marks_the_model_down() -> None:
    gate = threading.Event()

    class Hung(ScriptedBackend):
        def answer(self, clips):  # type: ignore[no-untyped-def]
            gate.wait(20)
            return [ANOMALOUS for _ in clips]

    rig = _Rig(Hung(), down_after_s=0.5)
    rig.batcher.offer(_job("a", 0, rig.released))
    run = asyncio.create_task(rig.stage.run())
    try:
        while rig.stage.inflight_s() is None:
            await asyncio.sleep(0.01)
        assert rig.stage.inflight_s() is not None
        rig.stage.stalled(0.1)  # under down_after_s: nothing to say yet
        assert rig.published == []
        rig.stage.stalled(0.6)
        assert rig.health.state.value == "down" and "no answer for over 0.5 s" in rig.health.reason
        assert [m.payload.state for m in rig.published if isinstance(m.payload, ModelRecord)] == ["down"]
    finally:
        gate.set()
        await rig.batcher.close()
        await asyncio.wait_for(run, 20)
        rig.stage.close()
    assert rig.stage.inflight_s() is None and rig.health.state.value == "ok"  # the answer came: ok again


async def test_a_verdict_one_token_cannot_tell_holds_its_cameras_later_segments_until_its_answer() -> None:
    from corevad.models import ReplayBackend
    from corevad_stream.entities import DescriptionUpdate

    recorded = {"a": ["Anomalous scenes.\nA man breaks in.", "uh... hard to say", "Normal scenes.\nA hallway."],
                "b": ["Normal scenes.\nA road.", "Anomalous scenes.\nA car burns."]}
    rig = _Rig(ReplayBackend(recorded, describe="deferred"))
    rig.batcher.max_batch = 8
    for cam, n in (("a", 3), ("b", 2)):
        for i in range(n):
            rig.batcher.offer(SegmentJob(camera=cam, index=i, start=float(i), end=i + 1.0, clock=i + 1.0, n_frames=30))
        rig.batcher.end_of_stream(cam)
    await rig.batcher.close()
    await asyncio.wait_for(rig.stage.run(), 20)
    rig.stage.close()
    seen = [("u", i.camera, i.index) if isinstance(i, DescriptionUpdate) else ("r", *o)
            for i, o in zip(rig.delivered, rig.order_all(), strict=True)]
    first = [s for s in seen if s[0] == "r"]
    # a#1's verdict waits for its whole answer, and a#2 waits behind it; b and a#0 go out at once.
    assert first.index(("r", "a", 1)) > max(first.index(("r", "b", 1)), first.index(("r", "a", 0)))
    assert first.index(("r", "a", 2)) > first.index(("r", "a", 1))
    assert [s for s in seen if s[0] == "u"] == [("u", "a", 0), ("u", "b", 1)]
    results = {(r.job.camera, r.job.index): r for r in rig.delivered if isinstance(r, SegmentResult)}
    assert results[("a", 1)].answered and not results[("a", 1)].verdict.parsed  # its answer, read as before
    assert results[("a", 0)].description_pending and results[("a", 0)].verdict.text == "Anomalous scenes."
    assert not results[("a", 2)].description_pending and results[("a", 2)].verdict.text == "Normal scenes."
    assert [s[2] for s in seen[-2:]] == ["end", "end"] and "end" not in [s[2] for s in seen[:-2]]
