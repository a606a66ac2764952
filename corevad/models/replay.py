"""Replay backend: answers from a recorded responses file (the authors' JSON: video -> list of answers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..benchmarks import load_probabilities, load_responses
from ..errors import ModelError
from ..prompt import VERDICT_LINES, parse_answer
from .base import Answer, Clip, VerdictPass

DESCRIBE_MODES = ("all", "on_demand", "deferred")


class ReplayBackend:
    """VLMBackend that looks answers up by (clip.source, clip.index); frames are ignored.

    A source may be given with or without a file extension ("Abuse028_x264.mp4" finds
    "Abuse028_x264"); XD-Violence names with '#' also match the '#'-less keys the authors store.
    probabilities (`corevad generate`'s `<stem>.p_anomalous.json`, or a mapping): answer_scored replays each
    answer's P(Anomalous) too, None where the file has null or no such video.
    describe "on_demand" replays what that mode would have produced from the same model: every answer whose
    verdict is "Normal" (corevad.prompt.parse_answer) reduced to its verdict line, "Normal scenes." (the
    recorded answers carry no first-token probabilities, so describe_above cannot apply); "all" replays the
    answers as recorded. "deferred" is "on_demand" delivered in two phases, as the runtime does with a backend
    that splits (two_phase): verdicts() gives every segment its verdict line only ("Normal scenes." /
    "Anomalous scenes."), so scoring sees no description for any segment, and describe() then gives the
    recorded answers of the anomalous and unparsed ones, which reach only the explanations. An unparsed
    answer's verdict is not known from its first line, so it waits for describe(), as a live first token that
    begins neither label does.
    """

    name = "replay"

    def __init__(self, responses: str | Path | Mapping[str, Sequence[str]],
                 probabilities: str | Path | Mapping[str, Sequence[float | None]] | None = None,
                 *, describe: str = "all") -> None:
        if describe not in DESCRIBE_MODES:
            raise ValueError(f"describe must be one of {', '.join(DESCRIBE_MODES)}, got {describe!r}")
        self.describe = describe
        self.undescribed = 0  # answers replayed without their description (describe on_demand, deferred)
        self.deferred = 0  # describe deferred: answers whose description came after their verdict
        if isinstance(responses, (str, Path)):
            self.path: Path | None = Path(responses)
            data: Mapping[str, Sequence[str]] = load_responses(responses)
        else:
            self.path = None
            data = responses
        self._answers = {str(k): list(v) for k, v in data.items()}
        if isinstance(probabilities, (str, Path)):
            probabilities = load_probabilities(probabilities)
        self._p = {str(k): list(v) for k, v in (probabilities or {}).items()}
        for k, v in self._p.items():
            if k in self._answers and len(v) != len(self._answers[k]):
                raise ModelError(f"replay: video {k!r} has {len(v)} probabilities for {len(self._answers[k])} "
                                 "recorded answers")

    @property
    def videos(self) -> list[str]:
        return list(self._answers)

    def _key(self, source: str) -> str:
        if source in self._answers:
            return source
        stem = Path(source).stem if "." in Path(source).name else Path(source).name
        for cand in (stem, stem.replace("#", ""), source.replace("#", "")):
            if cand in self._answers:
                return cand
        where = f" in {self.path}" if self.path else ""
        raise ModelError(f"replay: no recorded answers for video {source!r}{where}")

    def answers_for(self, source: str) -> list[str]:
        """Every recorded answer of one video, in segment order."""
        return list(self._answers[self._key(source)])

    def answer(self, clips: Sequence[Clip]) -> list[str]:
        out = []
        for clip in clips:
            answers = self._answers[self._key(clip.source)]
            if not 0 <= clip.index < len(answers):
                raise ModelError(
                    f"replay: video {clip.source!r} has {len(answers)} recorded answers, "
                    f"no segment {clip.index}"
                )
            out.append(answers[clip.index])
        return out

    def answer_scored(self, clips: Sequence[Clip]) -> list[Answer]:
        texts = self.answer(clips)
        out = []
        for clip, text in zip(clips, texts, strict=True):
            p = self._p.get(self._key(clip.source))
            prob = None if p is None else p[clip.index]
            verdict = parse_answer(text)
            if self.describe != "all" and verdict.parsed and verdict.label == 0:
                self.undescribed += text != VERDICT_LINES[0]
                out.append(Answer(VERDICT_LINES[0], prob, described=False))
            else:
                out.append(Answer(text, prob))
        return out

    @property
    def two_phase(self) -> bool:
        return self.describe == "deferred"

    def verdicts(self, clips: Sequence[Clip], prepared: object = None) -> VerdictPass:
        """describe "deferred": the verdict lines now, the recorded answers that need a description later."""
        if not self.two_phase:
            raise ModelError("verdicts() is the replay backend's describe: deferred")
        full = self.answer_scored(clips)
        answers: list[Answer | None] = []
        pending: list[int] = []
        for i, a in enumerate(full):
            if not a.described:
                answers.append(a)
                continue
            pending.append(i)
            verdict = parse_answer(a.text)
            answers.append(Answer(VERDICT_LINES[1], a.p_anomalous, described=False) if verdict.parsed else None)
            self.deferred += verdict.parsed
        return VerdictPass(answers, pending, lambda: [full[i] for i in pending])

    def close(self) -> None:
        pass
