"""The event-store sink: every alert event, snapshot, status change and score into the sqlite event store.

Why a thread and a bounded queue: sqlite commits wait for the disk, and a slow disk must never stall
scoring. send() only enqueues; when the queue is full the message is dropped and counted (`dropped`), and a
write that fails is logged and counted (`errors`). Retention runs at start and every `prune_every_s`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from ..messages import Message, kinds_where
from ..store import EventStore, Retention

log = logging.getLogger(__name__)

_STORED_KINDS = kinds_where("store")
_STOP = object()


class EventStoreSink:
    """Sink writing to an EventStore from its own thread (keyword-only; `queue_size` bounds the backlog)."""

    name = "store"

    def __init__(self, path: Path, *, retention: Retention = Retention(), queue_size: int = 10_000,
                 prune_every_s: float = 3600.0) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.path = path
        self.retention = retention
        self.prune_every_s = prune_every_s
        self.store: EventStore | None = None
        self.written = 0
        self.dropped = 0
        self.errors = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None

    async def __aenter__(self) -> EventStoreSink:
        self.store = EventStore(self.path, retention=self.retention)
        self._thread = threading.Thread(target=self._run, name="corevad[store].writer", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        self._queue.put(_STOP)  # blocks only while the queue is full: the writer is draining it
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30.0)
        if self.store is not None and (self._thread is None or not self._thread.is_alive()):
            self.store.close()

    async def send(self, message: Message) -> None:
        if message.kind not in _STORED_KINDS:
            return
        try:
            self._queue.put_nowait((message, time.time()))
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.error("event store %s is behind: %d message(s) not stored so far", self.path, self.dropped)

    def _run(self) -> None:
        assert self.store is not None
        next_prune = 0.0
        while True:
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + self.prune_every_s
                try:
                    self.store.prune()
                except Exception as exc:  # noqa: BLE001 - the sink boundary: log, count, keep writing
                    self.errors += 1
                    log.error("event store %s: retention failed: %s", self.path, exc)
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                message, at = item
                self.store.write(message.kind, message.camera, message.json_payload(), at, alert_id=message.alert_id)
                self.written += 1
            except Exception as exc:  # noqa: BLE001 - same boundary
                self.errors += 1
                log.error("event store %s: cannot store a %s message: %s", self.path, item[0], exc)
