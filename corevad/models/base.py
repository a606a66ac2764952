"""The small protocols every model adapter implements (heavy imports live in the adapters)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, slots=True)
class Clip:
    """One segment handed to a VLM backend.

    source: the video or camera name; index: the segment index within it (the replay backend answers
    by (source, index)); frames: the sampled frames as (k, H, W, 3) uint8 RGB, or None when replaying
    recorded answers without decoding video. context: the camera's scene context, which the backend adds to
    its prompt template through corevad.prompt.compose_prompt (None: the template as it is). Each clip carries
    its own, so one batch may mix cameras and every row still reads its own camera's prompt.
    """

    source: str
    index: int
    frames: np.ndarray | None
    context: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """A raw answer and, when the backend can tell, P(first line is "Anomalous" rather than "Normal")
    (corevad.prompt.p_anomalous). None means not known, never 0.

    described: False when the backend stopped after the verdict (VLMConfig.describe "on_demand"): text is
    then the verdict's own line ("Normal scenes."). error: this segment alone got no answer (its kind in
    error_kind), e.g. the description pass failed for a segment whose verdict could not be read; text is
    then "" and must not be read as an answer. cut: the answer was longer than the backend's bound
    (max_answer_chars) and was cut there."""

    text: str
    p_anomalous: float | None = None
    described: bool = True
    error: str | None = None
    error_kind: str | None = None
    cut: bool = False


@dataclass(slots=True)
class VerdictPass:
    """The first phase of a split answer (describe "on_demand" delivered in two phases): every row's verdict now,
    the descriptions that are needed later, from `describe()`.

    answers: one per clip, in order. A row in `pending` whose verdict is known holds its verdict line
    (prompt.VERDICT_LINES, described=False) until its description comes; None: the row's verdict is not known
    yet (its first token began neither label) and comes with its full answer from describe().
    pending: the rows describe() answers, ascending. describe(): one Answer per pending row, same order (a row
    may carry its own error); it may raise, which costs those rows' descriptions, never a known verdict. It
    runs once, on the thread that calls it (the backend's lock and cache are held until then)."""

    answers: list[Answer | None]
    pending: list[int] = field(default_factory=list)
    _describe: Callable[[], list[Answer]] | None = None

    def describe(self) -> list[Answer]:
        if not self.pending:
            return []
        fn, self._describe = self._describe, None
        if fn is None:
            raise RuntimeError("this verdict pass was described already")
        out = list(fn())
        if len(out) != len(self.pending):
            raise RuntimeError(f"the description pass gave {len(out)} answers for {len(self.pending)} rows")
        return out


@runtime_checkable
class VLMBackend(Protocol):
    """Segments in, raw answer texts out (one per clip, same order). Blocking; called off the event loop.

    A backend that can also give the label's probability adds `answer_scored(clips) -> list[Answer]`
    (see `answers`). One whose work splits into CPU preprocessing and model time adds `prepare(clips)` (any
    thread) and `run(prepared) -> list[Answer]`: the runtime then prepares the next batch while the model
    runs this one. One that can deliver verdicts before descriptions sets `two_phase` (True in the modes where
    it splits) and adds `verdicts(clips, prepared=None) -> VerdictPass`: the runtime then publishes the scores
    before the description pass runs."""

    name: str

    def answer(self, clips: Sequence[Clip]) -> list[str]: ...

    def close(self) -> None: ...


def answers(backend: VLMBackend, clips: Sequence[Clip]) -> list[Answer]:
    """The backend's answers with their label probability where it offers one (answer_scored)."""
    scored = getattr(backend, "answer_scored", None)
    if scored is not None:
        return list(scored(clips))
    return [Answer(text) for text in backend.answer(clips)]


@runtime_checkable
class ImageTextEncoder(Protocol):
    """CLIP-style encoder: unit-norm image and text embeddings in one space."""

    dim: int

    def encode_images(self, frames: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB -> (n, dim) float32, L2-normalised."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """n strings -> (n, dim) float32, L2-normalised (truncated to the context length)."""
        ...
