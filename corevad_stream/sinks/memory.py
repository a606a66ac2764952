"""A sink that keeps messages in memory (programmatic use: replay, tests, notebooks), in their wire form."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..messages import Message


class MemorySink:
    """Collects every message in .messages, serialised (payloads as the JSON sinks write them); wait_for()
    awaits a condition on them."""

    def __init__(self, *, name: str = "memory", limit: int | None = None) -> None:
        self.name = name
        self.limit = limit
        self.messages: list[Message] = []
        self._changed = asyncio.Event()

    async def __aenter__(self) -> MemorySink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, message: Message) -> None:
        self.messages.append(message.serialised())
        if self.limit is not None and len(self.messages) > self.limit:
            del self.messages[: len(self.messages) - self.limit]
        self._changed.set()

    def of(self, kind: str, camera: str | None = None) -> list[Message]:
        return [m for m in self.messages if m.kind == kind and (camera is None or m.camera == camera)]

    async def wait_for(self, pred: Callable[[list[Message]], bool], timeout: float = 30.0) -> None:
        async def _loop() -> None:
            while not pred(self.messages):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_loop(), timeout)
