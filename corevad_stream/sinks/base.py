"""The sink protocol: where published messages go (MQTT, a JSONL file, ...)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..messages import Message


@runtime_checkable
class Sink(Protocol):
    """An outbound channel. Used as an async context manager by the app.

    send() must return quickly and must not raise because the far end is down: a sink that can lose
    its connection keeps messages (events at least) and delivers them in order once it is back.
    """

    name: str

    async def __aenter__(self) -> Sink: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def send(self, message: Message) -> None: ...
