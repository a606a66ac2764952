"""A sink that appends every message as one JSON line (tests, replay, audit trails)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import IO, Any

from ..messages import Message


def message_record(msg: Message, prefix: str = "corevad") -> dict[str, Any]:
    """The JSON form of a message: topic, kind, camera, retain, time and payload (bytes as base64)."""
    payload: Any = msg.json_payload()
    if isinstance(payload, bytes):
        payload = {"base64": base64.b64encode(payload).decode("ascii"), "bytes": len(payload)}
    camera = msg.owner  # an alert event belongs to its camera
    if camera is None and msg.kind == "events" and isinstance(payload, dict):
        camera = payload.get("after", {}).get("camera")
    return {"t": time.time(), "topic": msg.topic(prefix), "kind": msg.kind, "camera": camera,
            "retain": msg.retain, "payload": payload}


class JsonlSink:
    """Append messages to a file, one JSON object per line, flushed per message (readable while running)."""

    def __init__(self, path: str | Path, *, kinds: set[str] | None = None, prefix: str = "corevad",
                 name: str = "jsonl") -> None:
        self.path = Path(path)
        self.kinds = set(kinds) if kinds else None
        self.prefix = prefix
        self.name = name
        self._fh: IO[str] | None = None

    async def __aenter__(self) -> JsonlSink:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    async def send(self, message: Message) -> None:
        if self._fh is None:
            raise RuntimeError(f"JsonlSink({self.path}) used outside its context")
        if self.kinds is not None and message.kind not in self.kinds:
            return
        self._fh.write(json.dumps(message_record(message, self.prefix), separators=(",", ":")) + "\n")
        self._fh.flush()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read back a JSONL sink file (ignores a torn last line)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
