"""Batcher: fair batches across cameras, bounded backlog, named drop policies, lossless block mode."""

from __future__ import annotations

import asyncio

import pytest

from corevad_stream.batcher import Batcher
from corevad_stream.config import OverloadPolicy
from corevad_stream.entities import SegmentJob


def job(cam: str, i: int, released: list[tuple[str, int]] | None = None) -> SegmentJob:
    rel = (lambda: released.append((cam, i))) if released is not None else None
    return SegmentJob(camera=cam, index=i, start=float(i), end=float(i + 1), clock=float(i + 1), n_frames=30,
                      _release=rel)


def make(policy: OverloadPolicy = OverloadPolicy.DROP_OLDEST, **kw: int | float
         ) -> tuple[Batcher, list[tuple[str, int, str]]]:
    drops: list[tuple[str, int, str]] = []
    args = {"max_batch": 4, "max_wait_s": 0.0, "max_pending_per_camera": 3, "max_pending_total": 100} | kw
    b = Batcher(on_drop=lambda j, why: drops.append((j.camera, j.index, why)), default_policy=policy,
                **args)  # type: ignore[arg-type]
    return b, drops


async def test_batches_take_cameras_in_turn_so_a_busy_camera_cannot_starve_others() -> None:
    b, drops = make(max_pending_per_camera=10, max_batch=3)
    for i in range(6):
        b.offer(job("busy", i))
    b.offer(job("quiet1", 0))
    b.offer(job("quiet2", 0))
    first = await b.next_batch()
    assert sorted(j.camera for j in first) == ["busy", "quiet1", "quiet2"]
    assert [j.index for j in first if j.camera == "busy"] == [0]  # oldest first within a camera
    rest = [(j.camera, j.index) for j in await b.next_batch()]
    assert rest == [("busy", 1), ("busy", 2), ("busy", 3)]
    assert drops == []


async def test_drop_oldest_bounds_each_camera_and_counts_every_drop() -> None:
    released: list[tuple[str, int]] = []
    b, drops = make(OverloadPolicy.DROP_OLDEST)
    for i in range(10):
        b.offer(job("a", i, released))
    assert b.pending("a") == 3
    assert [d[1] for d in drops] == list(range(7)) and {d[2] for d in drops} == {"overload"}
    assert released == [("a", i) for i in range(7)]  # dropped segments give their ring slot back
    assert [j.index for j in await b.next_batch()] == [7, 8, 9]  # the freshest survive


async def test_global_bound_drops_from_the_longest_backlog() -> None:
    b, drops = make(max_pending_per_camera=10, max_pending_total=5)
    for i in range(4):
        b.offer(job("a", i))
    b.offer(job("b", 0))
    b.offer(job("b", 1))  # total full: the busiest camera (a) pays
    assert drops == [("a", 0, "overload")]
    assert b.pending() == 5 and b.pending("b") == 2


async def test_stride_keeps_every_kth_segment_while_behind_and_relaxes_after() -> None:
    b, drops = make(OverloadPolicy.STRIDE, max_pending_per_camera=2)
    for i in range(3):
        b.offer(job("a", i))  # third overflows -> stride 2
    assert b.stride("a") == 2
    for i in range(3, 9):
        b.offer(job("a", i))
    reasons = [d[2] for d in drops]
    assert "stride" in reasons and "overload" in reasons
    assert b.pending("a") <= 2
    behind = b.stride("a")
    assert behind >= 2
    kept = [j.index for j in await b.next_batch()]
    assert len(kept) == 2 and b.stride("a") == behind // 2  # emptied queue halves the stride
    assert len(drops) + len(kept) == 9  # every segment is either kept or counted


async def test_block_policy_is_lossless_and_waits_for_room() -> None:
    b, drops = make(OverloadPolicy.BLOCK, max_pending_per_camera=2, max_batch=1)
    await b.put(job("r", 0))
    await b.put(job("r", 1))
    third = asyncio.create_task(b.put(job("r", 2)))
    await asyncio.sleep(0.05)
    assert not third.done() and b.pending("r") == 2
    got = [j.index for j in await b.next_batch()]
    await asyncio.wait_for(third, 5)
    got += [j.index for _ in range(2) for j in await b.next_batch()]
    assert got == [0, 1, 2] and drops == []


async def test_max_wait_collects_a_batch_then_close_drains() -> None:
    b, _ = make(max_wait_s=0.5, max_batch=3)
    b.offer(job("a", 0))

    async def later() -> None:
        await asyncio.sleep(0.05)
        b.offer(job("b", 0))
        b.offer(job("c", 0))

    offers = asyncio.create_task(later())  # held: the loop keeps only a weak reference to a task
    batch = await asyncio.wait_for(b.next_batch(), 5)
    assert len(batch) == 3  # filled before max_wait ran out
    await offers
    b.offer(job("a", 1))
    await b.close()
    assert [j.index for j in await b.next_batch()] == [1]
    assert await b.next_batch() == []


@pytest.mark.parametrize("bad", [{"max_batch": 0}, {"max_pending_per_camera": 0}])
def test_bad_bounds_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):  # the error names the field
        make(**bad)


async def test_submit_from_a_source_thread_never_waits_under_a_drop_policy() -> None:
    submitted: list[int] = []
    b, drops = make(OverloadPolicy.DROP_OLDEST, max_pending_per_camera=2)
    b.on_submit = lambda j: submitted.append(j.index)
    released: list[tuple[str, int]] = []

    def source() -> None:  # the camera's thread: 5 segments at once into a bound of 2
        for i in range(5):
            b.submit(job("c", i, released))

    await asyncio.wait_for(asyncio.to_thread(source), 10)
    while len(submitted) < 5:  # the loop applies them in order
        await asyncio.sleep(0.01)
    assert submitted == [0, 1, 2, 3, 4] and b.pending("c") == 2
    assert drops == [("c", 0, "overload"), ("c", 1, "overload"), ("c", 2, "overload")]
    assert released == [("c", 0), ("c", 1), ("c", 2)]


async def test_a_blocked_submit_waits_for_room_and_gives_up_when_intake_stops() -> None:
    b, drops = make(OverloadPolicy.BLOCK, max_pending_per_camera=1, max_batch=1)
    released: list[tuple[str, int]] = []
    first = asyncio.to_thread(b.submit, job("c", 0, released))
    await asyncio.wait_for(first, 10)
    second = asyncio.ensure_future(asyncio.to_thread(b.submit, job("c", 1, released)))
    await asyncio.sleep(0.5)
    assert not second.done() and b.pending("c") == 1  # lossless: the source thread waits
    assert [j.index for j in await b.next_batch()] == [0]  # room: the waiting segment goes in
    await asyncio.wait_for(second, 10)
    assert b.pending("c") == 1 and drops == []
    third = asyncio.ensure_future(asyncio.to_thread(b.submit, job("c", 2, released)))
    await asyncio.sleep(0.3)
    assert not third.done()
    b.stop_intake("c")  # the camera is being removed: a blocked source must not hang
    await asyncio.wait_for(third, 10)
    while not drops:
        await asyncio.sleep(0.01)
    assert drops == [("c", 2, "shutdown")] and ("c", 2) in released
    b.submit(job("c", 3, released))  # after the stop: dropped at once, from any thread
    while len(drops) < 2:
        await asyncio.sleep(0.01)
    assert drops[-1] == ("c", 3, "shutdown")


async def test_remove_camera_drops_what_still_waits_and_forgets_the_camera() -> None:
    b, drops = make(max_pending_per_camera=5)
    for i in range(2):
        b.offer(job("gone", i))
    b.end_of_stream("gone")
    b.offer(job("stays", 0))
    b.remove_camera("gone")
    assert drops == [("gone", 0, "camera removed"), ("gone", 1, "camera removed")]
    assert b.pending() == 1 and [(j.camera, j.index) for j in await b.next_batch()] == [("stays", 0)]
