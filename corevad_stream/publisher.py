"""Fan messages out to every sink, each behind its own bounded queue and task, so a slow sink stalls nobody.

Drop policy when a sink's queue is full: the oldest droppable message (score, stats, snapshot) goes
first; lifecycle messages (events, state, status, available) are never dropped here (the MQTT sink's
outbox keeps them across broker outages), so a queue can only overflow its bound with those.
A sink that raises is logged and counted at this boundary; the others carry on.
The publisher is also the one fence of a group member (corevad_stream/group.py): `gate` is asked before
every message, so a member whose lease on a camera lapsed publishes nothing more for it (counted, `fenced`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence

from .messages import Message, kinds_where
from .sinks.base import Sink

log = logging.getLogger(__name__)

KEEP_KINDS = kinds_where("keep")


class _SinkLane:
    def __init__(self, sink: Sink, bound: int) -> None:
        self.sink = sink
        self.bound = bound
        self.queue: deque[Message] = deque()
        self.wake = asyncio.Event()
        self.closed = False
        self.dropped = 0
        self.errors = 0
        self.sent = 0

    def put(self, msg: Message) -> None:
        if len(self.queue) >= self.bound:
            victim = next((m for m in self.queue if m.kind not in KEEP_KINDS), None)
            if victim is not None:
                self.queue.remove(victim)
                self.dropped += 1
            elif msg.kind not in KEEP_KINDS:
                self.dropped += 1
                return
        self.queue.append(msg)
        self.wake.set()

    async def run(self) -> None:
        while True:
            while self.queue:
                msg = self.queue.popleft()
                try:
                    await self.sink.send(msg)
                    self.sent += 1
                except Exception:  # noqa: BLE001 - sink boundary: log, count, keep the others going
                    self.errors += 1
                    log.exception("sink %s failed to send a %s message", self.sink.name, msg.kind)
            if self.closed:
                return
            self.wake.clear()
            await self.wake.wait()


class Publisher:
    """publish(message) is synchronous and never blocks; run one lane task per sink.

    gate: None lets everything through; otherwise a message it refuses is counted and goes nowhere."""

    def __init__(self, sinks: Sequence[Sink], *, bound: int = 1000,
                 gate: Callable[[Message], bool] | None = None) -> None:
        self.lanes = [_SinkLane(s, bound) for s in sinks]
        self.gate = gate
        self.fenced = 0

    def publish(self, msg: Message) -> None:
        if self.gate is not None and not self.gate(msg):
            self.fenced += 1
            return
        for lane in self.lanes:
            lane.put(msg)

    def publish_all(self, msgs: Sequence[Message]) -> None:
        for m in msgs:
            self.publish(m)

    def start(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        return [tg.create_task(lane.run(), name=f"corevad[sink:{lane.sink.name}].send") for lane in self.lanes]

    def close(self) -> None:
        """Deliver what is queued, then let the lane tasks end."""
        for lane in self.lanes:
            lane.closed = True
            lane.wake.set()

    @property
    def dropped(self) -> int:
        return sum(lane.dropped for lane in self.lanes)

    @property
    def errors(self) -> int:
        return sum(lane.errors for lane in self.lanes)
