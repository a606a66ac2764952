"""The method package's small error hierarchy."""

from __future__ import annotations


class CorevadError(Exception):
    """Base class of every error corevad raises on purpose."""


class DataError(CorevadError):
    """A benchmark, annotation or responses file is malformed or inconsistent."""


class AnnotationError(DataError):
    """A malformed line in an annotation file; carries the file and the 1-based line number."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line


class ResponseCountError(DataError):
    """A video's response count does not equal ceil(frames / segment_len), or the video is missing."""

    def __init__(self, video: str, expected: int, got: int | None) -> None:
        if got is None:
            msg = f"video {video!r} is missing from the responses file (expected {expected} responses)"
        else:
            msg = f"video {video!r} has {got} responses but its {expected} segments need {expected}"
        super().__init__(msg)
        self.video = video
        self.expected = expected
        self.got = got


class FeatureError(DataError):
    """A CLIP feature file is missing or has the wrong shape."""


class ModelError(CorevadError):
    """A model could not be loaded or failed to answer.

    kind: a short, stable category for counting failures (timeout, connection, rate_limited, server_error,
    client_error, malformed, error).
    """

    def __init__(self, message: str, *, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind
