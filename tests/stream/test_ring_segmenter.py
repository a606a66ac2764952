"""Ring buffer leasing and 1-second segmenting with sampled frames resized into ring memory."""

from __future__ import annotations

import numpy as np
import pytest

from corevad.segments import sample_indices
from corevad_stream.entities import SegmentJob
from corevad_stream.ring import FrameRing
from corevad_stream.segmenter import Segmenter, prepare_frame


def test_ring_leases_preallocated_slots_and_refuses_when_full() -> None:
    ring = FrameRing(3, 8, size=16)
    assert ring.nbytes == 3 * 8 * 16 * 16 * 3
    slots = [ring.acquire() for _ in range(3)]
    assert sorted(slots) == [0, 1, 2]  # type: ignore[type-var]
    assert ring.acquire() is None
    views = [ring.view(s) for s in slots]  # type: ignore[arg-type]
    assert all(np.shares_memory(v, ring.view(s)) for v, s in zip(views, slots, strict=True))  # type: ignore[arg-type]
    ring.release(slots[1])  # type: ignore[arg-type]
    assert ring.acquire() == slots[1]
    with pytest.raises(ValueError, match="not leased"):
        ring.release(7)


def _frame(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A BGR frame whose colour encodes its index (so the sampled ones can be recognised after resizing)."""
    f = np.zeros((h, w, 3), dtype=np.uint8)
    f[..., 0] = i % 256  # blue
    f[..., 2] = 255 - i % 256  # red
    return f


def _run(seg: Segmenter, n: int, fps: float = 30.0) -> None:
    seg.start_stream(fps)
    for i in range(n):
        seg.push(_frame(i) if seg.wants() else None, 1000.0 + i / fps)


def test_segments_are_one_second_with_the_methods_sampled_frames_in_rgb() -> None:
    ring = FrameRing(8, 8, size=32)
    out: list[SegmentJob] = []
    seg = Segmenter("cam", ring=ring, frames_per_segment=8, emit=out.append)
    _run(seg, 75)
    seg.flush_partial(1000.0 + 75 / 30)
    assert [j.index for j in out] == [0, 1, 2]
    assert [j.n_frames for j in out] == [30, 30, 15]
    assert out[0].start == pytest.approx(1000.0) and out[0].end == pytest.approx(1000.0 + 29 / 30)
    assert out[1].clock == pytest.approx(2.0)
    for job in out[:2]:
        assert job.frames is not None and job.frames.shape == (8, 32, 32, 3)
        expected = [job.index * 30 + k for k in sample_indices(0, 30, 8)]
        # RGB order: channel 0 is the source's red, channel 2 its blue (= frame index).
        assert list(job.frames[:, 0, 0, 2]) == expected
        assert list(job.frames[:, 0, 0, 0]) == [255 - e for e in expected]
        assert np.array_equal(job.frames[0], prepare_frame(_frame(expected[0]), 32))
    partial = out[2].frames
    assert partial is not None and 1 <= partial.shape[0] < 8
    assert list(partial[:, 0, 0, 2]) == [60 + k for k in sample_indices(0, 30, 8) if k < 15]


def test_other_frame_rates_cut_at_one_second() -> None:
    out: list[SegmentJob] = []
    seg = Segmenter("cam", ring=FrameRing(6, 8, size=16), frames_per_segment=8, emit=out.append)
    _run(seg, 25, fps=5)
    assert [j.n_frames for j in out] == [5] * 5
    assert all(j.frames is not None and j.frames.shape[0] == 5 for j in out)  # all 5 frames sampled


def test_no_per_frame_allocation_frames_live_in_the_ring() -> None:
    ring = FrameRing(4, 8, size=16)
    out: list[SegmentJob] = []
    seg = Segmenter("cam", ring=ring, frames_per_segment=8, emit=out.append)
    _run(seg, 90)
    slot_views = [ring.view(s) for s in range(ring.slots)]
    for job in out:
        assert job.frames is not None
        assert any(np.shares_memory(job.frames, v) for v in slot_views)
    assert ring.free == ring.slots - 3
    for job in out:
        job.release()
        job.release()  # idempotent
    assert ring.free == ring.slots


def test_full_ring_drops_the_segment_and_reports_it() -> None:
    ring = FrameRing(2, 8, size=16)
    out: list[SegmentJob] = []
    lost: list[int] = []
    seg = Segmenter("cam", ring=ring, frames_per_segment=8, emit=out.append, on_no_slot=lost.append)
    _run(seg, 120)  # nobody releases: slots run out after two segments
    assert [j.index for j in out] == [0, 1]
    assert lost == [2, 3]


def test_abandon_on_reconnect_skips_the_partial_segment_index() -> None:
    ring = FrameRing(4, 8, size=16)
    out: list[SegmentJob] = []
    seg = Segmenter("cam", ring=ring, frames_per_segment=8, emit=out.append)
    _run(seg, 40)  # one full segment + 10 frames
    _run(seg, 30)  # start_stream() abandons the partial one
    assert [j.index for j in out] == [0, 2]
    assert ring.free == ring.slots - 2


def test_frameless_segments_carry_no_frames() -> None:
    out: list[SegmentJob] = []
    seg = Segmenter("cam", ring=None, frames_per_segment=8, emit=out.append)
    _run(seg, 60)
    assert [(j.index, j.frames) for j in out] == [(0, None), (1, None)]


def test_a_lossless_acquire_waits_for_a_released_slot_and_wakes_with_none_when_the_ring_closes() -> None:
    import threading

    ring = FrameRing(1, 1, size=4)
    held = ring.acquire()
    assert held is not None and ring.acquire() is None  # the live policies' answer: no slot now
    got: list[int | None] = []
    waiter = threading.Thread(target=lambda: got.append(ring.acquire(wait=True)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and got == []  # waits: the slot is still leased downstream
    ring.release(held)
    waiter.join(5)
    assert got == [held]
    second = threading.Thread(target=lambda: got.append(ring.acquire(wait=True)))
    second.start()
    second.join(0.3)
    assert second.is_alive()
    ring.close()  # the camera stops: a waiting source must not hang
    second.join(5)
    assert not second.is_alive() and got == [held, None] and ring.closed
