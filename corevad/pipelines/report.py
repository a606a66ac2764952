"""What the offline pipelines share: the run report, the progress protocol, and small per-video helpers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from ..errors import CorevadError, DataError
from ..files import MIB, read_text_checked

# A resume state file holds a whole benchmark's answers: large, but bounded like every file we read.
STATE_FILE_LIMIT = 512 * MIB

S = TypeVar("S", list[Any], np.ndarray)


@dataclass
class RunReport:
    """What a pipeline did: per-video outcomes collected for the final summary."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unparsed: int = 0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


class PipelineProgress(Protocol):
    """Where a pipeline reports its progress: videos, and work units (frames, segments) of the current one."""

    def begin(self, videos: int) -> None:
        """Before the first video: how many there are."""

    def video(self, name: str, *, units: int | None, done: int = 0) -> None:
        """A video starts: its expected units (None: unknown) and how many a checkpoint already holds."""

    def advance_units(self, n: int) -> None:
        """n more units of the current video are done."""

    def video_done(self) -> None:
        """One video is finished, skipped as already done, or failed."""

    def failed(self, name: str, error: str) -> None:
        """A video failed (it is skipped; the run goes on)."""


class NoProgress:
    """A PipelineProgress that shows nothing (the default for library callers)."""

    def begin(self, videos: int) -> None:
        pass

    def video(self, name: str, *, units: int | None, done: int = 0) -> None:
        pass

    def advance_units(self, n: int) -> None:
        pass

    def video_done(self) -> None:
        pass

    def failed(self, name: str, error: str) -> None:
        pass


def error_text(exc: BaseException) -> str:
    """Our errors by their message; anything else with its type, so a bug is told from bad data."""
    return str(exc) if isinstance(exc, CorevadError) else f"{type(exc).__name__}: {exc}"


def fit_length(seq: S, n: int) -> S:
    """Cut to n, or pad by repeating the last item (the decoder lost or gained a few frames)."""
    if len(seq) >= n:
        return seq[:n]
    if isinstance(seq, np.ndarray):
        return np.concatenate([seq, np.repeat(seq[-1:], n - len(seq), axis=0)], axis=0)
    return list(seq) + [seq[-1]] * (n - len(seq))


def one_line(text: str) -> str:
    """Collapse whitespace, so every stored answer is a single line like the authors'."""
    return " ".join(text.split())


def read_state(path: Path, default: Any) -> Any:
    """A resume state file (JSON) written by an earlier run, or default when there is none."""
    if not path.is_file():
        return default
    try:
        return json.loads(read_text_checked(path, limit=STATE_FILE_LIMIT, what="state file", allow_empty=True)
                          or "null")
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); move it away to start over") from exc
