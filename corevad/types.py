"""Plain data types shared by every step of the method."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class Verdict:
    """One parsed VLM answer for one segment.

    ``label`` is 1 for "Anomalous scenes.", 0 for "Normal scenes." and 0 when the answer could not be
    parsed (the paper scores unparsed answers as normal); ``parsed`` says which case it was.
    """

    label: int
    description: str
    raw: str
    parsed: bool

    @property
    def text(self) -> str:
        """The single-line form the authors store: "<verdict line> <description>"."""
        head = "Anomalous scenes." if self.label else "Normal scenes."
        return f"{head} {self.description}".strip() if self.parsed else self.raw.strip()


@dataclass(frozen=True, slots=True)
class Segment:
    """A 30-frame (1 s) segment: frames [start, end) of its video and the frames sampled for the VLM."""

    index: int
    start: int
    end: int
    sampled: np.ndarray = field(compare=False)

    @property
    def n_frames(self) -> int:
        return self.end - self.start
