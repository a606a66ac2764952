"""The runtime's small error hierarchy (standard-library errors pass through unwrapped)."""

from __future__ import annotations


class StreamError(Exception):
    """Base class of every error corevad_stream raises on purpose."""


class ConfigError(StreamError):
    """The YAML config is unreadable or invalid; the message names the file and the field."""


class SourceError(StreamError):
    """A camera could not be opened or read; carries the camera name and the (redacted) URL."""

    def __init__(self, camera: str, url: str, message: str) -> None:
        super().__init__(f"camera {camera!r} ({url}): {message}")
        self.camera = camera
        self.url = url


class ZoneError(StreamError):
    """A camera's zones do not fit its frames (a pixel zone past the frame's edge); names camera and zone."""

    def __init__(self, camera: str, zone: str, message: str) -> None:
        super().__init__(f"camera {camera!r}, zone {zone!r}: {message}")
        self.camera = camera
        self.zone = zone
