"""Per-camera ring buffer: preallocated slots of sampled frames, leased to segments until the model is done.

Only the 8 sampled frames of a segment are stored (at model size), not all 30: that is what the models
need, and it keeps a camera's buffer at slots x 8 x S x S x 3 bytes (4.8 MB per slot at 448 px).
Nothing is allocated per frame in the steady state: frames are resized straight into slot memory.
A lossless camera (overload policy block) waits for a slot instead of losing the segment: with every slot
leased downstream, `rate: fast` + `block` once dropped 46 of 60 segments of a file without a log line.
"""

from __future__ import annotations

import threading

import numpy as np


class FrameRing:
    """`slots` preallocated arrays of (frames_per_slot, size, size, 3) uint8, leased one segment at a time."""

    def __init__(self, slots: int, frames_per_slot: int, *, size: int) -> None:
        if slots < 1 or frames_per_slot < 1 or size < 1:
            raise ValueError(f"slots, frames_per_slot and size must be >= 1 (got {slots}, {frames_per_slot}, "
                             f"{size})")
        self._buf = np.empty((slots, frames_per_slot, size, size, 3), dtype=np.uint8)
        # Touch every page now (np.zeros would map them lazily): the camera's memory is committed up front
        # and stays flat for the whole run instead of creeping up as slots are first used.
        self._buf.fill(0)
        self._free = list(range(slots - 1, -1, -1))
        self._leased: set[int] = set()
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._closed = False

    @property
    def slots(self) -> int:
        return self._buf.shape[0]

    @property
    def nbytes(self) -> int:
        return int(self._buf.nbytes)

    @property
    def free(self) -> int:
        with self._lock:
            return len(self._free)

    @property
    def closed(self) -> bool:
        return self._closed

    def acquire(self, *, wait: bool = False) -> int | None:
        """Lease a free slot (oldest-released first, so the buffer is used round the ring); None if full.

        wait: block until a slot is released instead (a lossless camera); None only once the ring is closed.
        """
        with self._lock:
            while wait and not self._free and not self._closed:
                self._freed.wait()
            if not self._free or (wait and self._closed):
                return None
            slot = self._free.pop(0)
            self._leased.add(slot)
            return slot

    def release(self, slot: int) -> None:
        with self._lock:
            if slot not in self._leased:
                raise ValueError(f"slot {slot} is not leased")
            self._leased.remove(slot)
            self._free.append(slot)
            self._freed.notify()

    def close(self) -> None:
        """Wake every waiting acquire (it returns None): the camera is stopping."""
        with self._lock:
            self._closed = True
            self._freed.notify_all()

    def view(self, slot: int) -> np.ndarray:
        """The slot's memory (no copy)."""
        slot_view: np.ndarray = self._buf[slot]
        return slot_view
