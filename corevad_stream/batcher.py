"""Batch segments from all cameras for the one model worker, fairly, with a bounded backlog.

Each camera has its own bounded queue; batches take the oldest segment of each camera in turn
(round robin from a rotating start), so a busy camera never starves a quiet one. When segments come in
faster than the model answers, the camera's overload policy decides: drop_oldest keeps the freshest
segments (live), stride keeps every k-th segment of a backlogged camera, block makes the source wait
(lossless replay). Every drop is reported through on_drop and counted by the caller.
A camera's end-of-stream marker (end_of_stream()) queues behind its segments, bypasses every bound and is
never dropped, so it leaves the batcher after the camera's last surviving segment.
Sources hand segments over with submit(), from their own threads: it returns at once for the drop
policies, and for block it waits (the source thread, never the loop) until there is room or intake stops.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable

from .entities import OverloadPolicy, SegmentJob

DropCallback = Callable[[SegmentJob, str], None]
SubmitCallback = Callable[[SegmentJob], None]
_MAX_STRIDE = 16
_BLOCKED_POLL_S = 0.25  # how often a blocked submit looks whether intake stopped (shutdown, camera removed)


class Batcher:
    """Per-camera bounded queues feeding next_batch(). Every method but submit() runs on the event loop.

    on_submit: called on the loop for every segment a source submits, before the policy sees it (the
    caller's in-flight bookkeeping); on_drop: for every segment dropped, with the reason.
    """

    def __init__(self, *, max_batch: int, max_wait_s: float, max_pending_per_camera: int,
                 max_pending_total: int, on_drop: DropCallback,
                 default_policy: OverloadPolicy = OverloadPolicy.DROP_OLDEST,
                 on_submit: SubmitCallback | None = None) -> None:
        if max_batch < 1 or max_pending_per_camera < 1 or max_pending_total < 1:
            raise ValueError("max_batch, max_pending_per_camera and max_pending_total must be >= 1")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.per_camera = max_pending_per_camera
        self.total_cap = max_pending_total
        self.on_drop = on_drop
        self.default_policy = OverloadPolicy(default_policy)
        self.on_submit = on_submit
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):  # built off the loop (a test): submit() is not used then
            self._loop = asyncio.get_running_loop()
        self._intake_closed = threading.Event()
        self._stopped_cameras: set[str] = set()
        self._queues: dict[str, deque[SegmentJob]] = {}
        self._policy: dict[str, OverloadPolicy] = {}
        self._stride: dict[str, int] = {}
        self._seen: dict[str, int] = {}
        self._order: list[str] = []
        self._turn = 0
        self._total = 0
        self._markers = 0
        self._closed = False
        # Events, not a Condition: every waiter re-checks its predicate, and setters stay synchronous.
        self._items = asyncio.Event()
        self._room = asyncio.Event()

    def add_camera(self, camera: str, policy: OverloadPolicy | None = None) -> None:
        if camera not in self._queues:
            self._queues[camera] = deque()
            self._order.append(camera)
            self._stride[camera] = 1
            self._seen[camera] = 0
        self._policy[camera] = OverloadPolicy(policy) if policy is not None else self.default_policy
        self._stopped_cameras.discard(camera)

    def remove_camera(self, camera: str) -> None:
        """Forget a camera; what of it still waits (a model that did not drain in time) is dropped."""
        for waiting in self._queues.pop(camera, deque()):
            self._total -= 1
            if waiting.end_of_stream:
                self._markers -= 1
            else:
                self._drop(waiting, "camera removed")
        if camera in self._order:
            self._order.remove(camera)
            self._turn = 0
        for d in (self._policy, self._stride, self._seen):
            d.pop(camera, None)

    def drop_waiting(self, camera: str, reason: str) -> int:
        """Drop the camera's segments still waiting (a disarmed camera: no model time); its end marker stays."""
        q = self._queues.get(camera)
        if not q:
            return 0
        keep = deque(j for j in q if j.end_of_stream)
        dropped = [j for j in q if not j.end_of_stream]
        self._queues[camera] = keep
        self._total -= len(dropped)
        for job in dropped:
            self._drop(job, reason)
        if dropped:
            self._room.set()
        return len(dropped)

    def stop_intake(self, camera: str | None = None) -> None:
        """Thread-safe: later submits (of `camera`, or of every camera) are dropped, blocked ones give up."""
        if camera is None:
            self._intake_closed.set()
        else:
            self._stopped_cameras.add(camera)

    def _intake_open(self, camera: str) -> bool:
        return not self._intake_closed.is_set() and camera not in self._stopped_cameras

    def submit(self, job: SegmentJob) -> None:
        """Hand a segment over from a source thread (thread-safe; never call it on the loop).

        Drop policies: returns at once (the loop offers it). block: waits until the batcher has room or
        intake stops (then the segment is dropped as "shutdown"), polling so that a stop is noticed.
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError("Batcher.submit needs a batcher built on a running event loop")
        if not self._intake_open(job.camera):
            job.release()
            loop.call_soon_threadsafe(self._submitted_late, job)
            return
        if self.policy(job.camera) is not OverloadPolicy.BLOCK:
            loop.call_soon_threadsafe(self._offer_submitted, job)
            return
        fut = asyncio.run_coroutine_threadsafe(self._put_submitted(job), loop)
        while True:
            try:
                fut.result(_BLOCKED_POLL_S)
                return
            except concurrent.futures.TimeoutError:
                if not self._intake_open(job.camera):
                    fut.cancel()  # _put_submitted drops it
                    return

    def _submitted_late(self, job: SegmentJob) -> None:
        if self.on_submit is not None:
            self.on_submit(job)
        self.on_drop(job, "shutdown")

    def _offer_submitted(self, job: SegmentJob) -> None:
        if self.on_submit is not None:
            self.on_submit(job)
        self.offer(job)

    async def _put_submitted(self, job: SegmentJob) -> None:
        if self.on_submit is not None:
            self.on_submit(job)
        try:
            await self.put(job)
        except asyncio.CancelledError:
            self._drop(job, "shutdown")
            raise

    def policy(self, camera: str) -> OverloadPolicy:
        return self._policy.get(camera, self.default_policy)

    def pending(self, camera: str | None = None) -> int:
        """Segments waiting (end-of-stream markers not counted)."""
        if camera is None:
            return self._total - self._markers
        return sum(not j.end_of_stream for j in self._queues.get(camera, ()))

    def stride(self, camera: str) -> int:
        return self._stride.get(camera, 1)

    def offer(self, job: SegmentJob) -> None:
        """Non-blocking put for the drop policies (call on the event loop)."""
        if self._closed:
            self._drop(job, "shutdown")
            return
        if job.camera not in self._queues:
            self.add_camera(job.camera)
        cam = job.camera
        policy = self.policy(cam)
        if policy is OverloadPolicy.STRIDE:
            seen = self._seen[cam]
            self._seen[cam] = seen + 1
            if seen % self._stride[cam]:
                self._drop(job, "stride")
                return
        q = self._queues[cam]
        if len(q) >= self.per_camera:
            if policy is OverloadPolicy.STRIDE:
                self._stride[cam] = min(_MAX_STRIDE, self._stride[cam] * 2)
            self._pop_drop(cam, "overload")
        if self.pending() >= self.total_cap:
            # The global bound: take from the camera with the longest backlog, so cameras stay fair.
            busiest = max(self._order, key=lambda c: (self.pending(c), -self._queues[c][0].enqueued
                                                      if self.pending(c) else 0))
            self._pop_drop(busiest, "overload")
        self._append(job)

    def end_of_stream(self, camera: str) -> None:
        """Queue the camera's end marker behind its segments (also after close(): it drains like them)."""
        if camera not in self._queues:
            self.add_camera(camera)
        self._markers += 1
        self._append(SegmentJob.end_marker(camera))

    async def put(self, job: SegmentJob) -> None:
        """Lossless put: wait for room (policy block). Other policies behave like offer()."""
        if job.camera not in self._queues:
            self.add_camera(job.camera)
        if self.policy(job.camera) is not OverloadPolicy.BLOCK:
            self.offer(job)
            return
        q = self._queues[job.camera]
        await _wait(self._room, lambda: self._closed or (len(q) < self.per_camera and self.pending() < self.total_cap))
        if self._closed:
            self._drop(job, "shutdown")
            return
        self._append(job)

    async def next_batch(self) -> list[SegmentJob]:
        """Wait for a segment, then up to max_wait_s for more (up to max_batch). [] once closed and empty."""
        await _wait(self._items, lambda: self._total > 0 or self._closed)
        if self._total < self.max_batch and not self._closed and self.max_wait_s > 0:
            try:
                await asyncio.wait_for(_wait(self._items, lambda: self._total >= self.max_batch or self._closed),
                                       self.max_wait_s)
            except TimeoutError:
                pass
        batch = self._take(self.max_batch)
        self._room.set()
        return batch

    async def close(self) -> None:
        """No more input: waiting puts give up; next_batch drains what is left, then returns []."""
        self._intake_closed.set()
        self._closed = True
        self._items.set()
        self._room.set()

    def drain(self) -> list[SegmentJob]:
        """Remove everything still waiting (shutdown without flushing)."""
        return self._take(self._total)

    def _take(self, n: int) -> list[SegmentJob]:
        batch: list[SegmentJob] = []
        cams = self._order
        while len(batch) < n and self._total > 0:
            for k in range(len(cams)):
                cam = cams[(self._turn + k) % len(cams)]
                q = self._queues[cam]
                if q:
                    job = q.popleft()
                    batch.append(job)
                    self._total -= 1
                    self._markers -= job.end_of_stream
                    if not q and self._stride[cam] > 1:
                        self._stride[cam] //= 2  # caught up: relax the stride
                    if len(batch) == n:
                        self._turn = (self._turn + k + 1) % len(cams)
                        break
            else:
                self._turn = (self._turn + 1) % len(cams)
        return batch

    def _append(self, job: SegmentJob) -> None:
        job.enqueued = time.monotonic()
        self._queues[job.camera].append(job)
        self._total += 1
        self._items.set()

    def _pop_drop(self, camera: str, reason: str) -> None:
        q = self._queues[camera]
        if q and not q[0].end_of_stream:  # a marker is last in its queue: nothing before it to drop
            self._total -= 1
            self._drop(q.popleft(), reason)

    def _drop(self, job: SegmentJob, reason: str) -> None:
        job.release()
        self.on_drop(job, reason)


async def _wait(event: asyncio.Event, pred: Callable[[], bool]) -> None:
    while not pred():
        event.clear()
        await event.wait()
