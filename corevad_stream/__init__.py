"""corevad_stream: the asyncio runtime that turns camera feeds into MQTT anomaly alerts."""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Public names -> defining module; imported on first use so `import corevad_stream.messages` stays light.
_EXPORTS = {
    "App": "app", "build_app": "app", "run": "app",
    "StreamConfig": "config", "CameraConfig": "config", "OverloadPolicy": "config", "load_config": "config",
    "config_from_dict": "config",
    "Message": "messages", "SegmentJob": "entities", "CameraStatus": "entities", "StatusChange": "entities",
    "StreamError": "errors", "ConfigError": "errors", "SourceError": "errors",
    "JsonlSink": "sinks.jsonl", "MemorySink": "sinks.memory", "redact": "redact",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'corevad_stream' has no attribute {name!r}")
