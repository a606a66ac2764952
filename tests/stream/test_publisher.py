"""The publisher alone: one lane per sink, a slow or failing sink stalls nobody, lifecycle kinds are kept."""

from __future__ import annotations

import asyncio

from corevad_stream.messages import Message
from corevad_stream.publisher import Publisher
from corevad_stream.sinks.memory import MemorySink


class _Gated(MemorySink):
    """A sink that does not return from send() until its gate opens (a stuck broker or disk)."""

    def __init__(self) -> None:
        super().__init__(name="gated")
        self.gate = asyncio.Event()

    async def send(self, message: Message) -> None:
        await self.gate.wait()
        await super().send(message)


class _Failing(MemorySink):
    async def send(self, message: Message) -> None:
        raise OSError("disk full")


def _score(i: int) -> Message:
    return Message("score", {"index": i}, camera="c")


async def test_a_stuck_sink_does_not_stall_the_others_and_loses_droppable_messages_first() -> None:
    fast, stuck = MemorySink(name="fast"), _Gated()
    pub = Publisher([fast, stuck], bound=3)
    async with asyncio.TaskGroup() as tg:
        pub.start(tg)
        for msg in [Message("state", "anomalous", camera="c"), *map(_score, range(5)),
                    Message("events", {"type": "new"})]:
            pub.publish(msg)
            await asyncio.sleep(0)  # the fast lane keeps up message by message
        await fast.wait_for(lambda ms: len(ms) == 7, timeout=10)
        assert pub.dropped == 3  # only the stuck lane overflowed its bound (3 scores) ...
        stuck.gate.set()
        pub.close()
    # ... and never with lifecycle messages: the oldest scores went first.
    assert [(m.kind, m.payload) for m in stuck.messages] == [
        ("state", "anomalous"), ("score", {"index": 3}), ("score", {"index": 4}), ("events", {"type": "new"})]
    assert [m.kind for m in fast.messages].count("score") == 5


async def test_a_failing_sink_is_counted_and_the_others_still_get_everything() -> None:
    good, bad = MemorySink(name="good"), _Failing(name="bad")
    pub = Publisher([bad, good])
    async with asyncio.TaskGroup() as tg:
        pub.start(tg)
        pub.publish_all([_score(i) for i in range(4)])
        pub.close()
    assert pub.errors == 4 and len(good.messages) == 4
